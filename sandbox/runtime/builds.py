"""Build isvcs' venvs and sandbox models in parallel, each isvc in a child process, and hand each
isvc over the moment its own build is done, so that it is served while others still build.

`ParallelBuilds` runs in the CLI's main thread: it starts at most `jobs` children (one per isvc
that has something to build; default: the number of cores, SANDBOX_BUILD_JOBS to choose), reads
their output (each line printed with the isvc's name in front), and yields isvcs as their builds
succeed; isvcs with nothing to build come first. A child (`python -m sandbox.runtime.builds
SERVICE_YAML SOURCE`) builds the venv of every component, then the sandbox model, into the shared
cache with the code a sequential build uses (`environments.venv_for`, `models.build`): each build
goes into a temporary folder renamed into place, under the cache entry's lock, so two isvcs with
the same requirement files build one venv.

Interrupts: each child runs in its own session (Ctrl-C in the terminal reaches only the CLI). When
the block ends early (a signal raised as `Interrupted`, a failed build, a failed start), every
child's process group gets SIGTERM, which the child turns into KeyboardInterrupt: its installer is
killed and its temporary folders removed. A child still running after STOP_GRACE_S is killed, and
the temporary venv folders it left are removed. A child also gets SIGTERM when the CLI dies
(PR_SET_PDEATHSIG), so a SIGKILLed `up` leaves no build behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sandbox import environments, models, venvs
from sandbox.catalog import Service, load_file
from sandbox.errors import RunError, SandboxError
from sandbox.runtime.lifecycle import critical

STOP_GRACE_S = 10.0
TAIL_LINES = 25
JOBS_ENV = "SANDBOX_BUILD_JOBS"
_ROOT = Path(__file__).resolve().parents[2]  # where `python -m sandbox...` finds this package


def jobs() -> int:
    """How many isvcs build at once: SANDBOX_BUILD_JOBS, else the number of cores."""
    raw = os.environ.get(JOBS_ENV, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise RunError(f"{JOBS_ENV} must be a positive whole number, not {raw!r}")
        return int(raw)
    return max(1, os.cpu_count() or 1)


def needs_build(service: Service, source: str) -> bool:
    """Whether a component's venv, or (source `sandbox`) the sandbox model, is not cached yet."""
    for _, comp in service.component_items():
        if environments.cached_venv(service, comp) is None:
            return True
    if source != "sandbox" or service.model.data is not None:
        return False
    return not models.model_cache_path(service).exists()


def build(service: Service, source: str) -> None:
    """What one child does: every component's venv, then the model (`models.build` checks a
    cached model's hash and rebuilds a wrong one)."""
    for _, comp in service.component_items():
        environments.venv_for(service, comp)
    if source == "sandbox":
        models.build(service)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class _Child:
    service: Service
    proc: subprocess.Popen
    started: float
    partial: bytes = b""
    lines: list[str] = field(default_factory=list)


class ParallelBuilds:
    """`with ParallelBuilds(services, source) as ready: for service in ready: ...` (see the
    module's docstring). A failed build raises RunError with the child's last lines."""

    def __init__(self, services: list[Service], source: str, jobs_: int | None = None):
        self.services = services
        self.source = source
        self.jobs = jobs_ or jobs()
        self.children: dict[int, _Child] = {}  # by the fd of its output
        self.selector = selectors.DefaultSelector()

    def __enter__(self) -> Iterator[Service]:
        return self._ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ready(self) -> Iterator[Service]:
        todo = [s for s in self.services if needs_build(s, self.source)]
        for service in self.services:
            if service not in todo:
                yield service
        if todo:
            names = ", ".join(s.name for s in todo)
            n = min(self.jobs, len(todo))
            print(
                f"• building the venvs and models of {names} ({n} at a time; each isvc starts "
                "as soon as its own build is done)",
                file=sys.stderr,
                flush=True,
            )
        while todo or self.children:
            while todo and len(self.children) < self.jobs:
                self._start(todo.pop(0))
            for key, _ in self.selector.select(timeout=1.0):
                child = self.children[key.fd]
                if self._read(key.fd, child):
                    continue
                self._reap(key.fd, child)  # its output ended: it exited
                yield child.service

    def _start(self, service: Service) -> None:
        cmd = [sys.executable, "-m", "sandbox.runtime.builds", str(service.dir / "service.yaml")]
        with critical():  # a signal here is acted on once the child is on record
            proc = subprocess.Popen(
                [*cmd, self.source],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                cwd=_ROOT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            self.children[fd] = _Child(service, proc, time.monotonic())
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ)

    def _read(self, fd: int, child: _Child) -> bool:
        """Print the child's complete lines, prefixed with its isvc; False at end of output."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not data:
            if child.partial:
                self._say(child, child.partial.decode(errors="replace"))
            return False
        *complete, child.partial = (child.partial + data).split(b"\n")
        for raw in complete:
            self._say(child, raw.decode(errors="replace"))
        return True

    def _say(self, child: _Child, line: str) -> None:
        text = line.rstrip()
        if not text.strip():
            return
        child.lines = [*child.lines[-TAIL_LINES + 1 :], text]
        event = text.strip().removeprefix("•").strip()  # one line per event, named
        print(f"  [{child.service.name}] {event}", file=sys.stderr, flush=True)

    def _reap(self, fd: int, child: _Child) -> None:
        self.selector.unregister(fd)
        del self.children[fd]
        code = child.proc.wait()
        assert child.proc.stdout is not None
        child.proc.stdout.close()
        took = time.monotonic() - child.started
        name = child.service.name
        if code != 0:
            tail = "\n".join(child.lines[-TAIL_LINES:]) or "(no output)"
            raise RunError(f"building {name}'s venv and model failed (exit {code}):\n{tail}")
        print(f"  [{name}] built ({took:.1f}s)", file=sys.stderr, flush=True)

    def stop(self) -> None:
        """Stop every child still building (SIGTERM to its group, SIGKILL after the grace) and
        remove what a killed one left; signals wait until this is done."""
        if not self.children:
            self.selector.close()
            return
        with _signals_deferred():
            for child in self.children.values():
                _signal_group(child.proc, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_S
            for child in self.children.values():
                try:
                    child.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal_group(child.proc, signal.SIGKILL)  # it, and its installer
                    child.proc.wait()
                if child.proc.stdout:
                    child.proc.stdout.close()
            self.children.clear()
            self.selector.close()
            venvs.sweep_stale()


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """A second Ctrl-C while children are stopped must not leave one running."""
    with contextlib.ExitStack() as stack:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            old = signal.signal(s, signal.SIG_IGN)
            stack.callback(signal.signal, s, old)
        yield


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str]) -> int:
    """The child: build one isvc (argv: its service.yaml, the model source)."""
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, _interrupt)  # unwinds: the installer is killed, temp folders removed
    try:
        build(load_file(Path(argv[0])), argv[1])
    except KeyboardInterrupt:
        return 130
    except SandboxError as e:
        print(str(e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
