"""The local target's warm start for `ml-sandbox dev`: one zygote per isvc venv, forking each new
version of a component instead of starting a cold interpreter.

A cold start of a stock isvc spends seconds importing kserve and the isvc's third-party packages.
`Zygotes` keeps one warm process per venv (`sandbox/runtime/zygote.py`, run by that venv's Python)
that has imported them, and `ZygoteBackend` is the local backend with its process start swapped:
a component whose command is the launcher in a venv with a ready zygote is forked from it, with
the same arguments, environment, working folder and log. Everything else (plan, readiness, route
switch, retirement, logs) is the local target's own.

Zygotes are this command's own: not in the state file, stopped when `dev` ends.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox import venvs
from sandbox.catalog import Service
from sandbox.runtime import launch, local, processes
from sandbox.runtime.options import UpOptions

ZYGOTE = Path(launch.__file__).with_name("zygote.py")
READY_TIMEOUT_S = 180.0
FORK_TIMEOUT_S = 10.0
STOP_GRACE_S = 5.0
# sockaddr_un's sun_path is 108 bytes on Linux, with its terminating NUL.
SOCKET_PATH_MAX = 100


def third_party_imports(service: Service) -> list[str]:
    """Top-level modules the isvc's code imports that are neither its own nor the standard
    library's: what a zygote imports ahead. (kserve is always imported.)"""
    src = service.source_dir
    folders: set[Path] = set()
    for _, comp in service.component_items():
        folders.add((src / comp.entrypoint).parent)
        folders |= {src / d for d in comp.pythonpath}
    own: set[str] = set()
    names: set[str] = set()
    for folder in folders:
        for path in folder.rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            own.add(path.stem)
            own |= {p for p in path.relative_to(folder).parts[:-1]}
            try:
                tree = ast.parse(path.read_text(errors="replace"))
            except (SyntaxError, ValueError):
                continue  # a broken file: the roll will say so
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
    skip = own | set(sys.stdlib_module_names) | {"kserve", "__future__"}
    return sorted(n for n in names if n not in skip)


@dataclass
class Zygote:
    python: str
    socket: Path
    log: Path
    proc: subprocess.Popen

    def ready(self) -> bool:
        return self.socket.exists() and self.proc.poll() is None

    def fork(self, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> int:
        request = {"argv": argv, "env": env, "cwd": str(cwd), "log": str(log)}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(FORK_TIMEOUT_S)
            s.connect(str(self.socket))
            s.sendall(json.dumps(request).encode() + b"\n")
            answer = json.loads(s.makefile("rb").readline())
        if "pid" not in answer:
            raise OSError(answer.get("error", "the zygote did not fork"))
        return int(answer["pid"])


class Zygotes:
    """This command's zygotes, one per venv Python."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.by_python: dict[str, Zygote] = {}
        self.started = 0

    def ensure(self, python: str, preload: list[str]) -> Zygote:
        z = self.by_python.get(python)
        if z and z.proc.poll() is None:
            return z
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.started += 1
        name = f"zygote-{os.getpid()}-{self.started}"
        sock = self.folder / f"{name}.sock"
        if len(os.fsencode(sock)) > SOCKET_PATH_MAX:  # a Unix socket's path is short
            sock = Path(tempfile.mkdtemp(prefix="ml-sandbox-")) / f"{name}.sock"
        log = self.folder / f"{name}.log"
        cmd = [python, str(ZYGOTE), "--socket", str(sock), "--bind", "127.0.0.1"]
        for name in preload:
            cmd += ["--preload", name]
        env = {k: v for k, v in os.environ.items() if k not in venvs.LEAKY_ENV}
        env.pop(processes.MARK_ENV, None)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        z = Zygote(python, sock, log, proc)
        self.by_python[python] = z
        return z

    def wait_ready(self, python: str, timeout_s: float = READY_TIMEOUT_S) -> Zygote | None:
        """The zygote of `python` once it serves forks; None when there is none or it died."""
        z = self.by_python.get(python)
        deadline = time.monotonic() + timeout_s
        while z and not z.ready():
            if z.proc.poll() is not None or time.monotonic() > deadline:
                return None
            time.sleep(0.02)
        return z

    def retain(self, pythons: set[str]) -> None:
        """Stop the zygotes of venvs no longer used (after a requirements change)."""
        for python in list(self.by_python):
            if python not in pythons:
                self._stop(self.by_python.pop(python))

    def stop_all(self) -> None:
        for python in list(self.by_python):
            self._stop(self.by_python.pop(python))

    def _stop(self, z: Zygote) -> None:
        if z.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(z.proc.pid, signal.SIGTERM)
            try:
                z.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(z.proc.pid, signal.SIGKILL)
                z.proc.wait()
        with contextlib.suppress(OSError):
            z.socket.unlink()
        if z.socket.parent != self.folder:
            shutil.rmtree(z.socket.parent, ignore_errors=True)


class ZygoteBackend(local.LocalBackend):
    """The local backend, starting stock components by forking their venv's zygote."""

    def __init__(self, zygotes: Zygotes):
        self.zygotes = zygotes
        self.forked = 0

    def prepare(self, services: list[Service], opts: UpOptions):
        self.pythons: set[str] = set()  # the venvs of this `up`'s isvcs
        return super().prepare(services, opts)

    def built(self, service: Service, prepared: local.LocalPrepared) -> None:
        """Once an isvc's venvs are built: a warm zygote per venv, stale ones stopped."""
        super().built(service, prepared)
        pythons = {prepared.pythons[f"{service.name}/{n}"] for n, _ in service.component_items()}
        self.pythons |= pythons
        self.zygotes.retain(self.pythons)
        preload = third_party_imports(service)
        for python in pythons:
            self.zygotes.ensure(python, preload)

    def spawn(
        self, cmd: list[str], log: Path, env: dict[str, str], cwd: Path | None = None
    ) -> processes.ProcessRecord:
        launcher = len(cmd) > 2 and cmd[1] == str(local.LAUNCHER)
        z = self.zygotes.wait_ready(cmd[0]) if launcher else None
        if z is None:
            return super().spawn(cmd, log, env, cwd)
        log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        banner = f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} forking: {' '.join(cmd)}\n"
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            offset = os.fstat(fd).st_size
            os.write(fd, banner.encode())
        finally:
            os.close(fd)
        try:
            pid = z.fork(cmd[2:], env, cwd or Path.cwd(), log)
        except OSError as e:
            print(f"• the zygote could not fork ({e}): starting a new process", file=sys.stderr)
            return super().spawn(cmd, log, env, cwd)
        self.forked += 1
        ticks = processes._start_ticks(pid) or 0
        return processes.ProcessRecord(pid, ticks, str(log), cmd, log_offset=offset)
