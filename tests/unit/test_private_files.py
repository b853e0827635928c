"""The cache and the staged models are private (issue 16, items 4 and 14c): 0700 folders, 0600
files, lock files never world-writable, even under a permissive umask."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import catalog, fsutil, models, paths
from sandbox.runtime import lifecycle

pytestmark = pytest.mark.unit


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)  # the worst case: nothing masked
    try:
        yield
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return p.stat().st_mode & 0o777


def test_the_cache_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_umask) -> None:
    monkeypatch.setenv("SANDBOX_CACHE_DIR", str(tmp_path / "a" / "cache"))
    root = paths.cache_dir()
    assert _mode(root) == 0o700 and _mode(root.parent) == 0o700
    root.chmod(0o755)  # a cache made by an older version
    assert _mode(paths.cache_dir()) == 0o700
    # The one lock every cache entry uses (venvs, wheelhouses, build contexts).
    for lock in (root / "venvs" / "k.lock", root / "build-context" / "x.lock"):
        with fsutil.file_lock(lock):
            pass
    for lock in (root / "venvs" / "k.lock", root / "build-context" / "x.lock"):
        assert _mode(lock) == 0o600, lock
        assert _mode(lock.parent) == 0o700, lock.parent


MODES = [(True, 0o700, 0o600), (False, 0o755, 0o644)]


@pytest.mark.parametrize(("private", "dir_mode", "file_mode"), MODES)
def test_staged_models_are_private_unless_a_container_reads_them(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    open_umask,
    private: bool,
    dir_mode: int,
    file_mode: int,
) -> None:
    monkeypatch.setenv("SANDBOX_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("SANDBOX_CACHE_DIR", str(tmp_path / "cache"))
    svc = catalog.get("langid")
    src = tmp_path / "download" / svc.model.file
    src.parent.mkdir()
    src.write_bytes(b"a model")
    src.chmod(0o600)
    where = lifecycle.models_root("langid") / "fp"
    staged = models.stage(svc, where, str(src), private=private)
    assert _mode(tmp_path / "run" / "models") == 0o700
    assert _mode(tmp_path / "run" / "models" / "langid") == 0o700
    assert _mode(where) == dir_mode and _mode(staged) == file_mode
    assert _mode(src) == 0o600  # the source keeps its own mode (a copy, not a shared inode)
