"""Where things live: the repository, the service catalog, the run directory and caches."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES_DIR = REPO_ROOT / "services"


def run_dir() -> Path:
    """State of running sandboxes (pids, ports, logs): `.sandbox/` unless SANDBOX_RUN_DIR is set."""
    return Path(os.environ.get("SANDBOX_RUN_DIR", REPO_ROOT / ".sandbox"))


def cache_dir() -> Path:
    """Built and downloaded models: kept across runs, outside the run directory."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ml-sandbox"
    return Path(os.environ.get("SANDBOX_CACHE_DIR", default))
