"""Real images per blubber version: the same small file built with v0.21.1's rules and with
v1.5.1's gives the two python layouts, and both images run; production's editing_suggestions
(blubber v0.24.0: a venv with kserve 0.17 and pandas) builds and serves; a PipelineLib pipeline
whose test stage passes, and one whose test stage fails.

Layouts checked at wikimedia/blubber@v0.21.1:config/python.go (pip install --target
/opt/lib/python/site-packages) and @v1.5.1:config/python.go (venv at /opt/lib/venv)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from sandbox import cli, images
from sandbox.docker_cli import docker
from sandbox.paths import REPO_ROOT
from tests.isvc_support import free_port

pytestmark = pytest.mark.docker

CHECKOUT = REPO_ROOT.parent / "shared" / "inference-services"
SITE = "/opt/lib/venv/lib/python3.11/site-packages"

# Valid under both versions' rules: only the syntax line changes.
SMALL = f"""\
# syntax=docker-registry.wikimedia.org/repos/releng/blubber/buildkit:{{tag}}
version: v4
base: docker-registry.wikimedia.org/bookworm:20260816
runs:
  insecurely: true
  environment:
    PYTHONPATH: /srv/app:{SITE}
lives:
  in: /srv/app
variants:
  build:
    apt: {{{{packages: [python3-pip, python3-venv]}}}}
    python:
      version: python3
      requirements: [requirements.txt]
  production:
    apt: {{{{packages: [python3]}}}}
    python:
      version: python3
    copies:
      - from: build
        source: /opt/lib
        destination: /opt/lib
      - from: local
        source: app.py
        destination: app.py
    entrypoint: [python3, app.py]
  test-pass:
    includes: [production]
    entrypoint: [python3, app.py, check]
  test-fail:
    includes: [production]
    entrypoint: [python3, app.py, check, --fail]
"""

APP = """\
import json, os, sys
import six
if sys.argv[1:2] == ["check"]:
    print("1 passed" if "--fail" not in sys.argv else "1 failed", flush=True)
    sys.exit(1 if "--fail" in sys.argv else 0)
print(json.dumps({"six_from": six.__file__, "virtual_env": os.environ.get("VIRTUAL_ENV"),
                  "uid": os.getuid()}))
"""

CONFIG = """\
pipelines:
  green:
    blubberfile: small/blubber.yaml
    stages:
      - name: run-test
        build: test-pass
        run: true
      - name: publish
        build: production
        publish:
          image:
            name: '${setup.project}-small'
            tags: [stable]
  red:
    blubberfile: small/blubber.yaml
    stages:
      - name: run-test
        build: test-fail
        run: true
      - name: production
        build: production
