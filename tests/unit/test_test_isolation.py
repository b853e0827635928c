"""The test suite never touches a run directory it did not create (issue 15, defect 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.paths import REPO_ROOT

pytestmark = pytest.mark.unit


def test_an_exported_run_dir_is_not_the_tests(tmp_path: Path) -> None:
    users = tmp_path / "my-sandbox"
    users.mkdir()
    code = "import os, tests.conftest; print(os.environ['SANDBOX_RUN_DIR'])"
    env = {**os.environ, "SANDBOX_RUN_DIR": str(users)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    theirs = Path(out.stdout.strip())
    assert theirs != users and theirs.is_dir() and not theirs.is_relative_to(users)
    assert list(users.iterdir()) == []


def test_this_session_runs_in_its_own_run_dir() -> None:
    from sandbox.paths import run_dir

    assert "ml-sandbox-test-" in run_dir().name or "ml-sandbox-test" in str(run_dir())
