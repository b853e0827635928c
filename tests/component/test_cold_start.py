"""A cold `up` of several isvcs builds them in parallel and serves each as soon as its own build is
done; an interrupt during the builds leaves nothing behind (issue 15, defect 14).

Real processes throughout: the CLI, its build children, uv building each venv (from requirement
files with no packages, so no index is needed), the training scripts, the gateway and the isvcs'
servers. A "slow" isvc's training script waits on a gate file the test opens, so the order is
forced by the test, never by timing. A private run and cache directory, and a free port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sandbox.runtime import processes

pytestmark = pytest.mark.component

MODEL = b"stand-in model\n"
MODEL_SHA = "26670ff7d445d0700cccfa1b071797861e23412434c613fe7d292b91ef81fa2d"
DEADLINE_S = 120  # a liveness bound for a loaded machine, not a speed assertion

# A model server of the standard library only: KServe's ready and predict routes.
SERVER = """\
import argparse, json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

p = argparse.ArgumentParser()
p.add_argument("--model_name"); p.add_argument("--http_port", type=int)
p.add_argument("--grpc_port")
a = p.parse_args()

class H(BaseHTTPRequestHandler):
    def _json(self, doc):
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._json({"name": a.model_name, "ready": True})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._json({"served_by": a.model_name})

ThreadingHTTPServer(("0.0.0.0", a.http_port), H).serve_forever()
"""

# The training script: says it started (its pid), waits for the gate if told to, writes the model.
TRAIN = """\
import os, sys, time
from pathlib import Path

marks = Path(os.environ["COLD_START_MARKS"])
name = Path(__file__).resolve().parent.parent.name
(marks / f"started-{name}").write_text(str(os.getpid()))
if name.startswith("slow"):
    while not (marks / "gate").exists():
        time.sleep(0.05)
Path(sys.argv[-1]).write_bytes(b"stand-in model\\n")
"""


def write_isvc(root: Path, name: str) -> None:
    d = root / name
    (d / "training").mkdir(parents=True)
    (d / "server.py").write_text(SERVER)
    (d / "training" / "train.py").write_text(TRAIN)
    # No packages (uv builds the venv offline); a comment makes each isvc's venv its own.
    (d / "requirements.txt").write_text(f"# {name}: the standard library only\n")
    (d / "service.yaml").write_text(
        f"""\
name: {name}
namespace: cold-start
description: a stand-in isvc of the cold start test
components:
  predictor:
    entrypoint: server.py
    requirements: [requirements.txt]
    resources:
      requests: {{cpu: 100m, memory: 64Mi}}
      limits: {{cpu: "1", memory: 128Mi}}
model:
  file: model.bin
  storage_uri: s3://wmf-ml-models/cold-start/{name}/
  sha256: "{MODEL_SHA}"
  build: training/train.py
autoscaling: {{min_replicas: 1, max_replicas: 1, metric: rps, target: 1}}
samples:
  - name: one
    data: {{text: hello}}
"""
    )


@pytest.fixture
def sandbox_env(tmp_path: Path):
    catalog = tmp_path / "isvcs"
    marks = tmp_path / "marks"
    marks.mkdir()
    env = dict(os.environ)
    env.update(
        SANDBOX_RUN_DIR=str(tmp_path / "run"),
        SANDBOX_CACHE_DIR=str(tmp_path / "cache"),
        SANDBOX_SERVICES_PATH=str(catalog),
        SANDBOX_BUILD_JOBS="2",
        COLD_START_MARKS=str(marks),
    )
    env.pop("SANDBOX_INFERENCE_SERVICES", None)
    yield tmp_path, catalog, marks, env
    (marks / "gate").touch()
    subprocess.run(
        [sys.executable, "-m", "sandbox", "down"], env=env, capture_output=True, timeout=120
    )


def predict(port: int, name: str) -> dict | None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/models/{name}:predict",
        data=b'{"text": "hello"}',
        headers={"Host": f"{name}.cold-start.wikimedia.org", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read()) if r.status == 200 else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def up(env: dict[str, str], port: int, *names: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sandbox", "up", *names, "--port", str(port)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for(what: str, ok, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not ok():
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"`up` exited {proc.returncode} before {what}:\n{out}")
        if time.monotonic() > deadline:
            proc.kill()
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"no {what} within {DEADLINE_S}s; `up` said:\n{out}")
        time.sleep(0.1)


def test_the_fast_isvc_is_served_while_the_slow_one_still_builds(sandbox_env) -> None:
    _tmp, catalog, marks, env = sandbox_env
    for name in ("slow-isvc", "fast-isvc"):
        write_isvc(catalog, name)
    port = processes.free_port()
    proc = up(env, port, "slow-isvc", "fast-isvc")  # the slow one first, as named
    wait_for("answer from fast-isvc", lambda: predict(port, "fast-isvc") is not None, proc)
    # The slow isvc's build is still blocked on the gate: it is neither built nor routed.
    assert (marks / "started-slow-isvc").exists() and not (marks / "gate").exists()
    assert predict(port, "slow-isvc") is None
    assert proc.poll() is None
    (marks / "gate").touch()
    out, _ = proc.communicate(timeout=DEADLINE_S)
    text = out.decode()
    assert proc.returncode == 0, text
    assert predict(port, "slow-isvc") == {"served_by": "slow-isvc"}
    assert predict(port, "fast-isvc") == {"served_by": "fast-isvc"}
    # Each build's lines carry the name of its isvc; fast-isvc was up before slow-isvc.
    assert "[slow-isvc]" in text and "[fast-isvc]" in text
    assert text.index("✓ fast-isvc is up") < text.index("✓ slow-isvc is up")
    assert f"http://127.0.0.1:{port}/v1/models/fast-isvc:predict" in text  # its URL, said early


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_during_the_builds_leaves_nothing(sandbox_env, signum) -> None:
    tmp, catalog, marks, env = sandbox_env
    names = ("slow-a", "slow-b")
    for name in names:
        write_isvc(catalog, name)
    port = processes.free_port()
    proc = up(env, port, *names)
    # Both builds run at once (two jobs): both training scripts have started and wait.
    wait_for(
        "two builds running at once",
        lambda: all((marks / f"started-{n}").exists() for n in names),
        proc,
    )
    trainers = [int((marks / f"started-{n}").read_text()) for n in names]
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 130, out.decode()
    for pid in trainers:  # every build child's process is gone (not even a zombie of ours)
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    cache = tmp / "cache"
    leftovers = [p for p in cache.rglob("*") if p.name.startswith(".") and ".tmp-" in p.name]
    leftovers += list(cache.rglob(".build-*"))
    assert leftovers == []
    assert not any(cache.glob("models/*/*/model.bin"))  # no model was half-built or kept
    state = json.loads((tmp / "run" / "state.json").read_text())
    assert not state.get("isvcs") and not state.get("starting"), state
    assert not state.get("gateway"), state  # the gateway this `up` started is stopped too
    assert predict(port, "slow-a") is None
