"""Every shell script (scripts/, .ci/) is shellcheck clean."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from sandbox.paths import REPO_ROOT

pytestmark = pytest.mark.cluster

SCRIPTS = sorted(
    [
        *(REPO_ROOT / "scripts").rglob("*.sh"),
        *(REPO_ROOT / ".ci").glob("*.sh"),
        REPO_ROOT / ".ci/run",
    ]
)


def test_there_are_scripts_to_check() -> None:
    assert any(p.name == "e2e.sh" for p in SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_shellcheck_clean(script) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    # -x follows `source` lines; run from the repo root so `# shellcheck source=scripts/...` hints
    # resolve as they do for a developer.
    proc = subprocess.run(
        ["shellcheck", "-x", "--severity=style", str(script.relative_to(REPO_ROOT))],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
