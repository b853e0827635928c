"""The run directory's state file (`.sandbox/state.json`), read and written under a lock.

Shape: {"gateway": {...} | null, "mediawiki": {...} | null, "routes": {host: {...}},
        "isvcs": {"<target>/<isvc>": {...}}}. Every CLI invocation, from any shell, sees the same.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sandbox.paths import run_dir


def state_path() -> Path:
    return run_dir() / "state.json"


def logs_dir() -> Path:
    return run_dir() / "logs"


def _empty() -> dict[str, Any]:
    return {"gateway": None, "mediawiki": None, "routes": {}, "isvcs": {}}


def read() -> dict[str, Any]:
    try:
        data = json.loads(state_path().read_text())
    except FileNotFoundError:
        return _empty()
    except ValueError:
        # A state file we cannot read would strand running processes: keep it for inspection.
        bad = state_path().with_suffix(".corrupt")
        os.replace(state_path(), bad)
        return _empty()
    return {**_empty(), **data}


@contextlib.contextmanager
def locked() -> Iterator[dict[str, Any]]:
    """The state, exclusively; written back atomically when the block exits (even on error)."""
    run_dir().mkdir(parents=True, exist_ok=True)
    with open(run_dir() / "state.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = read()
        try:
            yield data
        finally:
            tmp = state_path().with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
            os.replace(tmp, state_path())
