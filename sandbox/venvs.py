"""One virtualenv per distinct set of requirement files, for running an isvc on its own pins.

A venv is cached under `<cache dir>/venvs/<key>/`, where the key hashes the requirement files'
contents (with the files they include through `-r`/`-c`, recursively) and the interpreter's
version: isvcs with the same requirements share a venv, a changed pin gets a new one.

It is built atomically: into a temporary sibling directory, moved into place only when the
install succeeded; a failed or interrupted install leaves nothing behind and raises `VenvError`
with the installer's last output lines. Concurrent `ensure` calls for one key wait on a file lock,
and the second one reuses what the first built.

The installer is uv (the `uv` package's binary) when it is installed, else pip;
`SANDBOX_INSTALLER=pip|uv` chooses. Nothing of the sandbox leaks in: the venv has no system
site-packages, and the installer runs without the caller's PYTHONPATH, PYTHONHOME or VIRTUAL_ENV.
TLS: uv trusts the CA bundle named by SSL_CERT_FILE (set from PIP_CERT when only that is set);
pip reads its own configuration (pip.conf, PIP_*).

Limits: a requirement on a local path (`-e ./lib`, `./pkg`) is not part of the key, so a change
inside such a package needs `ml-sandbox`'s cache entry removed (`rm -r <cache>/venvs/<key>`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import SandboxError
from sandbox.fsutil import build_into, file_lock
from sandbox.paths import cache_dir
from sandbox.progress import run_with_heartbeat

KEY_LENGTH = 16
# Part of the key: bump when the way venvs are built changes, so cached ones are rebuilt.
RECIPE = "2"
STAMP = ".ml-sandbox-venv.json"
TAIL_LINES = 20
INSTALLERS = ("uv", "pip")
# Variables of the caller that would make the isvc's Python see the sandbox's packages, or make
# an installer write somewhere else than the venv.
LEAKY_ENV = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "PIP_PREFIX",
    "PIP_TARGET",
    "PIP_USER",
    "PIP_REQUIRE_VIRTUALENV",
    "UV_PYTHON",
    "UV_PROJECT_ENVIRONMENT",
    "UV_SYSTEM_PYTHON",
)
# `-r FILE`, `--requirement FILE`, `--requirement=FILE`, and the same for `-c`/`--constraint`.
_INCLUDE = re.compile(r"^\s*(?:-r|-c|--requirement|--constraint)(?:\s*=\s*|\s+|(?=\S))(\S+)")

Progress = Callable[[str], None]


class VenvError(SandboxError):
    """A virtualenv could not be built; the message says why, with the installer's output tail."""


def _stderr(message: str) -> None:
    """A step starts with a bullet; its heartbeat and `done` lines are indented under it."""
    line = message if message.startswith("  ") else f"• {message}"
    print(line, file=sys.stderr, flush=True)


# -- the key -----------------------------------------------------------------------------------
def requirement_files(requirements: Sequence[Path]) -> list[Path]:
    """The files that make up these requirements: each given file, then (depth first) the files it
    includes with `-r`/`-c`, relative to the including file. Each file once, in order."""
    seen: dict[Path, None] = {}

    def visit(path: Path, chain: tuple[Path, ...]) -> None:
        path = path.resolve()
        if path in seen:
            return
        if not path.is_file():
            via = f" (included by {chain[-1]})" if chain else ""
            raise VenvError(f"requirements file {path} does not exist{via}")
        seen[path] = None
        for line in path.read_text(errors="replace").splitlines():
            match = _INCLUDE.match(line.split(" #")[0])
            if match:
                visit(path.parent / os.path.expandvars(match.group(1)), (*chain, path))

    for req in requirements:
        visit(Path(req), ())
    return list(seen)


@dataclass(frozen=True)
class Interpreter:
    """The Python a venv is made from: its path and `major.minor.micro` version."""

    executable: str
    version: str
    implementation: str


def interpreter(python: str | None = None) -> Interpreter:
    """Resolve `python` (a path or a name on PATH; default: the base interpreter of the Python
    running the sandbox) and ask it for its version."""
    if python is None:  # the running Python's own base interpreter: no need to ask it
        exe = getattr(sys, "_base_executable", None) or sys.executable
        return Interpreter(
            executable=str(Path(exe).absolute()),
            version=platform.python_version(),
            implementation=sys.implementation.name,
        )
    return _ask(python)


