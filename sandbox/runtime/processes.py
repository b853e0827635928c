"""Detached processes of a sandbox: start, is-alive (pid reuse safe), stop, find, tail their logs.

Every process the sandbox starts runs in a session of its own (it outlives the CLI) under
`logpipe`, which keeps its output in a size-rotated, private log file. Each carries the sandbox's
mark, the environment variable `ML_SANDBOX_RUN_DIR=<run dir>`, so that a process the state file
no longer lists (after a SIGKILLed `up`, a lost state file) is still found as this sandbox's
(`orphans()`), and so that nothing is ever signalled unless it is proven ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sandbox.errors import RunError
from sandbox.paths import run_dir
from sandbox.runtime import logpipe

MARK_ENV = "ML_SANDBOX_RUN_DIR"


def log_max_bytes() -> int:
    return int(os.environ.get("SANDBOX_LOG_MAX_BYTES", logpipe.DEFAULT_MAX_BYTES))


def log_keep() -> int:
    return int(os.environ.get("SANDBOX_LOG_KEEP", logpipe.DEFAULT_KEEP))


@dataclass
class ProcessRecord:
    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22: tells a live process from a reused pid
    log: str
    cmd: list[str]
    # Where this run's output starts in `log` (earlier runs' lines come before it).
    log_offset: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def mark() -> str:
    """The value of MARK_ENV for this sandbox's processes."""
    return str(run_dir().resolve())


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0], pgrp [2], ticks [19])."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def _start_ticks(pid: int) -> int | None:
    fields = _stat(pid)
    if fields is None or fields[0] == "Z":  # a zombie is a dead process
        return None
    return int(fields[19])


def alive(rec: ProcessRecord) -> bool:
    return _start_ticks(rec.pid) == rec.start_ticks


def carries_mark(pid: int, value: str | None = None) -> bool:
    """True when process `pid` was started by this sandbox (its environment holds the mark)."""
    want = f"{MARK_ENV}={value or mark()}".encode()
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return want in env.split(b"\0")


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return " ".join(a.decode(errors="replace") for a in raw.split(b"\0") if a)


def spawn(cmd: list[str], log: Path, env: dict[str, str], cwd: Path | None = None) -> ProcessRecord:
    """Start `cmd` detached, in its own session, its output in the rotated log `log`."""
    log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    banner = f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
        offset = os.fstat(fd).st_size
        os.write(fd, banner)
    finally:
        os.close(fd)
    wrapper = [sys.executable, "-m", "sandbox.runtime.logpipe", "--log", str(log)]
    wrapper += ["--max-bytes", str(log_max_bytes()), "--keep", str(log_keep()), "--"]
    proc = subprocess.Popen(
        [*wrapper, *cmd],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**env, MARK_ENV: mark()},
        cwd=cwd,
        start_new_session=True,
    )
    ticks = _start_ticks(proc.pid) or 0
    return ProcessRecord(pid=proc.pid, start_ticks=ticks, log=str(log), cmd=cmd, log_offset=offset)


def stop(rec: ProcessRecord, grace_s: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL after `grace_s`, then whatever of the group is left
    (a crashed server's workers). Only processes proven ours are signalled: the recorded leader
    while its start time matches, and group members that carry this sandbox's mark."""
    if alive(rec):
        _signal_group(rec.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while alive(rec) and time.monotonic() < deadline:
            _reap(rec.pid)
            time.sleep(0.05)
        if alive(rec):
            _signal_group(rec.pid, signal.SIGKILL)
            while alive(rec):
                _reap(rec.pid)
                time.sleep(0.05)
        _reap(rec.pid)
    for pid in group_members(rec.pid):
        if carries_mark(pid):
            _kill(pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid`."""
    members = []
    for pid in _pids():
        fields = _stat(pid)
        if fields and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(pid)
    return members


def _reap(pid: int) -> None:
    """Collect our own child's exit status, if it is ours (else the kernel's init does it)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


@dataclass(frozen=True)
class Orphan:
    pid: int
    cmd: str


def orphans(known: list[ProcessRecord]) -> list[Orphan]:
    """Live processes with this sandbox's mark that belong to none of the `known` records (their
    process group is not a known live leader): what a SIGKILLed `up` or a lost state left."""
    leaders = {r.pid for r in known if alive(r)}
    me = os.getpid()
    found = []
    for pid in _pids():
        if pid == me or not carries_mark(pid):
            continue
        fields = _stat(pid)
        if fields is None or fields[0] == "Z" or int(fields[2]) in leaders:
            continue
        found.append(Orphan(pid, _cmdline(pid)))
    return found


def stop_orphans(found: list[Orphan]) -> None:
    """SIGTERM each orphan's group (re-checking the mark), then SIGKILL what is left."""
    for o in found:
        if carries_mark(o.pid):
            _kill(o.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(carries_mark(o.pid) for o in found):
        time.sleep(0.05)
    for o in found:
        if carries_mark(o.pid):
            _kill(o.pid, signal.SIGKILL)


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
    passes first, stop it and raise `RunError` with this run's last log lines."""
    rec = spawn(cmd, log, env=dict(os.environ))
    deadline = time.monotonic() + timeout_s
    while not http_ok(ready_url):
        if not alive(rec) or time.monotonic() > deadline:
            stop(rec)
            raise RunError(f"{what} did not start:\n{tail(log, 15, since=rec.log_offset)}")
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


def log_files(path: Path | str) -> list[Path]:
    """The log and its rotated predecessors that exist, the oldest first."""
    return [p for p in logpipe.rotated(Path(path), log_keep()) if p.exists()]


def tail(path: Path | str, lines: int = 20, since: int = 0) -> str:
    """The last `lines` lines of a log, read across its rotated files; with `since`, only what
    was written after that offset of the current file (one run's output)."""
    path = Path(path)
    out: deque[str] = deque(maxlen=lines)
    for f in log_files(path):
        try:
            with open(f, "rb") as fh:
                if f == path and since and fh.seek(0, os.SEEK_END) >= since:
                    out.clear()  # this run's output starts in this file
                    fh.seek(since)
                else:
                    fh.seek(0)
                out.extend(line.decode(errors="replace") for line in fh)
        except OSError:
            continue
    return "".join(out)
