#!/usr/bin/env python3
"""Benchmark the local runtime against a bare FastAPI endpoint; prints a Markdown table.

    .venv/bin/python scripts/bench.py [--duration 5] [--repeat 3] [--concurrency 8 32]
    .venv/bin/python scripts/bench.py --gateway-only [--repeat 5]   # the gateway's overhead only

Needs `wrk` (apt-get install wrk). Measures, in one run on this machine: requests/s and p50/p99
latency for a bare FastAPI+uvicorn endpoint answering the same JSON, each predictor called
directly, the outlink transformer->predictor chain (which also calls the MediaWiki replay server
once per request), and the gateway path; `up` time to the first successful prediction; idle RSS
of every process. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sandbox import catalog  # noqa: E402
from sandbox.runtime import processes, state  # noqa: E402

WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{host}
wrk.body = [==[{body}]==]
"""


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "sandbox", *args], check=True, capture_output=True)


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer")


def _ms(value: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        return float("nan")
    n, unit = float(m.group(1)), m.group(2)
    return n * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def wrk(url: str, body: bytes, host: str | None, conns: int, duration: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        host_line = f'wrk.headers["Host"] = "{host}"' if host else ""
        f.write(WRK_LUA.format(host=host_line, body=body.decode()))
        script = f.name
    try:
        # Warm up (connections, caches), then measure.
        subprocess.run(
            ["wrk", "-t1", f"-c{conns}", "-d2s", "-s", script, url],
            capture_output=True,
            check=True,
        )
        out = subprocess.run(
            ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "-s", script, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    return {"rps": rps, "p50": p50, "p99": p99, "errors": errors}


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) used so far by these processes and their children."""
    total = 0.0
    for pid in pids:
        for p in (pid, *children(pid)):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def bench_server(script: str, env: dict[str, str], *args: str) -> tuple[int, subprocess.Popen]:
    """Start one of scripts/bench/'s model servers as `langid` on a free port; wait for it."""
    port = processes.free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, str(REPO / "scripts/bench" / script)),
            *("--model_name", "langid", "--http_port", str(port), *args),
        ],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_http(f"http://127.0.0.1:{port}/v1/models/langid")
    return port, proc


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_gateway(args, langid, outlink, gw_port: int, port_of) -> int:
    """Each isvc directly and through the gateway, alternating run by run (direct, gateway,
    direct, ...) so that both see the same background load; the ratio is per pair."""
    st = state.read()
    # Recorded pids are logpipe's; cpu_seconds counts each with its children (the servers).
    gw_pid = st.gateway.process.pid
    pids = {
        isvc: [c.process.pid for c in st.isvcs[f"local/{isvc}"].components.values()]
        for isvc in (langid.name, outlink.name)
    }
    pids[outlink.name].append(st.mediawiki["local"].process.pid)

    def measured(url: str, body: bytes, host: str | None, c: int, isvc: str) -> dict:
        before = cpu_seconds([gw_pid]), cpu_seconds(pids[isvc])
        r = wrk(url, body, host, c, args.duration)
        n = r["rps"] * args.duration
        r["gw_cpu_us"] = (cpu_seconds([gw_pid]) - before[0]) / n * 1e6
        r["isvc_cpu_us"] = (cpu_seconds(pids[isvc]) - before[1]) / n * 1e6
        return r

    pairs = [
        (
            "langid: predictor",
            f"http://127.0.0.1:{port_of('langid', 'predictor')}{langid.predict_path}",
            f"http://127.0.0.1:{gw_port}{langid.predict_path}",
            langid.samples[0].body(),
            langid.host,
            langid.name,
        ),
        (
            "outlink: transformer (+MediaWiki replay)",
            f"http://127.0.0.1:{port_of(outlink.name, 'transformer')}{outlink.predict_path}",
            f"http://127.0.0.1:{gw_port}{outlink.predict_path}",
            outlink.sample("toni-morrison").body(),
            outlink.host,
            outlink.name,
        ),
    ]
    rows = []
    for name, direct_url, gw_url, body, host, isvc in pairs:
        for c in args.concurrency:
            print(f"• {name} at concurrency {c} …", file=sys.stderr, flush=True)
            direct, via, ratios = [], [], []
            for _ in range(args.repeat):
                direct.append(measured(direct_url, body, None, c, isvc))
                via.append(measured(gw_url, body, host, c, isvc))
                ratios.append(via[-1]["rps"] / direct[-1]["rps"])
            rows.append((name, c, direct, via, ratios))
    print(
        f"\n### Gateway overhead ({os.cpu_count()} cores, wrk -t1; {args.repeat} alternating "
        f"pairs of {args.duration}s runs; medians)\n"
    )
    print(
        "| isvc: called component | conc. | direct req/s | via gateway req/s "
        "| direct p99 ms | gateway p99 ms | non-2xx | isvc CPU µs/req | gateway CPU µs/req "
        "| gateway / direct (min-max) | goal | met |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for name, c, direct, via, ratios in rows:
        ratio = statistics.median(ratios)
        med = statistics.median
        print(
            f"| {name} | {c} | {med(r['rps'] for r in direct):.0f} "
            f"| {med(r['rps'] for r in via):.0f} | {med(r['p99'] for r in direct):.2f} "
            f"| {med(r['p99'] for r in via):.2f} | {sum(r['errors'] for r in direct + via)} "
            f"| {med(r['isvc_cpu_us'] for r in direct):.0f} "
            f"| {med(r['gw_cpu_us'] for r in via):.0f} "
            f"| {ratio:.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | >= 0.9x "
            f"| {'yes' if ratio >= 0.9 else 'NO'} |"
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument(
        "--repeat", type=int, default=3, help="measurements per row; the table shows the median"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument(
        "--gateway-only",
        action="store_true",
        help="only the gateway's overhead: each isvc called directly and through the gateway, "
        "alternating run by run so that both see the same background load",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench needs wrk: apt-get install wrk")

    os.environ["SANDBOX_RUN_DIR"] = tempfile.mkdtemp(prefix="ml-sandbox-bench-")
    services = catalog.load_all()
    langid, outlink = services["langid"], services["outlink-topic-model"]
    gw_port = processes.free_port()

    # -- up time to the first prediction (models already built: `ml-sandbox models build`) ----
    cli("models", "build")
    up_times = {}
    for svc in (langid, outlink):
        started = time.monotonic()
        cli("up", svc.name, "--mediawiki", "replay", "--port", str(gw_port))
        req = urllib.request.Request(
            f"http://127.0.0.1:{gw_port}{svc.predict_path}",
            data=svc.samples[0].body(),
            headers={"Host": svc.host},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200
        up_times[svc.name] = time.monotonic() - started

    st = state.read()
    # Each recorded process is logpipe (the sandbox's log rotation); the server is its child.
    recorded = {"gateway": st.gateway.process, "mediawiki replay": st.mediawiki["local"].process}
    for entry in st.isvcs.values():
        for comp, c in entry.components.items():
            recorded[f"{entry.isvc} {comp}"] = c.process
    procs = {name: children(rec.pid)[0] for name, rec in recorded.items()}
    time.sleep(2)
    rss = {name: rss_mib(pid) for name, pid in procs.items()}
    rss["logpipe (one per process)"] = rss_mib(recorded["gateway"].pid)
    for name, pid in list(procs.items()):
        for kid in children(pid):
            rss[f"{name}: inference worker (forked, shares the model copy-on-write)"] = rss_mib(kid)

    def port_of(isvc: str, comp: str) -> int:
        return st.isvcs[f"local/{isvc}"].components[comp].port

    if args.gateway_only:
        try:
            return bench_gateway(args, langid, outlink, gw_port, port_of)
        finally:
            cli("down")

    # -- the bare FastAPI baseline, answering langid's JSON ------------------------------------
    bare_port = processes.free_port()
    langid_json = urllib.request.urlopen(
        urllib.request.Request(
            f"http://127.0.0.1:{port_of('langid', 'predictor')}{langid.predict_path}",
            data=langid.samples[0].body(),
        )
    ).read()
    bare = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "scripts/bench/bare_app.py"),
            "--port",
            str(bare_port),
            "--body",
            langid_json.decode(),
        ],
    )
    wait_http(f"http://127.0.0.1:{bare_port}/v1/models/x")

    # Pass-through transformers in front of the langid predictor: the hop alone.
    langid_pred = f"127.0.0.1:{port_of('langid', 'predictor')}"
    hops = {
        label: bench_server(
            "hop_transformer.py", {"BENCH_STOCK_HOP": stock}, "--predictor_host", langid_pred
        )
        for label, stock in (("stock", "1"),)
    }
    # A no-inference model answering langid's JSON: the stock model server's own cost.
    fixed = {
        label: bench_server(
            "fixed_model.py", {"BENCH_STOCK_SERVER": stock}, "--body", langid_json.decode()
        )
        for label, stock in (("stock", "1"),)
    }

    toni = outlink.sample("toni-morrison").body()
    qids = json.loads(
        urllib.request.urlopen(
            urllib.request.Request(
                f"http://127.0.0.1:{gw_port}{outlink.predict_path}",
                data=json.dumps(
                    {"lang": "en", "page_title": "Toni Morrison", "debug": True}
                ).encode(),
                headers={"Host": outlink.host},
            )
        ).read()
    )["prediction"]["qids"]
    predictor_body = json.dumps({"qids": qids, "threshold": 0.3}).encode()

    cases = [
        (
            "bare FastAPI (same JSON)",
            f"http://127.0.0.1:{bare_port}/v1/models/langid:predict",
            langid.samples[0].body(),
            None,
        ),
        (
            "fixed-answer model, stock kserve.ModelServer",
            f"http://127.0.0.1:{fixed['stock'][0]}{langid.predict_path}",
            langid.samples[0].body(),
            None,
        ),
        (
            "langid predictor, direct",
            f"http://127.0.0.1:{port_of('langid', 'predictor')}{langid.predict_path}",
            langid.samples[0].body(),
            None,
        ),
        (
            "langid via gateway",
            f"http://127.0.0.1:{gw_port}{langid.predict_path}",
            langid.samples[0].body(),
            langid.host,
        ),
        (
            "outlink predictor, direct",
            f"http://127.0.0.1:{port_of(outlink.name, 'predictor')}{outlink.predict_path}",
            predictor_body,
            None,
        ),
        (
            "hop: stock kserve transformer (httpx) -> langid predictor",
            f"http://127.0.0.1:{hops['stock'][0]}{langid.predict_path}",
            langid.samples[0].body(),
            None,
        ),
        (
            "outlink transformer->predictor (+MediaWiki replay)",
            f"http://127.0.0.1:{port_of(outlink.name, 'transformer')}{outlink.predict_path}",
            toni,
            None,
        ),
        (
            "outlink via gateway",
            f"http://127.0.0.1:{gw_port}{outlink.predict_path}",
            toni,
            outlink.host,
        ),
    ]
    results: dict[tuple[str, int], dict] = {}
    try:
        for name, url, body, host in cases:
            for c in args.concurrency:
                print(f"• {name} at concurrency {c} …", file=sys.stderr, flush=True)
                runs = [wrk(url, body, host, c, args.duration) for _ in range(args.repeat)]
                results[(name, c)] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    finally:
        for proc in (bare, *(p for _, p in [*hops.values(), *fixed.values()])):
            proc.terminate()
            proc.wait()
        cli("down")

    cpu = os.cpu_count()
    print(
        f"\n### Throughput and latency ({cpu} cores, wrk -t1; median of {args.repeat} runs "
        f"of {args.duration}s per row)\n"
    )
    print("| path | conc. | req/s | p50 ms | p99 ms | non-2xx | vs bare |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, _, _, _ in cases:
        for c in args.concurrency:
            r = results[(name, c)]
            base = results[("bare FastAPI (same JSON)", c)]["rps"]
            print(
                f"| {name} | {c} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} "
                f"| {r['errors']} | {r['rps'] / base:.2f}x |"
            )

    print("\n### Targets\n")
    print("| target | conc. | measured | goal | met |")
    print("|---|---:|---:|---:|:---:|")
    for c in args.concurrency:

        def rps(prefix: str, c: int = c) -> float:
            return next(
                v["rps"] for (n, cc), v in results.items() if cc == c and n.startswith(prefix)
            )

        checks = [
            (
                "model server, stock / bare FastAPI",
                rps("fixed-answer model, stock") / rps("bare"),
                0.7,
            ),
            ("langid predictor / bare FastAPI", rps("langid predictor") / rps("bare"), 0.7),
            ("outlink predictor / bare FastAPI", rps("outlink predictor") / rps("bare"), 0.7),
            ("hop chain (stock kserve) / bare FastAPI", rps("hop: stock") / rps("bare"), 0.3),
            (
                "outlink chain incl. MediaWiki / bare FastAPI",
                rps("outlink transformer") / rps("bare"),
                0.3,
            ),
            (
                "outlink: gateway / transformer direct",
                rps("outlink via gateway") / rps("outlink transformer"),
                0.9,
            ),
            (
                "langid: gateway / predictor direct",
                rps("langid via gateway") / rps("langid predictor"),
                0.9,
            ),
        ]
        for label, value, goal in checks:
            print(
                f"| {label} | {c} | {value:.3f}x | >= {goal}x "
                f"| {'yes' if value >= goal else 'NO'} |"
            )

    print("\n### `up` to the first successful prediction (models cached)\n")
    print("| isvc | seconds | goal |")
    print("|---|---:|---:|")
    for name, secs in up_times.items():
        print(f"| {name} | {secs:.2f} | <= 5 |")

    print("\n### Idle RSS per process\n")
    print("| process | RSS MiB |")
    print("|---|---:|")
    for name, mib in rss.items():
        print(f"| {name} | {mib:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
