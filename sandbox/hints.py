"""How to name commands in hints so the user can paste them: the CLI and the venv's tools
may not be on PATH (they live in `.venv/bin/`)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def prog() -> str:
    """How the user can run this CLI again from their shell, for hints: `ml-sandbox` when that is
    on PATH and is this installation, else the path of this venv's script, else `python -m`."""
    here = Path(sys.executable).parent / "ml-sandbox"
    on_path = shutil.which("ml-sandbox")
    if on_path and here.exists() and Path(on_path).resolve() == here.resolve():
        return "ml-sandbox"
    if here.exists():
        rel = os.path.relpath(here)
        return rel if not rel.startswith("..") else str(here)
    return f"{sys.executable} -m sandbox"


def venv_tool(name: str) -> str:
    """A tool of this venv (e.g. ansible-playbook), as the user can type it."""
    path = Path(sys.executable).parent / name
    if shutil.which(name) == str(path):
        return name
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else str(path)
