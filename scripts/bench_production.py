#!/usr/bin/env python3
"""Benchmark production's isvcs (services/production/) on the local target; prints a Markdown table.

    .venv/bin/python scripts/bench_production.py --inference-services PATH [ISVC...]

Per isvc: its venv's size and how long it took to build (from the venv's own record: the build is
not repeated when cached), the stand-in model's build time (rebuilt each run, in the isvc's venv),
and `up` to the first prediction (a fresh `up` after `down`, with the venv and model cached, in a
throwaway run directory on a free port).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sandbox import catalog, environments, models, venvs  # noqa: E402  # noqa: E402
from sandbox.runtime.processes import free_port  # noqa: E402


def du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def first_prediction(svc: catalog.Service, port: int) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{svc.predict_path}",
        data=svc.samples[0].body(),
        headers={"Host": svc.host, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inference-services", required=True)
    ap.add_argument(
        "isvcs",
        nargs="*",
        default=["editing-suggestions", "langid", "outlink-topic-model", "edit-check"],
    )
    args = ap.parse_args()
    catalog.set_inference_services(args.inference_services)
    rows = []
    for name in args.isvcs:
        svc = catalog.get(name)
        pred = svc.components.predictor
        venv = environments.venv_for(svc, pred)
        stamp = json.loads((venv / venvs.STAMP).read_text())
        started = time.monotonic()
        models.build(svc, force=True)
        model_s = time.monotonic() - started
        with tempfile.TemporaryDirectory() as run:
            env = {
                **os.environ,
                "SANDBOX_RUN_DIR": run,
                catalog.INFERENCE_SERVICES_ENV: str(Path(args.inference_services).resolve()),
            }
            port = free_port()
            cmd = [
                sys.executable,
                "-m",
                "sandbox",
                "up",
                name,
                "--port",
                str(port),
                "--timeout",
                "600",
            ]
            started = time.monotonic()
            subprocess.run(
                [*cmd, "--mediawiki", "replay"], env=env, check=True, capture_output=True
            )
            status = first_prediction(svc, port)
            first_s = time.monotonic() - started
            subprocess.run([sys.executable, "-m", "sandbox", "down"], env=env, capture_output=True)
        rows.append(
            (
                name,
                stamp["python_version"],
                du(venv) / 2**20,
                stamp["seconds"],
                model_s,
                first_s,
                status,
            )
        )
    head = ["isvc", "Python", "venv size", "venv build (cold)", "model build", "up to 1st answer"]
    print("| " + " | ".join([*head, "HTTP"]) + " |")
    print("|" + "---|" * (len(head) + 1))
    for name, py, size, venv_s, model_s, first_s, status in rows:
        cells = [name, py, f"{size:,.0f} MiB", f"{venv_s:.0f} s", f"{model_s:.1f} s"]
        print("| " + " | ".join([*cells, f"{first_s:.1f} s", str(status)]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
