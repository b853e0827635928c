"""Where things live: the repository, the service catalog, the run directory and caches."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES_DIR = REPO_ROOT / "services"


def run_dir() -> Path:
    """State of running sandboxes (pids, ports, logs): `.sandbox/` unless SANDBOX_RUN_DIR is set."""
    return Path(os.environ.get("SANDBOX_RUN_DIR", REPO_ROOT / ".sandbox"))


def cache_dir() -> Path:
    """Built and downloaded models, venvs, build contexts: kept across runs, outside the run
    directory. Private, like the run directory: the folder is 0700 (created so, and made so),
    whatever is inside it."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ml-sandbox"
    root = Path(os.environ.get("SANDBOX_CACHE_DIR", default))
    private_dir(root)
    return root


def private_dir(path: Path) -> Path:
    """Create `path` and its missing parents 0700; make `path` itself 0700 when it is ours."""
    missing = []
    p = Path(path)
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            d.mkdir(mode=0o700)
    try:
        st = os.stat(path)
        if st.st_uid == os.getuid() and st.st_mode & 0o777 != 0o700:
            os.chmod(path, 0o700)
    except OSError:
        pass  # not ours (a shared cache named by SANDBOX_CACHE_DIR): leave it as it is
    return Path(path)


def private_lock(path: Path) -> int:
    """Open (creating) a lock file private to the user (0600, never world-writable); an fd."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return fd
