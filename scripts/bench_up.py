#!/usr/bin/env python3
"""Benchmark `ml-sandbox up` to the first prediction through the gateway, on the local target;
prints a Markdown table.

    .venv/bin/python scripts/bench_up.py [--repeat 3]

Rows: a stock isvc as `ml-sandbox init` writes it (kserve 0.14.1 on its own pins, run by the
launcher in its own venv), with its venv cached (built first if missing, not timed) and with the
gateway already up; and the reference isvcs of services/. Each run is a fresh `up` after `down`.

Then a restart under load: wrk sends langid requests through the gateway for 12 s (after its 2 s
warm-up) while `up` replaces langid with a changed one; the same without the restart, to compare
p99 and errors (needs `wrk`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sandbox import catalog, scaffold  # noqa: E402
from sandbox.runtime.processes import free_port  # noqa: E402


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "sandbox", *args], check=True, capture_output=True)


def first_prediction(svc: catalog.Service, port: int) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{svc.predict_path}",
        data=svc.samples[0].body(),
        headers={"Host": svc.host, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200, r.status


def time_up(name: str, port: int, extra: list[str]) -> float:
    svc = catalog.get(name)
    started = time.monotonic()
    cli("up", name, "--port", str(port), *extra)
    first_prediction(svc, port)
    elapsed = time.monotonic() - started
    cli("down", name)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-up-") as tmp:
        os.environ["SANDBOX_RUN_DIR"] = str(Path(tmp) / "run")
        scaffold.write("bench-stock", Path(tmp))
        os.environ[catalog.SERVICES_PATH_ENV] = tmp
        port = free_port()
        rows = [("bench-stock", "stock kserve 0.14.1 isvc (`init`), venv cached", [])]
        rows += [
            (n, f"reference isvc {n}", ["--mediawiki", "replay"])
            for n in ("langid", "outlink-topic-model")
        ]
        # Warm-up (not timed): builds the venv and the models, starts everything once.
        for name, _, extra in rows:
            cli("up", name, "--port", str(port), *extra)
        cli("down")
        print(f"| isvc | `up` to first prediction, median (min-max) of {args.repeat} |")
        print("|---|---:|")
        for name, label, extra in rows:
            # Another isvc keeps the gateway up, as when you restart one isvc of several.
            keeper = "langid" if name == "bench-stock" else "bench-stock"
            cli("up", keeper, "--port", str(port), "--mediawiki", "replay")
            times = [time_up(name, port, extra) for _ in range(args.repeat)]
            cli("down", keeper)
            spread = f"{min(times):.2f}-{max(times):.2f}"
            print(f"| {label} | {statistics.median(times):.2f} s ({spread}) |")
        cli("down")
        restart_under_load(port)
    return 0


def restart_under_load(port: int) -> None:
    import threading

    from bench import wrk  # scripts/bench.py

    svc = catalog.get("langid")
    url = f"http://127.0.0.1:{port}{svc.predict_path}"
    cli("up", "langid", "--port", str(port))
    print("\n| langid via the gateway, wrk c8 for 12 s | req/s | p50 | p99 | non-2xx |")
    print("|---|---:|---:|---:|---:|")
    for label, restart in (("steady", False), ("langid replaced at 5 s", True)):
        result: dict = {}
        load = threading.Thread(
            target=lambda out=result: out.update(wrk(url, svc.samples[0].body(), svc.host, 8, 12))
        )
        load.start()
        if restart:
            time.sleep(2 + 5)  # wrk's warm-up, then into the measured run
            cli("up", "langid", "--port", str(port), "--env", f"BENCH_RESTART={time.time()}")
        load.join()
        print(
            f"| {label} | {result['rps']:.0f} | {result['p50']:.1f} ms | {result['p99']:.1f} ms "
            f"| {result['errors']} |"
        )
    cli("down")


if __name__ == "__main__":
    raise SystemExit(main())