@functools.lru_cache(maxsize=32)
def _ask(exe: str) -> Interpreter:
    found = shutil.which(exe)
    if found is None:
        raise VenvError(f"no Python interpreter {exe!r} (give a path or a name on PATH)")
    code = "import sys, platform; print(platform.python_version(), sys.implementation.name)"
    try:
        proc = subprocess.run(
            [found, "-I", "-c", code], capture_output=True, text=True, env=_clean_env(), timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise VenvError(f"cannot run the Python interpreter {found}: {e}") from None
    if proc.returncode != 0 or len(proc.stdout.split()) != 2:
        raise VenvError(f"{found} is not a working Python interpreter: {proc.stderr.strip()}")
    version, impl = proc.stdout.split()
    return Interpreter(executable=str(Path(found).absolute()), version=version, implementation=impl)


def venv_key(
    requirements: Sequence[Path],
    interp: Interpreter,
    base: Sequence[Path] = (),
    without: Sequence[str] = (),
) -> str:
    """The cache key: the contents of every requirement file (includes followed), the
    interpreter's implementation and version, and RECIPE. Paths do not matter, contents do.
    A base layer and removals (see `ensure`) are part of it; without them the key is unchanged."""
    h = hashlib.sha256(f"{RECIPE}\0{interp.implementation}-{interp.version}\0".encode())
    for path in requirement_files(requirements):
        h.update(hashlib.sha256(path.read_bytes()).digest())
    if base:
        h.update(b"\0base\0")
        for path in requirement_files(base):
            h.update(hashlib.sha256(path.read_bytes()).digest())
    if without:
        h.update(("\0without\0" + "\0".join(sorted(without))).encode())
    return h.hexdigest()[:KEY_LENGTH]


def venvs_dir() -> Path:
    return cache_dir() / "venvs"


def python_of(venv: Path) -> Path:
    """The venv's interpreter."""
    return venv / "bin" / "python"


# -- the installer -----------------------------------------------------------------------------
def _uv_binary() -> str | None:
    try:
        import uv  # the uv wheel ships its binary
    except ImportError:
        return shutil.which("uv")
    try:
        return uv.find_uv_bin()
    except FileNotFoundError:
        return shutil.which("uv")


def installer() -> tuple[str, str | None]:
    """(`uv`, its binary) or (`pip`, None): `SANDBOX_INSTALLER` if set, else uv when present."""
    wanted = os.environ.get("SANDBOX_INSTALLER", "").strip().lower()
    if wanted and wanted not in INSTALLERS:
        raise VenvError(f"SANDBOX_INSTALLER must be one of {', '.join(INSTALLERS)}, not {wanted!r}")
    if wanted == "pip":
        return "pip", None
    binary = _uv_binary()
    if binary is None:
        if wanted == "uv":
            raise VenvError("SANDBOX_INSTALLER=uv but uv is not installed (pip install uv)")
        return "pip", None
    return "uv", binary


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENV}
    # uv reads the CA bundle from SSL_CERT_FILE; machines behind a TLS-intercepting proxy often
    # only configure pip's.
    if "SSL_CERT_FILE" not in env and env.get("PIP_CERT"):
        env["SSL_CERT_FILE"] = env["PIP_CERT"]
    # Local wheels pip is told about (a machine's CPU torch): uv does not read pip's settings.
    if "UV_FIND_LINKS" not in env and env.get("PIP_FIND_LINKS"):
        env["UV_FIND_LINKS"] = env["PIP_FIND_LINKS"]
    return env


def _commands(
    tool: str,
    uv: str | None,
    interp: Interpreter,
    tmp: Path,
    layers: Sequence[Sequence[Path]],
    without: Sequence[str] = (),
):
    """Create the venv, install each layer of requirement files in turn (a later layer is
    installed over the earlier ones, as `pip install -r` runs over a base image's packages), then
    remove the packages named in `without`."""
    if tool == "uv":
        assert uv is not None
        yield [uv, "venv", "--quiet", "--no-project", "--python", interp.executable, str(tmp)]
        # --compile-bytecode, as pip does: the build takes longer, but an isvc then starts from
        # bytecode even where PYTHONDONTWRITEBYTECODE is set (else kserve 0.14 is compiled on
        # every start: 2-3x the start-up time). See docs/benchmarks.md.
        install = [uv, "pip", "install", "--compile-bytecode", "--python", str(python_of(tmp))]
        uninstall = [uv, "pip", "uninstall", "--python", str(python_of(tmp))]
    else:
        yield [interp.executable, "-m", "venv", str(tmp)]
        pip = [str(python_of(tmp)), "-m", "pip"]
        install = [*pip, "install", "--disable-pip-version-check", "--no-input"]
        uninstall = [*pip, "uninstall", "--disable-pip-version-check", "--yes"]
    for layer in layers:
        if layer:
            yield [*install, *[arg for path in layer for arg in ("-r", str(path))]]
    if without:
        yield [*uninstall, *without]


