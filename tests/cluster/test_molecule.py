"""molecule (docker driver, the local bookworm image): preflight and the tool install in a clean
Debian container, with molecule's own idempotence step."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from .conftest import PLAYBOOKS, VENV_BIN, tool_env

pytestmark = [pytest.mark.cluster, pytest.mark.docker]

IMAGE = "ml-sandbox/bookworm:latest"


def _docker_ok() -> str | None:
    if shutil.which("docker") is None:
        return "docker CLI not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        return f"docker daemon not answering: {info.stderr.strip()[:200]}"
    image = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, timeout=30)
    if image.returncode != 0:
        return f"{IMAGE} not built (run scripts/build-base-image.sh)"
    return None


def test_molecule_default_scenario() -> None:
    reason = _docker_ok()
    if reason:
        pytest.skip(reason)
    proc = subprocess.run(
        [str(VENV_BIN / "molecule"), "test", "--scenario-name", "default"],
        cwd=PLAYBOOKS,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=480,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert re.search(r"idempotence\W{0,3}\s*Executed: Successful", out), out[-3000:]
    assert re.search(r"verify\W{0,3}\s*Executed: Successful", out), out[-3000:]