"""


def checkout(root: Path, tag: str) -> Path:
    (root / ".pipeline" / "small").mkdir(parents=True)
    path = root / ".pipeline" / "small" / "blubber.yaml"
    path.write_text(SMALL.format(tag=tag))
    (root / ".pipeline" / "config.yaml").write_text(CONFIG)
    (root / ".gitreview").write_text("[gerrit]\nproject=machinelearning/small.git\n")
    (root / "requirements.txt").write_text("six==1.17.0\n")
    (root / "app.py").write_text(APP)
    return path


def run_json(tag: str) -> dict:
    return json.loads(docker("run", "--rm", tag).stdout)


@pytest.mark.timeout(1200)  # two cold builds
def test_one_file_two_versions_two_layouts_both_run(docker_ready, tmp_path: Path) -> None:
    old = checkout(tmp_path / "old", "v0.21.1")
    new = checkout(tmp_path / "new", "v1.5.1")
    old_tag = images.build(
        images.Recipe("ml-sandbox/test-blubber-v0-21", old, "production", old.parents[2])
    )
    new_tag = images.build(
        images.Recipe("ml-sandbox/test-blubber-v1-5", new, "production", new.parents[2])
    )
    assert run_json(old_tag) == {
        "six_from": "/opt/lib/python/site-packages/six.py",
        "virtual_env": None,
        "uid": 65533,
    }
    assert run_json(new_tag) == {"six_from": f"{SITE}/six.py", "virtual_env": None, "uid": 65533}
    # The build variant at v1.5.1 has the venv active, as blubber's ENV makes it.
    build = images.build(
        images.Recipe("ml-sandbox/test-blubber-v1-5-build", new, "build", new.parents[2])
    )
    env = json.loads(docker("inspect", build).stdout)[0]["Config"]["Env"]
    assert "VIRTUAL_ENV=/opt/lib/venv" in env
    assert any(e.startswith("PATH=/opt/lib/venv/bin:") for e in env)
    labels = json.loads(docker("inspect", new_tag).stdout)[0]["Config"]["Labels"]
    assert labels["org.ml-sandbox.blubber.version"] == "v1.5.1"


def test_pipelines_pass_and_fail_as_their_test_stage(docker_ready, tmp_path: Path, capsys) -> None:
    root = checkout(tmp_path / "repo", "v1.5.1").parents[2]
    assert cli.main(["pipeline", "green", "--source", str(root)]) == 0
    out = capsys.readouterr().out
    assert "│ 1 passed" in out
    assert (
        "would push docker-registry.wikimedia.org/wikimedia/"
        "machinelearning-small-small:stable (nothing pushed)" in out
    )
    assert "pipeline passed" in out
    assert cli.main(["pipeline", "red", "--source", str(root)]) == 1
    out = capsys.readouterr().out
    assert "│ 1 failed" in out and "the image's entrypoint exited 1" in out
    assert "production" in out and "skipped" in out  # after a failure, without --keep-going
    assert "pipeline FAILED (run-test)" in out
    assert cli.main(["pipeline", "red", "--source", str(root), "--stage", "nope"]) == 2


@pytest.mark.skipif(not CHECKOUT.is_dir(), reason="../shared/inference-services is not here")
@pytest.mark.timeout(1800)  # a cold build: apt build-essential, then kserve 0.17 + pandas in a venv
def test_editing_suggestions_v0_24_builds_and_serves(
    docker_ready, tmp_path: Path, run_container
) -> None:
    """Production's file (blubber v0.24.0), unmodified: venv layout, kserve 0.17, pandas."""
    tag = images.build(
        images.Recipe(
            "ml-sandbox/test-editing-suggestions",
            CHECKOUT / ".pipeline" / "editing_suggestions" / "blubber.yaml",
            "production",
            CHECKOUT,
        )
    )
    models = tmp_path / "models"
    models.mkdir()
    (models / "suggestions.csv").write_text(
        "wiki_id,page_id,revision_id,suggestion\nenwiki,12,345,add a citation\n"
    )
    models.chmod(0o755)
    (models / "suggestions.csv").chmod(0o644)
    port = free_port()
    cid = run_container("-p", f"127.0.0.1:{port}:8080", "-v", f"{models}:/mnt/models:ro", tag)
    url = f"http://127.0.0.1:{port}/v1/models/editing-suggestions:predict"
    body = json.dumps({"wiki_id": "enwiki", "page_id": 12}).encode()
    deadline = time.monotonic() + 120
    while True:
        try:
            req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                got = json.loads(resp.read())
            break
        except OSError:
            if time.monotonic() > deadline:
                logs = docker("logs", cid, check=False)
                raise AssertionError(f"no answer: {logs.stdout}{logs.stderr}") from None
            time.sleep(1)
    assert got == {
        "suggestions": [
            {
                "wiki_id": "enwiki",
                "page_id": 12,
                "revision_id": 345,
                "suggestion": "add a citation",
            }
        ]
    }
    config = json.loads(docker("inspect", tag).stdout)[0]["Config"]
    assert config["Labels"]["org.ml-sandbox.blubber.version"] == "v0.24.0"
    assert f"PYTHONPATH=/srv/editing_suggestions:{SITE}" in config["Env"]
