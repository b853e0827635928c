"""An isvc component's Python environment as production's image has it: the interpreter version of
the image (`python:` in service.yaml), the isvc's own requirement files, and what the image gives
beside them (`image_requirements:`: the ROCm base's torch, Debian's python3-setuptools).

`venv_for()` is used both to serve a component (the local target) and to build its stand-in model
in the same venv (`model.build_in: isvc`), so a builder can use the isvc's own libraries.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from sandbox import venvs
from sandbox.catalog import Component, Service


def _say(line: str) -> None:
    print(f"• {line}", file=sys.stderr, flush=True)


def python_for(version: str | None) -> str | None:
    """The interpreter for `version` ("3.12"): `python3.12` on PATH, pyenv's, else one of uv's
    managed interpreters (downloaded by uv where the machine can). None: the sandbox's own Python.
    A VenvError names the version when none can be had."""
    if version is None or version == ".".join(map(str, sys.version_info[:2])):
        return None
    for candidate in [shutil.which(f"python{version}"), *_pyenv(version)]:
        real = _real(candidate) if candidate else None
        if real:
            return real
    _tool, uv = venvs.installer()
    if uv is not None:
        for args in (["python", "find", version], ["python", "install", version]):
            proc = subprocess.run(
                [uv, *args], capture_output=True, text=True, env=venvs._clean_env(), check=False
            )
            if args[1] == "install" and proc.returncode == 0:
                proc = subprocess.run(
                    [uv, "python", "find", version], capture_output=True, text=True, check=False
                )
            path = proc.stdout.strip().splitlines()[-1:] if proc.returncode == 0 else []
            real = _real(path[0]) if path else None
            if real:
                return real
        why = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        how = f"uv could not download it ({why[0]})"
    else:
        how = "uv is not installed to download it"
    raise venvs.VenvError(
        f"this isvc runs on Python {version} in production, and there is no python{version} "
        f"here: {how}. Install Python {version} (your distribution's python{version}, pyenv, or "
        f"`uv python install {version}` on a machine with internet) and put it on PATH."
    )


def _pyenv(version: str) -> list[str]:
    """pyenv's installed interpreters of this version, newest first (its shims run only the
    versions pyenv is told to use)."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = [p / "bin" / f"python{version}" for p in root.glob(f"{version}.*")]
    key = lambda p: [int(x) for x in p.parent.parent.name.split(".") if x.isdigit()]  # noqa: E731
    return [str(p) for p in sorted(found, key=key, reverse=True) if p.is_file()]


def _real(exe: str) -> str | None:
    """The interpreter behind `exe` (a pyenv shim, a symlink), or None if it does not run."""
    try:
        proc = subprocess.run(
            [exe, "-c", "import sys; print(sys.executable)"],
            capture_output=True,
            text=True,
            timeout=60,
            env=venvs._clean_env(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def requirement_paths(service: Service, component: Component) -> list[Path]:
    """The isvc's own requirement files (in the checkout), then the image's (in this repo)."""
    own = [service.source_dir / r for r in component.requirements]
    return own + [service.dir / r for r in component.image_requirements]


# `name[extras] @ git+https://...` or `name @ file:///...`: a package that is not on the index.
_DIRECT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*@\s*((?:git\+|file:)\S+)")


def direct_references(requirements: list[Path]) -> list[tuple[str, str]]:
    """(package, where) for each requirement that names a repository or a path, not the index."""
    found = []
    for path in venvs.requirement_files(requirements):
        for line in path.read_text(errors="replace").splitlines():
            match = _DIRECT.match(line.split(" #")[0])
            if match:
                found.append((match.group(1), match.group(3)))
    return found


def _blocked(service: Service) -> str | None:
    """Why production's own build of this entry cannot run (its catalog entry's
    `production.blocked`), or None."""
    if not isinstance(service.production, dict):
        return None
    blocked = service.production.get("blocked")
    return str(blocked).strip() if blocked else None


def _venv_spec(service: Service, component: Component) -> dict[str, Any]:
    """What names the component's venv: its requirement files, Python, base layer and removals
    (the arguments of `venvs.ensure` and `venvs.cached`, which key the venv by all of them)."""
    return {
        "requirements": requirement_paths(service, component),
        "python": python_for(component.python),
        "base": [service.dir / r for r in component.image_base],
        "without": component.image_without,
    }


def cached_venv(service: Service, component: Component) -> Path | None:
    """The component's venv if it is built already (what `venv_for` would return without
    building), else None."""
    return venvs.cached(**_venv_spec(service, component))


def venv_for(service: Service, component: Component, progress=_say) -> Path:
    """The component's venv (built once, cached by content): see `sandbox.venvs`. When the
    install fails and the requirements name packages that are not on the package index (a GitLab
    or GitHub repository, a path inside production's image), the error names them and says how to
    provide them. When it fails for a production entry whose own build fails too, the error adds
    the entry's `production.blocked` reason: the installer's output alone does not say that
    production's pipeline cannot build these files either."""
    spec = _venv_spec(service, component)
    try:
        return venvs.ensure(**spec, progress=progress)
    except venvs.VenvError as e:
        direct = direct_references(spec["requirements"])
        blocked = _blocked(service)
        if not direct and blocked:
            raise venvs.VenvError(
                f"{e}\n{service.name} in production: {blocked} "
                f"(production.blocked in {service.dir / 'service.yaml'})"
            ) from None
        if not direct:
            raise
        names = "; ".join(f"{name} from {where}" for name, where in direct)
        raise venvs.VenvError(
            f"{service.name} installs packages that are not on the package index: {names}. "
            "Clone each one, then serve the isvc from a --service-dir entry whose requirement "
            "file lists the clone instead (`name @ file:///path/to/clone`).\n"
            f"The installer said:\n{e}"
        ) from None
