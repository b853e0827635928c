"""Each reference isvc's own unit tests (services/<isvc>/tests/, stdlib unittest, as
inference-services keeps its tests beside the code), run in the isvc's own venv on its production
pins, with the sandbox model staged as MODEL_PATH. The venvs are cached: the first run builds
them (langid's fasttext 0.9.3 compiles from source), later runs take seconds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sandbox import catalog, models, venvs

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", ["langid", "outlink-topic-model"])
def test_isvc_unit_tests_pass_in_its_own_venv(name: str, tmp_path: Path) -> None:
    svc = catalog.get(name)
    tests = svc.dir / "tests"
    assert sorted(p.name for p in tests.glob("test_*.py")), f"{tests} has no tests"
    requirements = {r for _, comp in svc.component_items() for r in comp.requirements}
    venv = venvs.ensure([svc.source_dir / r for r in sorted(requirements)])
    model = models.stage(svc, tmp_path)
    code_dirs = [str((svc.dir / comp.entrypoint).parent) for _, comp in svc.component_items()]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": os.pathsep.join(code_dirs),
        "MODEL_PATH": str(model),
    }
    proc = subprocess.run(
        [str(venvs.python_of(venv)), "-m", "unittest", "discover", "-v", "-s", str(tests)],
        cwd=svc.dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # Every test ran: none skipped for want of the model.
    assert "skipped" not in proc.stderr, proc.stderr[-4000:]
