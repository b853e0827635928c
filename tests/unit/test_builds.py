"""sandbox.runtime.builds and the venv cache helpers it uses: what needs a build, how many at
once, and the removal of a killed build's temporary folder (the parallel builds themselves run in
tests/component/test_cold_start.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox import venvs
from sandbox.errors import RunError
from sandbox.fsutil import file_lock
from sandbox.runtime import builds

pytestmark = pytest.mark.unit


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("SANDBOX_CACHE_DIR", str(root))
    monkeypatch.delenv("SANDBOX_INSTALLER", raising=False)
    return root


def test_a_venv_is_cached_only_once_built(cache: Path, tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("# no packages\n")
    assert venvs.cached([req]) is None
    built = venvs.ensure([req], progress=None)
    assert venvs.cached([req]) == built
    req.write_text("# another set\n")  # another key
    assert venvs.cached([req]) is None


def test_a_venv_with_a_base_layer_is_found_by_the_same_arguments(
    cache: Path, tmp_path: Path
) -> None:
    """A venv built with a base layer and removals (the vLLM entries) is cached under a key of
    its own: the lookup must take the same arguments, or a warm `up` rebuilds it every time."""
    req, base = tmp_path / "requirements.txt", tmp_path / "base.txt"
    req.write_text("# no packages\n")
    base.write_text("# a base of no packages\n")
    built = venvs.ensure([req], base=[base], without=["nothing-here"], progress=None)
    assert venvs.cached([req], base=[base], without=["nothing-here"]) == built
    assert venvs.cached([req]) is None  # the plain venv is another one


def test_a_killed_builds_folder_is_swept_unless_its_build_still_runs(cache: Path) -> None:
    root = venvs.venvs_dir()
    dead = root / ".aaaa.tmp-1"
    running = root / ".bbbb.tmp-2"
    for d in (dead, running):
        (d / "lib").mkdir(parents=True)
    with file_lock(root / "bbbb.lock"):  # a build of key bbbb in progress
        venvs.sweep_stale()
    assert not dead.exists()
    assert running.is_dir()


def test_jobs_default_to_the_cores_and_refuse_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(builds.JOBS_ENV, raising=False)
    monkeypatch.setattr(builds.os, "cpu_count", lambda: 2)
    assert builds.jobs() == 2
    monkeypatch.setenv(builds.JOBS_ENV, "3")
    assert builds.jobs() == 3
    for bad in ("0", "-1", "two"):
        monkeypatch.setenv(builds.JOBS_ENV, bad)
        with pytest.raises(RunError, match="SANDBOX_BUILD_JOBS must be a positive whole number"):
            builds.jobs()
