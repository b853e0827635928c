"""The CLI surface: help for every command, clear errors and exit codes, no tracebacks.

In-process (`sandbox.cli.main`): a subprocess would add nothing but seconds; the e2e tests run the
real `python -m sandbox`.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import pytest

from sandbox.cli import build_parser, main

pytestmark = pytest.mark.unit


# A run directory of their own: whatever else the test session runs, nothing is running here.
RUN_DIR = tempfile.mkdtemp(prefix="ml-sandbox-cli-test-")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def _own_run_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_RUN_DIR", RUN_DIR)


def run(*args: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse: --help, usage errors
            code = e.code if isinstance(e.code, int) else 2
    return Result(code, out.getvalue(), err.getvalue())


def test_every_command_has_help():
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"services", "up", "down", "status", "logs", "predict", "deploy", "models"} <= set(
        commands
    )
    for name in commands:
        proc = run(name, "--help")
        assert proc.returncode == 0, (name, proc.stderr)
        assert "usage:" in proc.stdout


def test_services_lists_catalog():
    proc = run("services", "--json")
    assert proc.returncode == 0
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["outlink-topic-model"]["components"] == ["predictor", "transformer"]
    assert rows["langid"]["host"] == "langid.llm.wikimedia.org"


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["up", "nope"], 2, "unknown isvc 'nope'"),
        (["up"], 2, "name at least one isvc"),
        (["logs", "nope"], 2, "unknown isvc"),
        (["predict", "langid", "no-such-sample"], 2, "has no sample"),
        (["predict", "langid"], 1, "gateway is not running"),
        (["predict", "langid", "--data", "@/nonexistent.json"], 1, "cannot read"),
        (["down", "nope"], 2, "unknown isvc"),
        # issue 15: usage errors exit 2 and say what is wrong
        (["up", "langid", "--env", "FOO"], 2, "--env takes KEY=VALUE, got 'FOO'"),
        (["up", "langid", "--env", "model path=x"], 2, "'model path' is not a valid environment"),
        (["up", "langid", "--model-source", "/no/such/file"], 2, "/no/such/file: no such file"),
        (["logs", "langid", "--component", "transformer"], 2, "langid has no transformer"),
        (["logs", "gatway"], 2, "did you mean gateway"),
        (["logs", "gateway", "--component", "predictor"], 2, "gateway has no components"),
        (["up", "langid", "--port", "70000"], 2, "--port must be a TCP port"),
        (["up", "langid", "--timeout", "0"], 2, "--timeout must be positive"),
    ],
)
def test_errors_are_messages_with_exit_codes(args, code, words):
    proc = run(*args)
    assert proc.returncode == code, proc.stderr
    assert words in proc.stderr
    assert "Traceback" not in proc.stderr


def test_status_and_down_with_nothing_running():
    assert "nothing is running" in run("status").stdout
    proc = run("down")
    assert proc.returncode == 0 and "nothing is running" in proc.stderr


def test_the_module_entry_point_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox", "--version"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.startswith("ml-sandbox ")


def test_hints_name_a_command_the_user_can_run(monkeypatch):
    from sandbox import hints

    monkeypatch.setenv("PATH", "/nonexistent")  # ml-sandbox is not on PATH (the usual case)
    assert hints.prog() != "ml-sandbox"
    assert hints.prog().endswith(("bin/ml-sandbox", "-m sandbox"))
    assert hints.venv_tool("ansible-playbook").endswith("bin/ansible-playbook")


@pytest.mark.parametrize("tool", ["jsonschema", "kubernetes_validate"])
def test_manifests_validate_without_the_dev_tools_says_what_to_install(monkeypatch, tool):
    """The runtime venv (./scripts/deploy.sh's) has no validation tools: one clear line."""
    monkeypatch.setitem(sys.modules, tool, None)  # as if it were not installed
    proc = run("manifests", "validate")
    assert proc.returncode == 1
    assert f"needs the dev tools ({tool} not installed)" in proc.stderr
    assert "install -e '.[dev]'" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_deploy_script_help_lists_every_option():
    from sandbox.paths import REPO_ROOT

    proc = subprocess.run(
        [str(REPO_ROOT / "scripts" / "deploy.sh"), "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    for option in ("--timeout", "--model-source", "--env", "--mediawiki", "--port", "--delete"):
        assert option in proc.stdout, option
