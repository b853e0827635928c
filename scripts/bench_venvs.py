#!/usr/bin/env python3
"""Benchmark building an isvc's virtualenv (sandbox/venvs.py) with uv and with pip; prints a
Markdown table.

    .venv/bin/python scripts/bench_venvs.py [--requirement SPEC]... [--skip-cold]

For each installer, in a fresh sandbox cache: a cold build (the installer's own download/wheel
cache empty too, so every package comes from the index), a build with the installer's cache warm
(a second isvc with the same pins on a machine that built them once), and `ensure` on a cached
venv (what `up` pays once the venv exists). Default requirements: outlink's SDK pin,
kserve==0.14.1. Then, in a venv of the sandbox cache, the time from starting a minimal stock
kserve model server to its first prediction: `python model.py` against `launch.py -- model.py`.
Needs the package index; takes a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
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

from sandbox import venvs  # noqa: E402

DEFAULT_REQUIREMENTS = ["kserve==0.14.1"]


def tree_mib(path: Path) -> float:
    total = 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total / 2**20


def build(tool: str, reqs: Path, work: Path, *, cold_installer: bool) -> tuple[float, Path]:
    """Seconds for one `ensure` into a fresh sandbox cache under `work`."""
    os.environ["SANDBOX_INSTALLER"] = tool
    os.environ["SANDBOX_CACHE_DIR"] = str(Path(tempfile.mkdtemp(dir=work)))
    if cold_installer:
        os.environ["UV_CACHE_DIR"] = os.environ["PIP_CACHE_DIR"] = str(work / f"{tool}-cache")
    started = time.monotonic()
    venv = venvs.ensure([reqs], progress=None)
    return time.monotonic() - started, venv


MODEL = """\
from kserve import Model, ModelServer


class Echo(Model):
    def __init__(self):
        super().__init__("echo")
        self.ready = True

    def predict(self, payload, headers=None):
        return {"echo": payload}


ModelServer(workers=1).start([Echo()])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_prediction(cmd: list[str], port: int) -> float:
    """Seconds from starting `cmd` to its first successful prediction."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    body = json.dumps({"instances": [1]}).encode()
    try:
        while time.monotonic() - started < 120:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/v1/models/echo:predict",
                    data=body,
                    method="POST",
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(req, timeout=2) as resp:
                    if resp.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, OSError):
                time.sleep(0.02)
        raise SystemExit(f"{' '.join(cmd)} did not answer")
    finally:
        proc.terminate()
        proc.wait()


def startup_rows(reqs: Path, work: Path, repeat: int) -> list[tuple[str, float]]:
    venv = venvs.ensure([reqs], progress=None)
    model = work / "model.py"
    model.write_text(MODEL)
    python = str(venvs.python_of(venv))
    launcher = str(REPO / "sandbox" / "isvc" / "launch.py")
    rows = []
    for label, prefix in (
        ("python model.py (stock)", [python]),
        ("launch.py -- model.py", [python, launcher, "--bind", "127.0.0.1", "--"]),
    ):
        times = []
        for _ in range(repeat):
            port = free_port()
            cmd = [*prefix, str(model), "--http_port", str(port), "--grpc_port", str(free_port())]
            times.append(first_prediction(cmd, port))
        rows.append((label, statistics.median(times)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--requirement", action="append", help=f"a pin (default: {DEFAULT_REQUIREMENTS})"
    )
    parser.add_argument("--repeat", type=int, default=5, help="cached-hit measurements")
    parser.add_argument("--installer", action="append", choices=["uv", "pip"], help="default: both")
    args = parser.parse_args()
    pins = args.requirement or DEFAULT_REQUIREMENTS
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-venvs-") as tmp:
        work = Path(tmp)
        reqs = work / "requirements.txt"
        reqs.write_text("".join(f"{p}\n" for p in pins))
        saved = dict(os.environ)
        for tool in args.installer or ["uv", "pip"]:
            cold, venv = build(tool, reqs, work, cold_installer=True)
            packages = len(list(venv.glob("lib/python*/site-packages/*.dist-info")))
            size = tree_mib(venv)
            warm, _ = build(tool, reqs, work, cold_installer=False)
            hits = []
            for _ in range(args.repeat):
                started = time.monotonic()
                venvs.ensure([reqs], progress=None)
                hits.append(time.monotonic() - started)
            rows.append((tool, cold, warm, statistics.median(hits), packages, size))
            os.environ.clear()
            os.environ.update(saved)
        start = startup_rows(reqs, work, args.repeat)
    print(f"Requirements: {', '.join(pins)}; Python {venvs.interpreter().version}\n")
    print("| installer | cold build s | installer cache warm s | cached venv s | packages | MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for tool, cold, warm, hit, packages, size in rows:
        print(f"| {tool} | {cold:.1f} | {warm:.1f} | {hit:.3f} | {packages} | {size:.0f} |")
    cold_s = {row[0]: row[1] for row in rows}
    if len(cold_s) == 2:
        print(f"\nuv is {cold_s['pip'] / cold_s['uv']:.1f}x faster than pip on a cold build")
    print(f"\nStart to first prediction, venv cached (median of {args.repeat}):\n")
    print("| command | seconds |\n|---|---:|")
    for label, seconds in start:
        print(f"| {label} | {seconds:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