def _run(cmd: list[str], env: dict[str, str], what: str, progress: Progress | None) -> None:
    try:
        code, output = run_with_heartbeat(cmd, env, what, progress)
    except OSError as e:
        raise VenvError(f"{what}: cannot run {cmd[0]}: {e}") from None
    if code != 0:
        lines = [ln for ln in output.splitlines() if ln.strip()]
        tail = "\n".join(f"  {ln}" for ln in lines[-TAIL_LINES:])
        raise VenvError(
            f"{what} failed (exit {code}): {shlex.join(cmd[:3])} …\n{tail}\n"
            "Fix the requirement files (or set SANDBOX_INSTALLER=pip or uv to try the other "
            "installer); nothing was left behind."
        )


def _relocate(tmp: Path, final: Path) -> None:
    """Point the scripts in bin/ (shebangs, activate) at the final directory."""
    old, new = str(tmp).encode(), str(final).encode()
    for path in (tmp / "bin").iterdir():
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if old in data:
            mode = path.stat().st_mode
            path.write_bytes(data.replace(old, new))
            path.chmod(mode)
    cfg = tmp / "pyvenv.cfg"
    if cfg.is_file():
        cfg.write_bytes(cfg.read_bytes().replace(old, new))


# -- ensure ------------------------------------------------------------------------------------
def _usable(venv: Path, key: str) -> bool:
    stamp = venv / STAMP
    if not stamp.is_file() or not python_of(venv).exists():
        return False
    try:
        return json.loads(stamp.read_text()).get("key") == key
    except (OSError, ValueError):
        return False


def cached(
    requirements: Sequence[Path],
    *,
    python: str | None = None,
    base: Sequence[Path] = (),
    without: Sequence[str] = (),
) -> Path | None:
    """The built venv that `ensure` with these arguments would return, or None when it would
    build it."""
    if not requirements:
        return None
    interp = interpreter(python)
    key = venv_key(requirements, interp, base, without)
    final = venvs_dir() / key
    return final if _usable(final, key) else None


def sweep_stale() -> None:
    """Remove the temporary folders of builds that were killed (no one holds their key's lock)."""
    root = venvs_dir()
    for tmp in root.glob(".*.tmp-*"):
        key = tmp.name[1:].split(".tmp-", 1)[0]
        with file_lock(root / f"{key}.lock", blocking=False) as held:
            if held:
                shutil.rmtree(tmp, ignore_errors=True)


def ensure(
    requirements: Sequence[Path],
    *,
    python: str | None = None,
    progress: Progress | None = _stderr,
    base: Sequence[Path] = (),
    without: Sequence[str] = (),
) -> Path:
    """The venv directory for these requirement files, built if not cached.

    `python`: the interpreter to build it from (default: the sandbox's base interpreter).
    `base`: requirement files installed first, in their own step, as a base image's packages are
    there before the isvc's `pip install -r` (which may then change some of them).
    `without`: packages removed at the end (ones the base would have that cannot run here).
    `progress`: called with one line before a build (None: silent). Raises VenvError.
    """
    if not requirements:
        raise VenvError("no requirement files given")
    interp = interpreter(python)
    key = venv_key(requirements, interp, base, without)
    root = venvs_dir()
    final = root / key
    if _usable(final, key):
        return final
    with file_lock(root / f"{key}.lock"):
        if _usable(final, key):  # built by a concurrent call while we waited
            return final
        for stale in root.glob(f".{key}.tmp-*"):  # from a killed build
            shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)  # half-made or corrupt
        tool, uv = installer()
        files = [Path(r).resolve() for r in requirements]
        below = [Path(r).resolve() for r in base]
        names = ", ".join(str(f) for f in [*below, *files])
        if progress:
            progress(f"building a Python {interp.version} venv for {names} with {tool} ({final})")
        started = time.monotonic()
        with build_into(final) as tmp:
            shutil.rmtree(tmp)  # the installers want to create it
            env = _clean_env()
            for cmd in _commands(tool, uv, interp, tmp, [below, files], without):
                _run(cmd, env, f"installing {names} with {tool}", progress)
            stamp = {
                "key": key,
                "requirements": [str(p) for p in requirement_files([*below, *files])],
                "without": list(without),
                "python": interp.executable,
                "python_version": interp.version,
                "installer": tool,
                "seconds": round(time.monotonic() - started, 1),
            }
            _relocate(tmp, final)
            (tmp / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        if progress:
            progress(f"  done ({time.monotonic() - started:.1f}s)")
    return final
