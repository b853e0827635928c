"""The local target's backend: each component a kserve model-server process on 127.0.0.1.

Processes are detached (they outlive the CLI), run under `logpipe` with rotated logs in
`.sandbox/logs/`, and carry the sandbox's mark (`processes`). The lifecycle is
`sandbox.runtime.lifecycle.HostTarget`; this module only says how a component is a process.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox import environments, venvs
from sandbox.catalog import Component, Service
from sandbox.runtime import launch, mesh, processes
from sandbox.runtime.lifecycle import (
    HostTarget,
    Plan,
    Prepared,
    component_env,
    replay_mode_args,
)
from sandbox.runtime.options import MediaWiki, UpOptions
from sandbox.runtime.state import ComponentRecord, State, logs_dir

CONTAINER_MODELS_DIR = "/mnt/models"
# Run by an isvc's own interpreter: the stock server, with every wildcard bind moved to loopback.
LAUNCHER = Path(launch.__file__)
SKIP_DIRS = frozenset({".git", ".venv", "node_modules", "__pycache__", ".pytest_cache"})
# --max-limit 50: the fixture articles (100+ links) then need continuation, as big articles do
# on Wikipedia, so every run exercises it.
REPLAY_ARGS = ["--max-limit", "50"]


def code_hash(service: Service) -> str:
    """Changes whenever the code the isvc runs changes: its service folder, and per component its
    entrypoint's folder and pythonpath folders. Files are identified by path, size and
    modification time (a monorepo is large)."""
    roots = {service.dir}
    for _, comp in service.component_items():
        roots.add((service.source_dir / comp.entrypoint).parent)
        roots |= {service.source_dir / d for d in comp.pythonpath}
    h = hashlib.sha256()
    for root in sorted(roots):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in sorted(filenames):
                if name.endswith((".pyc", ".log")):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:  # a dangling symlink (an editor's lock file)
                    continue
                h.update(f"{dirpath}/{name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:16]


def _clean_env() -> dict[str, str]:
    """The environment of an isvc: nothing of the sandbox's Python leaks in."""
    return {k: v for k, v in os.environ.items() if k not in venvs.LEAKY_ENV}


@dataclass
class LocalPrepared(Prepared):
    pythons: dict[str, str] = field(default_factory=dict)  # "<isvc>/<component>" -> its python


@dataclass(frozen=True)
class LocalPlan(Plan):
    python: str = ""  # the component's venv's interpreter
    entrypoint: str = ""
    pythonpath: tuple[str, ...] = ()
    code: str = ""  # code_hash: an edit restarts the isvc
    outside: tuple[str, ...] = ()  # launch.py's --route/--cafile: the mesh's egress (mesh.py)


