"""Detached processes with pids recorded on disk: start, is-alive (pid reuse safe), stop, tail."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

from sandbox.runtime.base import RuntimeError_


@dataclass
class ProcessRecord:
    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22: tells a live process from a reused pid
    log: str
    cmd: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie is a dead process
        return None
    return int(fields[19])


def alive(rec: ProcessRecord | dict) -> bool:
    r = rec if isinstance(rec, ProcessRecord) else ProcessRecord(**rec)
    return _start_ticks(r.pid) == r.start_ticks


def spawn(cmd: list[str], log: Path, env: dict[str, str], cwd: Path | None = None) -> ProcessRecord:
    """Start `cmd` in its own session (it outlives the CLI), stdout+stderr appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(
            f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode()
        )
        out.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    ticks = _start_ticks(proc.pid) or 0
    return ProcessRecord(pid=proc.pid, start_ticks=ticks, log=str(log), cmd=cmd)


def stop(rec: ProcessRecord | dict, grace_s: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL after `grace_s`; no-op if already gone."""
    r = rec if isinstance(rec, ProcessRecord) else ProcessRecord(**rec)
    if not alive(r):
        _sweep_group(r.pid)
        return
    try:
        os.killpg(r.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        _reap(r.pid)
        if not alive(r):
            _sweep_group(r.pid)
            return
        time.sleep(0.05)
    try:
        os.killpg(r.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while alive(r):
        _reap(r.pid)
        time.sleep(0.05)
    _sweep_group(r.pid)


def _sweep_group(pgid: int) -> None:
    """Kill what is left of a process group whose leader is gone (e.g. a crashed server's
    workers). Safe: Linux does not reuse a pid while a process group of that id exists."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _reap(pid: int) -> None:
    """Collect our own child's exit status, if it is ours (else the kernel's init does it)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def http_ok(url: str) -> bool:
    """True when `url` answers 200 within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def spawn_ready(
    cmd: list[str], log: Path, ready_url: str, what: str, timeout_s: float = 15.0
) -> ProcessRecord:
    """`spawn()`, then wait until `ready_url` answers 200. If the process dies or the deadline
    passes first, stop it and raise `RuntimeError_` with the last lines of its log."""
    rec = spawn(cmd, log, env=dict(os.environ))
    deadline = time.monotonic() + timeout_s
    while not http_ok(ready_url):
        if not alive(rec) or time.monotonic() > deadline:
            stop(rec)
            raise RuntimeError_(f"{what} did not start:\n{tail(log, 15)}")
        time.sleep(0.05)
    return rec


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
        return False


def tail(path: Path | str, lines: int = 20) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(deque(f, maxlen=lines))
    except OSError:
        return ""
