"""`scripts/build-base-image.sh` as the README gives it works as root (no sudo needed) and as a
user (it re-runs itself with sudo for debootstrap); `--force` rebuilds (issue 15, defect 10).

The first test asks the real Docker daemon. The others run the script as a real unprivileged
user (setpriv), with `DOCKER` (the script's documented knob) and `sudo`/`debootstrap` on PATH
standing for what an unprivileged test cannot have: each records that it was called.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.paths import REPO_ROOT
from tests.e2e.conftest import docker_answers

pytestmark = pytest.mark.docker

SCRIPT = REPO_ROOT / "scripts" / "build-base-image.sh"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_an_existing_image_is_kept_and_force_is_named() -> None:
    if not docker_answers():
        pytest.skip("no Docker daemon answers")
    if subprocess.run(["docker", "image", "inspect", "ml-sandbox/bookworm:latest"],
                      capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("ml-sandbox/bookworm:latest is not built here")
    proc = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to do (use --force to rebuild)" in proc.stderr


@pytest.fixture
def stubs() -> Iterator[Path]:
    """A folder readable by an unprivileged user, with stub tools that log their arguments."""
    d = Path(tempfile.mkdtemp(prefix="base-image-"))
    (d / "bin").mkdir()
    calls = d / "calls"
    calls.touch()
    os.chmod(calls, 0o666)
    for name in ("docker", "sudo", "debootstrap"):
        tool = d / "bin" / name
        exit_code = 1 if name == "debootstrap" else 0  # debootstrap: stop the build right there
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\nexit {exit_code}\n')
        tool.chmod(0o755)
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


def _run(stubs: Path, *args: str, user: bool, sudo: bool = True) -> subprocess.CompletedProcess:
    if not sudo:
        (stubs / "bin" / "sudo").unlink()
    env = {"PATH": f"{stubs / 'bin'}:/usr/bin:/bin", "DOCKER": str(stubs / "bin" / "docker")}
    cmd = [*(NOBODY if user else []), str(SCRIPT), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def test_as_a_user_force_reruns_itself_with_sudo(stubs: Path) -> None:
    if not shutil.which("setpriv") or os.getuid() != 0:
        pytest.skip("needs setpriv and root to become an unprivileged user")
    proc = _run(stubs, "--force", user=True)
    calls = (stubs / "calls").read_text()
    assert (
        f"sudo --preserve-env=DEBIAN_MIRROR,SANDBOX_BASE_IMAGE,DOCKER,TMPDIR {SCRIPT} --force"
        in calls
    ), proc.stderr
    assert "debootstrap" not in calls  # not as the user


def test_as_a_user_without_sudo_says_what_to_do(stubs: Path) -> None:
    if not shutil.which("setpriv") or os.getuid() != 0:
        pytest.skip("needs setpriv and root to become an unprivileged user")
    proc = _run(stubs, "--force", user=True, sudo=False)
    assert proc.returncode == 1
    assert "run this script as root (sudo is not installed)" in proc.stderr


def test_as_root_force_rebuilds_without_sudo(stubs: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root")
    _run(stubs, "--force", user=False)
    calls = (stubs / "calls").read_text()
    assert "sudo" not in calls and "debootstrap --variant=minbase" in calls