class LocalBackend:
    name = "local"
    unit = "process"

    def check(self, opts: UpOptions) -> None:
        return None

    def prepare(self, services: list[Service], opts: UpOptions) -> LocalPrepared:
        """Every component gets the venv of its own requirement files."""
        pythons = {}
        for service in services:
            for name, comp in service.component_items():
                venv = environments.venv_for(
                    service, comp, progress=lambda line: print(f"• {line}", file=sys.stderr)
                )
                pythons[f"{service.name}/{name}"] = str(venvs.python_of(venv))
        return LocalPrepared(pythons=pythons)

    def plan(
        self,
        service: Service,
        name: str,
        component: Component,
        opts: UpOptions,
        wiki_url: str | None,
        prepared: LocalPrepared,
    ) -> LocalPlan:
        return LocalPlan(
            env=component_env(component, wiki_url, opts),
            args=tuple(component.args),
            python=prepared.pythons[f"{service.name}/{name}"],
            entrypoint=str(service.source_dir / component.entrypoint),
            pythonpath=tuple(str(service.source_dir / d) for d in component.pythonpath),
            code=code_hash(service),
            outside=tuple(mesh.launcher_args(wiki_url if opts.mediawiki.replay_server else None)),
        )

    def start(
        self,
        service: Service,
        name: str,
        plan: LocalPlan,
        models_dir: Path,
        revision: str,
        peers: dict[str, ComponentRecord],
    ) -> ComponentRecord:
        port = processes.free_port()
        # KServe's own arguments, as the controller gives them to the pod's containers.
        kserve = ["--model_name", service.name, "--http_port", str(port)]
        if name == "transformer":
            kserve += ["--predictor_host", f"127.0.0.1:{peers['predictor'].port}"]
        # The component's venv, the launcher (loopback binds), its gRPC port too.
        cmd = [plan.python, str(LAUNCHER), "--bind", "127.0.0.1"]
        for folder in plan.pythonpath:
            cmd += ["--pythonpath", folder]
        cmd += [*plan.outside, "--", plan.entrypoint, *kserve]
        cmd += ["--grpc_port", str(processes.free_port())]
        cmd += plan.args
        env = _clean_env()
        for key, value in plan.env.items():
            if value.startswith(CONTAINER_MODELS_DIR):
                value = str(models_dir) + value[len(CONTAINER_MODELS_DIR) :]
            env[key] = value
        log = logs_dir() / f"{service.name}-{name}.log"
        rec = self.spawn(cmd, log, env=env, cwd=service.source_dir)
        return ComponentRecord(name, port, process=rec)

    def spawn(
        self, cmd: list[str], log: Path, env: dict[str, str], cwd: Path | None = None
    ) -> processes.ProcessRecord:
        """Start a component's command (`ml-sandbox dev` forks it from a warm zygote instead)."""
        return processes.spawn(cmd, log, env=env, cwd=cwd)

    def alive(self, comp: ComponentRecord) -> bool:
        return comp.process is not None and processes.alive(comp.process)

    def why_dead(self, comp: ComponentRecord) -> str:
        time.sleep(0.2)  # let logpipe write the exit line
        return f"its process (pid {comp.process.pid if comp.process else '?'}) exited"

    def log_tail(self, comp: ComponentRecord, lines: int) -> str:
        if comp.process is None:
            return ""
        return processes.tail(comp.process.log, lines, since=comp.process.log_offset)

    def stop(self, comps: list[ComponentRecord]) -> None:
        for comp in comps:
            if comp.process:
                processes.stop(comp.process)

    def start_replay(self, prepared: Prepared, mode: MediaWiki) -> ComponentRecord:
        port = processes.free_port()
        cmd = [sys.executable, "-m", "sandbox.mediawiki", "--host", "127.0.0.1"]
        cmd += [*REPLAY_ARGS, "--port", str(port), *replay_mode_args(mode, mode.directory)]
        rec = processes.spawn(cmd, logs_dir() / "mediawiki.log", env=dict(os.environ))
        return ComponentRecord("mediawiki", port, process=rec)

    def replay_url(self, comp: ComponentRecord) -> str:
        return comp.url

    def cleanup_idle(self, st: State) -> None:
        return None

    def orphans(self, st: State) -> list[str]:
        return [f"process {o.pid} ({o.cmd[:120]})" for o in processes.orphans(st.processes())]

    def stop_orphans(self, st: State) -> None:
        processes.stop_orphans(processes.orphans(st.processes()))

    def logs_by_name(self, isvc: str, component: str | None) -> list[ComponentRecord]:
        found = sorted(logs_dir().glob(f"{isvc}-{component or '*'}.log"))
        return [file_component(f, f.stem.removeprefix(f"{isvc}-")) for f in found]

    def logs(self, comps: list[ComponentRecord], follow: bool, lines: int | None) -> None:
        files = [Path(c.process.log) for c in comps if c.process]
        for f in files:
            if len(files) > 1:
                print(f"==> {f} <==")
            print(processes.tail(f, 100 if lines is None else lines), end="", flush=True)
        if follow:
            follow_files(files)


def file_component(log: Path, name: str = "") -> ComponentRecord:
    """A component known only by its log file (after `down`; the gateway's)."""
    return ComponentRecord(name, 0, process=processes.ProcessRecord(0, -1, str(log), []))


def follow_files(files: list[Path]) -> None:
    """Print lines appended to `files` until interrupted, like `tail -F` (across rotation)."""
    handles: dict[Path, Any] = {}

    def reopen(f: Path, at_end: bool) -> None:
        if f in handles:
            handles[f].close()
        try:
            h = f.open(errors="replace")
        except OSError:
            handles.pop(f, None)
            return
        if at_end:
            h.seek(0, os.SEEK_END)
        handles[f] = h

    for f in files:
        reopen(f, at_end=True)
    try:
        while True:
            quiet = True
            for f in files:
                h = handles.get(f)
                if h is None or _rotated(f, h):
                    reopen(f, at_end=False)
                    h = handles.get(f)
                if h is None:
                    continue
                for line in iter(h.readline, ""):
                    quiet = False
                    sys.stdout.write(line)
            sys.stdout.flush()
            if quiet:
                time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for h in handles.values():
            h.close()


def _rotated(path: Path, handle: Any) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino
    except OSError:
        return False


def target() -> HostTarget:
    return HostTarget(LocalBackend())
