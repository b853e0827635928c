"""`ml-sandbox pipeline` and pre-commit's hook repositories offline, with real containers, tox
4.67.16 and pre-commit 4.7.0 (the versions outlink's test variant runs):

- without a mirror, pre-commit cannot fetch its hooks: the lint env is `NOT RUN`, the stage
  `incomplete`, the later stage still builds, and the exit is 3;
- with `SANDBOX_GIT_MIRRORS` naming a local clone of the hook repository (a tiny one the test
  makes: its own `.pre-commit-hooks.yaml`, a pygrep hook), the same lint runs for real inside
  the run container, finds the TODO it is there to find, and fails the pipeline (exit 1)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from sandbox import cli

pytestmark = pytest.mark.docker

HOOKS_URL = "https://github.com/ml-sandbox-test/hooks"

BLUBBER = """\
# syntax=docker-registry.wikimedia.org/repos/releng/blubber/buildkit:v1.5.1
version: v4
base: docker-registry.wikimedia.org/bookworm:20260816
runs:
  insecurely: true
lives:
  in: /srv/app
variants:
  test:
    apt: {packages: [git, python3-venv]}
    python:
      version: python3
      requirements: [requirements.txt]
    copies:
      - from: local
        source: .
        destination: .
    entrypoint: [sh, lint.sh]
"""

CONFIG = """\
pipelines:
  lint:
    blubberfile: lint/blubber.yaml
    stages:
      - name: run-test
        build: test
        run: true
      - name: candidate
        build: test
"""

FILES = {
    "requirements.txt": "tox==4.67.16\n",
    "tox.ini": "[tox]\nskipsdist = True\n\n[testenv:ci-lint]\ndeps = pre-commit==4.7.0\n"
    "commands = pre-commit run --all-files\n",
    "lint.sh": "git init -q\ngit add .\nexec tox -e ci-lint\n",
    ".pre-commit-config.yaml": f"repos:\n  - repo: {HOOKS_URL}\n    rev: v1\n"
    "    hooks:\n      - id: no-todo\n",
    "app.py": "x = 1  # TODO: the hook finds this\n",
}

HOOKS = """\
- id: no-todo
  name: no TODO comments
  language: pygrep
  entry: TODO
  types: [python]
"""


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def _hook_repo(path: Path) -> Path:
    path.mkdir()
    (path / ".pre-commit-hooks.yaml").write_text(HOOKS)
    _git(path, "init", "-q")
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "hooks")
    _git(path, "tag", "v1")
    subprocess.run(["chmod", "-R", "a+rX", str(path)], check=True)  # the container's user reads
    return path


@pytest.mark.timeout(1800)
def test_offline_lint_is_not_run_and_a_mirror_makes_it_run(
    docker_ready, tmp_path: Path, capsys, monkeypatch
) -> None:
    root = tmp_path / "repo"
    (root / ".pipeline" / "lint").mkdir(parents=True)
    (root / ".pipeline" / "lint" / "blubber.yaml").write_text(BLUBBER)
    (root / ".pipeline" / "config.yaml").write_text(CONFIG)
    for name, text in FILES.items():
        (root / name).write_text(text)
    monkeypatch.delenv("SANDBOX_GIT_MIRRORS", raising=False)

    assert cli.main(["pipeline", "lint", "--source", str(root)]) == 3
    out = capsys.readouterr().out
    assert (
        "ci-lint: NOT RUN (offline: pre-commit could not fetch its hooks from "
        f"{HOOKS_URL}/: Could not resolve host: github.com)"
    ) in out
    assert re.search(r"^! stage run-test: incomplete", out, re.MULTILINE), out[-3000:]
    assert re.search(r"^✓ stage candidate: ok", out, re.MULTILINE), out[-3000:]
    assert "pipeline NOT VERIFIED" in out

    hooks = _hook_repo(tmp_path / "hooks")
    monkeypatch.setenv("SANDBOX_GIT_MIRRORS", f"{HOOKS_URL}={hooks}")
    assert cli.main(["pipeline", "lint", "--source", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"git in the run step fetches {HOOKS_URL} from {hooks}" in out
    assert re.search(r"│ no TODO comments\.+Failed$", out, re.MULTILINE), out[-3000:]
    assert "│ app.py:1:x = 1  # TODO: the hook finds this" in out
    assert "NOT RUN" not in out
    assert re.search(r"^✗ stage run-test: failed", out, re.MULTILINE), out[-3000:]
    assert "pipeline FAILED (run-test)" in out
