"""The run directory's state (`.sandbox/state.json`): what runs, typed, read and written under lock.

Every CLI invocation, from any shell, sees the same state. Writers hold `locked()`, which takes an
exclusive file lock (so `down` waits for an `up` in progress) and saves after every recorded
change (`State.save()`), so that a process is on record from the moment it exists: a SIGKILLed
`up` leaves nothing `down` cannot find. Only facts are stored; what follows from them (an isvc's
URL, the gateway's routes) is derived.

The run directory is private (0700) and so is every file in it (0600): logs hold page titles and
query strings.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sandbox.fsutil import atomic_write, file_lock
from sandbox.hints import prog
from sandbox.paths import run_dir
from sandbox.runtime.processes import ProcessRecord

VERSION = 2


def state_path() -> Path:
    return run_dir() / "state.json"


def logs_dir() -> Path:
    return ensure_run_dir() / "logs"


def ensure_run_dir() -> Path:
    rd = run_dir()
    rd.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(rd, 0o700)
    return rd


@dataclass
class ComponentRecord:
    """One running component: a process (local) or a container (docker), reached on a port of
    127.0.0.1. The replay server is recorded the same way."""

    name: str  # predictor | transformer | mediawiki
    port: int
    process: ProcessRecord | None = None
    container: str | None = None
    image: str | None = None
    # What it was started as, for components whose record alone does not say (the replay
    # server's mode and folders): compared to tell "up to date" from "restart".
    spec: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ComponentRecord:
        proc = d.get("process")
        return cls(
            name=str(d["name"]),
            port=int(d["port"]),
            process=ProcessRecord(**proc) if proc else None,
            container=d.get("container"),
            image=d.get("image"),
            spec=str(d.get("spec", "")),
        )


@dataclass
class IsvcRecord:
    """One isvc on a target: its components and the fingerprint of what they run."""

    target: str
    isvc: str
    host: str
    fingerprint: str
    models_dir: str
    components: dict[str, ComponentRecord] = field(default_factory=dict)
    # The service.yaml it was started from: the CLI knows it by name while it runs, wherever it
    # came from (`init --dir`, `--service-dir`), even when that file is broken since.
    service_file: str = ""

    @property
    def key(self) -> str:
        return f"{self.target}/{self.isvc}"

    @property
    def url(self) -> str | None:
        """Where the ingress sends this isvc's traffic: its transformer when it has one."""
        entry = self.components.get("transformer") or self.components.get("predictor")
        return entry.url if entry else None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IsvcRecord:
        comps = {n: ComponentRecord.from_dict(c) for n, c in d["components"].items()}
        return cls(
            target=str(d["target"]),
            isvc=str(d["isvc"]),
            host=str(d["host"]),
            fingerprint=str(d["fingerprint"]),
            models_dir=str(d["models_dir"]),
            components=comps,
            service_file=str(d.get("service_file", "")),
        )


@dataclass
class ServerRecord:
    """A host process of the platform: the gateway."""

    port: int
    process: ProcessRecord
    max_body_bytes: int | None = None  # the gateway's --max-body-bytes (None: its default)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class State:
    gateway: ServerRecord | None = None
    # The MediaWiki replay server of each target that started one ("local", "docker").
    mediawiki: dict[str, ComponentRecord] = field(default_factory=dict)
    # Isvcs that serve, by `<target>/<isvc>`; the gateway routes exactly these.
    isvcs: dict[str, IsvcRecord] = field(default_factory=dict)
    # Isvcs being started or replaced, by the same key: not routed until they are ready.
    starting: dict[str, IsvcRecord] = field(default_factory=dict)
    # The console, when `up --console` started it beside the gateway.
    console: ServerRecord | None = None

    def routes(self) -> dict[str, IsvcRecord]:
        """Host -> the isvc that serves it."""
        return {rec.host: rec for rec in self.isvcs.values() if rec.url}

    def processes(self) -> list[ProcessRecord]:
        """Every process on record (to tell orphans from known processes)."""
        procs = [self.gateway.process] if self.gateway else []
        procs += [self.console.process] if self.console else []
        comps = [
            c
            for r in [*self.isvcs.values(), *self.starting.values()]
            for c in r.components.values()
        ]
        comps += list(self.mediawiki.values())
        procs += [c.process for c in comps if c.process]
        return procs

    def targets(self) -> list[str]:
        """Targets with something on record."""
        found = {r.target for r in [*self.isvcs.values(), *self.starting.values()]}
        return sorted(found | set(self.mediawiki))

    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: Any) -> State:
        """Raises ValueError (or KeyError/TypeError) when `d` is not a state of this shape."""
        if not isinstance(d, dict) or d.get("version") != VERSION:
            raise ValueError(f"not a version-{VERSION} state document")
        gw = d.get("gateway")
        gateway = None
        if gw:
            gateway = ServerRecord(
                int(gw["port"]), ProcessRecord(**gw["process"]), gw.get("max_body_bytes")
            )
        return cls(
            gateway=gateway,
            mediawiki={t: ComponentRecord.from_dict(c) for t, c in d["mediawiki"].items()},
            isvcs={k: IsvcRecord.from_dict(v) for k, v in d["isvcs"].items()},
            starting={k: IsvcRecord.from_dict(v) for k, v in d["starting"].items()},
            console=_server(d.get("console")),
        )

    def save(self) -> None:
        """Write atomically (a reader never sees half a file), private to the user."""
        ensure_run_dir()
        atomic_write(state_path(), json.dumps(self.to_dict(), indent=2, sort_keys=True), 0o600)


def _server(d: Any) -> ServerRecord | None:
    if not d:
        return None
    return ServerRecord(int(d["port"]), ProcessRecord(**d["process"]), d.get("max_body_bytes"))


def read() -> State:
    """The current state. An unreadable or wrong-shaped file is moved aside with a warning that
    says so; its processes are then found as orphans by `status` and stopped by `down`."""
    path = state_path()
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return State()
    try:
        return State.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        bad = path.with_name(f"state.corrupt-{time.strftime('%Y%m%d-%H%M%S')}.json")
        with contextlib.suppress(OSError):
            os.replace(path, bad)
        print(
            f"ml-sandbox: warning: {path} is not a state file this version can read ({e}); moved "
            f"it to {bad.name}. Processes it listed may still run: `{prog()} status` lists them as "
            f"orphans and `{prog()} down` stops them.",
            file=sys.stderr,
        )
        return State()


@contextlib.contextmanager
def locked() -> Iterator[State]:
    """The state, exclusively (other writers and `down` wait); saved when the block exits, even
    on error. Call `.save()` inside the block after each change that must survive a SIGKILL."""
    ensure_run_dir()
    lock = run_dir() / "state.lock"
    with contextlib.ExitStack() as held:
        if not held.enter_context(file_lock(lock, blocking=False)):
            print("• waiting for another ml-sandbox command on this sandbox …", file=sys.stderr)
            held.enter_context(file_lock(lock))
        st = read()
        try:
            yield st
        finally:
            st.save()
