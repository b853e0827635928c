"""A real image from a Blubber v4 file (sandbox.images.blubber + images.build): a small
isvc in a folder outside the repository, built offline FROM the local bookworm base, then run.

The Blubber file has the structure of inference-services' (wikimedia/machinelearning-liftwing-
inference-services@bce944c037e5c1bae7df6eef656c420f32178761:.pipeline/langid/blubber.yaml): a
`build` variant whose python builder takes two requirements files, a `production` variant that
copies code from local and site-packages from `build`, `runs.insecurely`.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from sandbox import images
from sandbox.paths import REPO_ROOT
from tests.blubber_support import inference_services_blubber
from tests.isvc_support import free_port

pytestmark = pytest.mark.docker

BLUBBER = inference_services_blubber("tiny")

MODEL = '''\
"""A tiny model server: stdlib HTTP, a pinned dependency, a shared helper."""
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

import six
from python.helper import shout


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({
            "six": six.__version__,
            "six_from": six.__file__,
            "uid": os.getuid(),
            "cwd": os.getcwd(),
            "pythonpath": os.environ.get("PYTHONPATH"),
            "word": shout("ok"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
'''


def write_isvc(root: Path) -> Path:
    (root / ".pipeline" / "tiny").mkdir(parents=True)
    (root / ".pipeline" / "tiny" / "blubber.yaml").write_text(BLUBBER)
    (root / "src" / "models" / "tiny").mkdir(parents=True)
    (root / "src" / "models" / "tiny" / "model.py").write_text(MODEL)
    (root / "src" / "models" / "tiny" / "requirements.txt").write_text("six==1.17.0\n")
    (root / "python").mkdir()
    (root / "python" / "__init__.py").write_text("")
    (root / "python" / "helper.py").write_text("def shout(w):\n    return w.upper()\n")
    (root / "python" / "requirements.txt").write_text("# stdlib only\n")
    return root / ".pipeline" / "tiny" / "blubber.yaml"


def test_blubber_isvc_builds_offline_and_runs_as_blubbers_user(
    docker_ready, tmp_path: Path, run_container
) -> None:
    root = tmp_path / "inference-services"
    assert not root.resolve().is_relative_to(REPO_ROOT)
    blubber_file = write_isvc(root)
    recipe = images.Recipe("ml-sandbox/test-blubber-tiny", blubber_file, "production", root)
    tag = images.build(recipe)
    assert tag == recipe.tag()
    config = json.loads(images.docker("inspect", tag).stdout)[0]["Config"]
    assert config["User"] == "65533"  # USER $LIVES_UID, blubber's default lives uid
    assert config["WorkingDir"] == "/srv/app"
    assert config["Entrypoint"] == ["python3", "tiny/model.py"]
    assert config["Labels"]["blubber.variant"] == "production"

    port = free_port()
    cid = run_container("-p", f"127.0.0.1:{port}:8080", tag)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                got = json.loads(resp.read())
            break
        except OSError:
            if time.monotonic() > deadline:
                logs = images.docker("logs", cid, check=False)
                raise AssertionError(f"no answer: {logs.stdout}{logs.stderr}") from None
            time.sleep(0.5)
    assert got == {
        "six": "1.17.0",
        "six_from": "/opt/lib/python/site-packages/six.py",
        "uid": 65533,  # blubber's lives user (runs.insecurely)
        "cwd": "/srv/app",
        "pythonpath": "/opt/lib/python/site-packages:/srv/app",
        "word": "OK",
    }
    # Unchanged inputs: the same tag, nothing rebuilt.
    assert images.build(recipe) == tag
    # A changed source file: a new tag.
    (root / "python" / "helper.py").write_text("def shout(w):\n    return w.upper() + '!'\n")
    assert recipe.tag() != tag
