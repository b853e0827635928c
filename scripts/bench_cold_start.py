#!/usr/bin/env python3
"""Benchmark a cold `deploy.sh --all` on the local target: seconds from the command's start to each
isvc's first prediction through the gateway, and to the command's end; prints a Markdown table.

    .venv/bin/python scripts/bench_cold_start.py [--repo CHECKOUT] [--keep-uv-cache]

"Cold" means: an empty SANDBOX_CACHE_DIR (no venvs, no built models), an empty SANDBOX_RUN_DIR
(no gateway, nothing running) and, unless --keep-uv-cache, an empty UV_CACHE_DIR: uv then
downloads every wheel from the package index again and compiles fastText 0.9.3 (langid's pin has
no wheel) as a first-time user's machine does. uv's cache keeps built wheels, so with
--keep-uv-cache that compile is skipped and the numbers are those of a user who built once before
and removed the sandbox's cache. The project's own .venv is not part of the measurement.

While the deploy runs, each isvc's first sample is sent through the gateway every 0.25 s; its
row is the time of the first HTTP 200. --repo runs another checkout's code (to compare with the
code before a change) on this checkout's .venv. Everything is stopped (`down`) and the
temporary folders removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
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
from sandbox.runtime.processes import free_port  # noqa: E402


def answers(svc: catalog.Service, port: int) -> bool:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{svc.predict_path}",
        data=svc.samples[0].body(),
        headers={"Host": svc.host, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout to run")
    parser.add_argument("--keep-uv-cache", action="store_true", help="keep uv's own cache")
    parser.add_argument("--log", type=Path, help="also write the deploy's output here")
    args = parser.parse_args()
    repo = args.repo.resolve()
    python = REPO / ".venv" / "bin" / "python"
    for key in (catalog.SERVICES_PATH_ENV, catalog.INFERENCE_SERVICES_ENV):
        os.environ.pop(key, None)
    services = list(catalog.load_all().values())
    tmp = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    env = dict(os.environ)
    env["SANDBOX_CACHE_DIR"] = str(tmp / "cache")
    env["SANDBOX_RUN_DIR"] = str(tmp / "run")
    if not args.keep_uv_cache:
        env["UV_CACHE_DIR"] = str(tmp / "uv-cache")
    port = free_port()
    # What scripts/deploy.sh runs once the project's venv exists (its venv check is not timed).
    cmd = [str(python), "-m", "sandbox", "deploy", "--all", "--target", "local"]
    cmd += ["--mediawiki", "replay", "--port", str(port)]
    first: dict[str, float] = {}
    started = time.monotonic()
    out = (args.log or tmp / "deploy.log").open("w")
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        while len(first) < len(services) or proc.poll() is None:
            for svc in services:
                if svc.name not in first and answers(svc, port):
                    first[svc.name] = time.monotonic() - started
            if proc.poll() is not None and len(first) < len(services):
                # The deploy ended: whatever answers now has answered by its end.
                for svc in services:
                    if svc.name not in first and answers(svc, port):
                        first[svc.name] = time.monotonic() - started
                break
            time.sleep(0.25)
        total = time.monotonic() - started
        code = proc.wait()
        uv = "kept" if args.keep_uv_cache else "empty"
        print(f"cold `deploy --all --target local --mediawiki replay` of {repo} (uv cache {uv})\n")
        print("| isvc | first prediction (s) |")
        print("|---|---:|")
        for svc in services:
            when = first.get(svc.name)
            print(f"| {svc.name} | {when:.1f} |" if when is not None else f"| {svc.name} | never |")
        if first:
            print(f"| **first of any isvc** | **{min(first.values()):.1f}** |")
        print(f"| deploy exits (code {code}) | {total:.1f} |", flush=True)
        if code != 0:
            out.flush()
            log = (args.log or tmp / "deploy.log").read_text(errors="replace")
            print("\nthe deploy failed; its output:\n" + log[-4000:], file=sys.stderr)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
        subprocess.run(
            [str(python), "-m", "sandbox", "down"], cwd=repo, env=env, capture_output=True
        )
        out.close()
        shutil.rmtree(tmp, ignore_errors=True)  # slow: uv's cache holds many files
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
