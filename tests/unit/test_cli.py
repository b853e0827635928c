"""The CLI surface: help for every command, clear errors and exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest

from sandbox.cli import build_parser

pytestmark = pytest.mark.unit


# A run directory of their own: whatever else the test session runs, nothing is running here.
RUN_DIR = tempfile.mkdtemp(prefix="ml-sandbox-cli-test-")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SANDBOX_RUN_DIR": RUN_DIR},
    )


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
