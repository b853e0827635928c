#!/usr/bin/env python3
"""Benchmark `ml-sandbox dev`'s loop: save model.py -> the gateway answers with the new code.

    .venv/bin/python scripts/bench_dev.py [--saves 20] [--isvc langid] [--cold 3]

Runs `ml-sandbox dev <isvc>` on the local target on a copy of the isvc's folder (a run directory
of its own, a free gateway port, MediaWiki replay), then saves its entrypoint N times, each time
adding a field with a new value to the answer, and measures the time from the write to the first
answer through the gateway that carries the new value (polled every 5 ms, on 127.0.0.1). Saves
are a second apart after the previous one is served (an author reads the answer). `--cold N`
also measures N changes rolled out by a plain `ml-sandbox up` (a new interpreter per version),
for comparison. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sandbox import catalog  # noqa: E402
from sandbox.runtime.processes import free_port  # noqa: E402

# Where each reference isvc's answer is built, and the line a new field goes after.
EDITS = {
    "langid": ("predictor/model.py", '"score": float(scores[0]),'),
}
TIMEOUT_S = 60.0


def predict(conn: http.client.HTTPConnection, service: catalog.Service, body: bytes) -> dict:
    conn.request(
        "POST",
        service.predict_path,
        body=body,
        headers={"Host": service.host, "Content-Type": "application/json"},
    )
    r = conn.getresponse()
    data = r.read()
    try:
        return json.loads(data) if r.status == 200 else {}
    except ValueError:
        return {}


def save(path: Path, anchor: str, value: str) -> None:
    text = re.sub(r'\n\s*"bench_rev": "[^"]*",', "", path.read_text())
    path.write_text(text.replace(anchor, f'{anchor}\n            "bench_rev": "{value}",'))


def time_to_serve(port: int, service: catalog.Service, body: bytes, value: str, t0: float) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        while time.monotonic() - t0 < TIMEOUT_S:
            try:
                if predict(conn, service, body).get("bench_rev") == value:
                    return time.monotonic() - t0
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            time.sleep(0.005)
    finally:
        conn.close()
    raise SystemExit(f"value {value} not served within {TIMEOUT_S}s")


def wait_for(output: Path, pattern: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pattern in output.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"dev did not print {pattern!r}:\n{output.read_text(errors='replace')}")


def row(label: str, times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"| {label} | {len(times)} | {statistics.median(times):.2f} | {p95:.2f} | "
        f"{ordered[0]:.2f} | {ordered[-1]:.2f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--isvc", default="langid", choices=sorted(EDITS))
    parser.add_argument("--saves", type=int, default=20)
    parser.add_argument("--cold", type=int, default=3, help="changes rolled by plain `up`")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-dev-"))
    services = work / "services"
    shutil.copytree(REPO / "services" / args.isvc, services / args.isvc)
    service = catalog.load_file(services / args.isvc / "service.yaml")
    rel, anchor = EDITS[args.isvc]
    entry = services / args.isvc / rel
    body = service.samples[0].body()
    port = free_port()
    env = {**os.environ, "SANDBOX_RUN_DIR": str(work / "run")}
    base = [sys.executable, "-m", "sandbox", "--service-dir", str(services)]
    opts = ["--port", str(port), "--mediawiki", "replay"]
    output = work / "dev.out"
    rows = []
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [*base, "dev", args.isvc, *opts], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        wait_for(output, "watching", proc, 600)
        time.sleep(2)  # the first roll's samples, the zygote settled
        times = []
        for n in range(args.saves):
            t0 = time.monotonic()
            save(entry, anchor, f"dev-{n}")
            times.append(time_to_serve(port, service, body, f"dev-{n}", t0))
            print(f"save {n + 1}: {times[-1]:.3f}s", file=sys.stderr)
            time.sleep(1.0)
        rows.append(row("`dev`, local target (zygote fork)", times))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(120)
    if args.cold:
        times = []
        try:
            for n in range(args.cold):
                t0 = time.monotonic()
                save(entry, anchor, f"cold-{n}")
                subprocess.run([*base, "up", args.isvc, *opts], env=env, check=True,
                               capture_output=True)  # fmt: skip
                times.append(time_to_serve(port, service, body, f"cold-{n}", t0))
                print(f"up {n + 1}: {times[-1]:.3f}s", file=sys.stderr)
        finally:
            subprocess.run([*base, "down"], env=env, capture_output=True)
        rows.append(row("plain `up` after the save (new interpreter)", times))
    print(f"\n### Save to new answer, {args.isvc} (seconds)\n")
    print("| loop | saves | median | p95 | min | max |")
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
