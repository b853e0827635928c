"""File-system primitives every part of the sandbox uses, written once.

- `file_lock`: an exclusive lock between processes (two shells, two checkouts) on a cache entry
  or the state; its lock file is private (0600).
- `atomic_write`: a file is replaced whole or not at all (written beside it, then renamed).
- `build_into`: a folder is built in a temporary sibling and renamed into place only when the
  block succeeds; a failure or Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive flock on `path` (created 0600) for the block. With `blocking=False`,
    yields False at once when another process holds it (the caller then waits, saying so, by
    entering `file_lock(path)`); yields True when the lock is held."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)  # never world-writable, whatever the umask or an older version made
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` atomically, with permissions `mode`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def build_into(dest: Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield an empty temporary folder beside `dest`; when the block succeeds it becomes `dest`
    (an existing `dest` is replaced, unless `replace` is False: then the new folder is dropped
    and `dest` kept, for a concurrent builder that finished first). On failure it is removed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        yield tmp
        if dest.exists():
            if not replace:
                return
            shutil.rmtree(dest) if dest.is_dir() and not dest.is_symlink() else dest.unlink()
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
