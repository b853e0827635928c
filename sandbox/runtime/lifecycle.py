"""One isvc lifecycle for the targets that run on this host (local processes, docker containers).

`HostTarget` writes `up`, `down`, `status`, `logs` and the smoke test once; a `Backend` supplies
only what differs between targets: prepare (build images), plan a component, start it, is it
alive, why did it die, stop it, its log, and the MediaWiki replay server.

`up`, for each isvc, in the order the backend has it ready (the local target builds the isvcs'
venvs and models in parallel, and each isvc goes on as soon as its own build is done, while the
others still build):

1. plan every component and fingerprint the plan; an isvc that runs with this fingerprint is left
   alone ("up to date");
2. otherwise stage the model and start the new components beside the running ones (new ports, new
   containers), recording each in the state the moment it exists;
3. wait until every new component answers ready;
4. switch the gateway's route to the new components, then stop the old ones: like a Knative
   revision roll-out, a changed or crashed isvc is replaced without a gap, and a failed start
   leaves the running version serving.

A failure, Ctrl-C, SIGTERM or SIGHUP at any point stops exactly what this invocation started and
nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sandbox import models
from sandbox.catalog import Component, Service
from sandbox.errors import RunError
from sandbox.hints import prog
from sandbox.paths import private_dir, run_dir
from sandbox.progress import step
from sandbox.runtime import ingress, processes, state
from sandbox.runtime.options import MediaWiki, UpOptions
from sandbox.runtime.state import ComponentRecord, IsvcRecord, State
from sandbox.runtime.targets import ComponentStatus

LOG_TAIL_LINES = 25


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP during a command: rolled back like Ctrl-C."""


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_critical = 0
_pending: int | None = None


def _on_signal(signum: int, _frame: Any) -> None:
    global _pending
    if _critical:
        _pending = signum  # raised when the critical section ends
        return
    raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """Turn Ctrl-C, SIGTERM and SIGHUP (a cancelled CI job, `timeout`, a closed terminal) into
    `Interrupted`, so that `up` rolls back the same way whichever arrives."""
    global _pending
    _pending = None
    saved = {s: signal.signal(s, _on_signal) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """Start a process and record it with no signal in between: a signal that arrives here is
    acted on when the block ends, when the state already lists what was started."""
    global _critical, _pending
    _critical += 1
    try:
        yield
    finally:
        _critical -= 1
    if not _critical and _pending is not None:
        signum, _pending = _pending, None
        raise Interrupted(signal.Signals(signum).name)


@dataclass
class Prepared:
    """What a backend's `prepare` made ready for this `up` (venvs, images), for `plan` and
    `start_replay`; each backend extends it."""

    replay_image: str | None = None  # the replay server's image, when it runs in a container


@dataclass(frozen=True)
class Plan:
    """How a component runs; any change to it restarts the isvc (it is part of the
    fingerprint). Each backend extends it with what it needs to start the component."""

    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()


class Backend(Protocol):
    """What a host target supplies to the lifecycle."""

    name: str  # the target's name: local | docker
    unit: str  # what a component runs as: process | container

    def check(self, opts: UpOptions) -> None:
        """Refuse options this target cannot honour (RunError)."""

    def prepare(self, services: list[Service], opts: UpOptions) -> Prepared:
        """Work that needs no state (images); what `plan` and `start_replay` need."""

    def ready(
        self, services: list[Service], opts: UpOptions, prepared: Any
    ) -> contextlib.AbstractContextManager[Iterator[Service]]:
        """The isvcs in the order they become ready to start (what each needs is built, and
        recorded in `prepared`); leaving the block stops the builds still running."""

    def plan(
        self,
        service: Service,
        name: str,
        component: Component,
        opts: UpOptions,
        wiki_url: str | None,
        prepared: Any,
    ) -> Plan:
        """How the component runs (`prepared` is what this backend's `prepare` returned)."""

    def start(
        self,
        service: Service,
        name: str,
        plan: Any,
        models_dir: Path,
        revision: str,
        peers: dict[str, ComponentRecord],
    ) -> ComponentRecord: ...

    def alive(self, comp: ComponentRecord) -> bool: ...

    def why_dead(self, comp: ComponentRecord) -> str: ...

    def log_tail(self, comp: ComponentRecord, lines: int) -> str:
        """The last lines this run of the component wrote."""

    def stop(self, comps: list[ComponentRecord]) -> None:
        """Stop components, in the order given."""

    def start_replay(self, prepared: Any, mode: MediaWiki) -> ComponentRecord:
        """Start the MediaWiki replay server in `mode` (recorded with `spec` set)."""

    def replay_url(self, comp: ComponentRecord) -> str:
        """WIKI_URL for this target's components when MediaWiki is the replay server."""

    def cleanup_idle(self, st: State) -> None:
        """Nothing of this target is left: remove what it shares (the docker network)."""

    def orphans(self, st: State) -> list[str]:
        """This sandbox's units that the state does not list, described for the user."""

    def stop_orphans(self, st: State) -> None: ...

    def logs(self, comps: list[ComponentRecord], follow: bool, lines: int | None) -> None: ...

    def logs_by_name(self, isvc: str, component: str | None) -> list[ComponentRecord]:
        """Components to show logs of when the state has no record (after `down`)."""


def fingerprint(service: Service, plans: dict[str, Plan], opts: UpOptions) -> str:
    described = {n: {"kind": type(p).__name__, **asdict(p)} for n, p in plans.items()}
    facts = [described, service.model.model_dump(), opts.model_source]
    facts.append(service.autoscaling.model_dump())
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def replay_mode_args(mode: MediaWiki, directory: str | None) -> list[str]:
    """The replay server's arguments for `mode`, with the folder as the server sees it."""
    if mode.kind == "replay":
        return ["--replay", str(directory), "--emulate"]  # recordings first, then the fixtures
    if mode.kind == "record":
        return ["--record", str(directory)]
    return []


def models_root(isvc: str) -> Path:
    """Where an isvc's models are staged, per revision: private, like the whole run dir."""
    return private_dir(run_dir() / "models") / isvc


# EventGate's route on the replay server (sandbox/mediawiki, POST /v1/events), as production's
# EVENTGATE_URL names it (http://eventgate-main.discovery.wmnet:4480/v1/events).
EVENTGATE_PATH = "/v1/events"


def component_env(component: Component, wiki_url: str | None, opts: UpOptions) -> dict[str, str]:
    """The pod's env (service.yaml), WIKI_URL pointed at the chosen MediaWiki, EVENTGATE_URL at
    the replay server's EventGate when it runs, then --env."""
    env = dict(component.env)
    if wiki_url is not None and "WIKI_URL" in env:
        env["WIKI_URL"] = wiki_url
    if wiki_url is not None and opts.mediawiki.replay_server and "EVENTGATE_URL" in env:
        env["EVENTGATE_URL"] = wiki_url.rstrip("/") + EVENTGATE_PATH
    env.update(opts.env)
    return env


def _ready(comp: ComponentRecord, isvc: str) -> bool:
    try:
        with urllib.request.urlopen(f"{comp.url}/v1/models/{isvc}", timeout=1) as r:
            return bool(json.loads(r.read()).get("ready"))
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class _Undo:
    """What this invocation started: stopped again if it fails."""

    gateway: bool = False
    mediawiki: bool = False
    isvcs: list[str] = field(default_factory=list)
    held: bool = False  # a crashed isvc's Host is held (503) while it is replaced


def replay_spec(image: str | None, mode: MediaWiki) -> str:
    """What a replay server's record keeps of how it was started (its image and mode): a start
    with another spec replaces it."""
    return json.dumps([image, mode.kind, mode.directory])


def replay_mode(comp: ComponentRecord) -> MediaWiki:
    """The `--mediawiki` mode a running replay server was started in, from its record's spec
    (the fixture wikis when the spec is unreadable)."""
    try:
        _image, kind, directory = json.loads(comp.spec)
        return MediaWiki(kind=kind, directory=directory)
    except (ValueError, TypeError):
        return MediaWiki(kind="emulate")


class HostTarget:
    """A target whose components run on this host behind the sandbox's gateway."""

    # Samples are sent once: a host target's isvc is ready when `up` returns.
    settle_s = 0.0

    def __init__(self, backend: Backend):
        self.backend = backend
        self.name = backend.name

    def _key(self, isvc: str) -> str:
        return f"{self.name}/{isvc}"

    # -- up -------------------------------------------------------------------------------------
    def up(self, services: list[Service], opts: UpOptions) -> None:
        self.backend.check(opts)
        st = state.read()
        for service in services:  # before any build: a conflict is found in a second
            self._check_other_targets(st, service)
        with signals_interrupt():
            prepared = self.backend.prepare(services, opts)
            with state.locked() as st:
                undo = _Undo()
                try:
                    with critical():
                        undo.gateway = ingress.ensure_gateway(
                            st, opts.gateway_port, opts.max_body_bytes
                        )
                    wiki_url = self._mediawiki_url(st, opts, prepared, undo, services)
                    # Each isvc is served as soon as it is ready, while the others still build.
                    with self.backend.ready(services, opts, prepared) as ready:
                        for service in ready:
                            self._up_one(st, service, opts, prepared, wiki_url, undo)
                except BaseException as e:
                    self._rollback(st, undo)
                    if isinstance(e, KeyboardInterrupt):
                        print(
                            f"interrupted ({e or 'SIGINT'}): stopped what this command started",
                            file=sys.stderr,
                        )
                        e.reported = True  # type: ignore[attr-defined]  # the CLI says it once
                    raise

    def _mediawiki_url(
        self,
        st: State,
        opts: UpOptions,
        prepared: Prepared,
        undo: _Undo,
        services: list[Service],
    ) -> str | None:
        mode = opts.mediawiki
        if not mode.replay_server:
            return mode.url
        if not mode.replay_server_for(services):
            names = ", ".join(s.name for s in services)
            who = f"{names} does not" if len(services) == 1 else f"none of {names}"
            print(
                f"• no MediaWiki replay server: {who} call MediaWiki (no WIKI_URL or "
                "EVENTGATE_URL in a component's env in service.yaml)",
                file=sys.stderr,
            )
            return None
        current = st.mediawiki.get(self.name)
        spec = replay_spec(prepared.replay_image, mode)
        if current and current.spec == spec and self.backend.alive(current):
            return self.backend.replay_url(current)
        if current:
            self.backend.stop([current])
            del st.mediawiki[self.name]
            st.save()
        where = f" into {mode.directory}" if mode.kind == "record" else ""
        with step(
            f"starting the MediaWiki replay server ({mode.kind}{where}, {self.backend.unit})"
        ):
            with critical():
                comp = self.backend.start_replay(prepared, mode)
                comp.spec = spec
                st.mediawiki[self.name] = comp
                undo.mediawiki = True
                st.save()
            deadline = time.monotonic() + 30
            while not processes.http_ok(f"{comp.url}/__replay__/health"):
                if not self.backend.alive(comp) or time.monotonic() > deadline:
                    log = self.backend.log_tail(comp, LOG_TAIL_LINES)
                    raise RunError(f"the MediaWiki replay server did not start:\n{log}")
                time.sleep(0.05)
        return self.backend.replay_url(comp)

    def _up_one(
        self,
        st: State,
        service: Service,
        opts: UpOptions,
        prepared: Prepared,
        wiki_url: str | None,
        undo: _Undo,
    ) -> None:
        b = self.backend
        key = self._key(service.name)
        self._check_other_targets(st, service)  # again, under the lock
        plans = {
            name: b.plan(service, name, comp, opts, wiki_url, prepared)
            for name, comp in service.component_items()
        }
        fp = fingerprint(service, plans, opts)
        current = st.isvcs.get(key)
        healthy = bool(current) and all(b.alive(c) for c in current.components.values())
        if current and healthy and current.fingerprint == fp:
            ingress.publish(st)
            where = "" if self.name == "local" else f" ({self.name})"
            print(f"✓ {service.name} is up to date{where}", file=sys.stderr)
            return
        if current and not healthy:
            # Not serving anyway: stop it first, so its ports and names are free again. Its Host
            # stays routed (503 with the reason, never 404) until the new version serves it.
            why = f"its {b.unit} stopped and `up` is starting a new one; retry shortly"
            with step(f"stopping {service.name} (it has a stopped {b.unit})"):
                self._remove(st, key, held={current.host: (service.name, why)})
                undo.held = True
            current = None
        leftover = st.starting.pop(key, None)  # a start that a SIGKILLed `up` left behind
        if leftover:
            self._retire(leftover)

        models_dir = models_root(service.name) / fp
        with step(f"staging the {service.name} model into {models_dir}"):
            # Private, unless a container's user (not this one) must read the docker mount.
            models.stage(service, models_dir, opts.model_source, private=self.name == "local")

        rec = IsvcRecord(self.name, service.name, service.host, fp, str(models_dir))
        rec.service_file = str(service.dir / "service.yaml")
        st.starting[key] = rec
        undo.isvcs.append(key)
        st.save()
        verb = "starting the new" if current else "starting"
        with step(f"{verb} {service.name} ({', '.join(plans)}) and waiting until it is ready"):
            for name in plans:
                with critical():
                    rec.components[name] = b.start(
                        service, name, plans[name], models_dir, fp[:8], rec.components
                    )
                    st.save()
            self._wait_ready(service, rec, time.monotonic() + opts.timeout_s, opts.timeout_s)

        # Switch the route, then retire the old version: no request meets a gap.
        old = st.isvcs.get(key)
        st.isvcs[key] = st.starting.pop(key)
        if not ingress.publish(st):
            # The gateway did not take the new route: the old version keeps serving, the new
            # one is rolled back like any failed start.
            st.starting[key] = st.isvcs.pop(key)
            if old:
                st.isvcs[key] = old
            ingress.publish(st)
            st.save()
            still = " (the previous version still serves)" if old else ""
            raise RunError(
                f"the gateway did not switch {service.host} to the new {service.name} within "
                f"{ingress.PUBLISH_TIMEOUT_S:.0f}s{still}; see `{prog()} logs gateway`"
            )
        undo.isvcs.remove(key)
        st.save()
        if old:
            with step(f"stopping the previous {service.name} (in-flight requests drain first)"):
                self._retire(old)
        # Its URL now: the other isvcs of this `up` may still be building.
        print(
            f"✓ {service.name} is up{'' if self.name == 'local' else f' in {self.name}'}: "
            f"{ingress.gateway_url(st)}{service.predict_path} with Host {service.host}",
            file=sys.stderr,
            flush=True,
        )

    def _check_other_targets(self, st: State, service: Service) -> None:
        for other in st.isvcs.values():
            if other.isvc == service.name and other.target != self.name:
                raise RunError(
                    f"{service.name} already runs on the {other.target} target, and one Host "
                    f"routes to one isvc: `{prog()} down {service.name} --target "
                    f"{other.target}` first"
                )

    def _wait_ready(self, service: Service, rec: IsvcRecord, deadline: float, limit: float) -> None:
        pending = dict(rec.components)
        while pending:
            for name, comp in list(pending.items()):
                if _ready(comp, service.served_name):
                    del pending[name]
                elif not self.backend.alive(comp):
                    self._fail(service, name, comp, self.backend.why_dead(comp))
                elif time.monotonic() > deadline:
                    self._fail(service, name, comp, f"not ready within {limit:.0f}s (--timeout)")
            time.sleep(0.05)

    def _fail(self, service: Service, name: str, comp: ComponentRecord, why: str) -> None:
        log = self.backend.log_tail(comp, LOG_TAIL_LINES).rstrip() or "(no output)"
        raise RunError(
            f"{service.name}'s {name} did not become ready: {why}. Nothing this command started "
            f"is left running. Its output:\n{log}"
        )

    def _remove(self, st: State, key: str, held: dict[str, tuple[str, str]] | None = None) -> None:
        rec = st.isvcs.pop(key, None)
        ingress.publish(st, held)
        st.save()
        if rec:
            self._retire(rec)

    def _retire(self, rec: IsvcRecord) -> None:
        """Stop an isvc's components, the entry component first (no request reaches a stopped
        predictor), and remove the models staged for them."""
        self.backend.stop(list(reversed(rec.components.values())))
        shutil.rmtree(rec.models_dir, ignore_errors=True)

    def _rollback(self, st: State, undo: _Undo) -> None:
        """Stop exactly what this invocation started. Whatever was serving before keeps serving."""
        with contextlib.ExitStack() as quiet:
            # A second Ctrl-C while rolling back must not leave half the work undone.
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                old = signal.signal(s, signal.SIG_IGN)
                quiet.callback(signal.signal, s, old)
            for key in undo.isvcs:
                rec = st.starting.pop(key, None)
                if rec:
                    self._retire(rec)
                st.save()
            if undo.mediawiki and not self._has_isvcs(st):
                comp = st.mediawiki.pop(self.name, None)
                if comp:
                    self.backend.stop([comp])
                st.save()
            if not self._has_isvcs(st) and self.name not in st.mediawiki:
                self.backend.cleanup_idle(st)
            if undo.held:  # the replacement failed: the held Host goes (404 again)
                ingress.publish(st)
            if undo.gateway:
                ingress.stop_gateway_if_idle(st)

    def _has_isvcs(self, st: State) -> bool:
        return any(r.target == self.name for r in [*st.isvcs.values(), *st.starting.values()])

    # -- down -----------------------------------------------------------------------------------
    def down(self, names: list[str] | None = None) -> bool:
        """Stop the named isvcs (all, and this sandbox's orphans, when none is named); then the
        replay server and the gateway when nothing uses them. True if anything was stopped."""
        stopped = False
        with signals_interrupt(), state.locked() as st:
            keys = [k for k in [*st.isvcs, *st.starting] if k.startswith(f"{self.name}/")]
            wanted = [self._key(n) for n in names] if names is not None else sorted(set(keys))
            for key in wanted:
                isvc = key.split("/", 1)[1]
                if key not in keys:
                    print(f"• {isvc} is not running on the {self.name} target", file=sys.stderr)
                    continue
                with step(f"stopping {isvc} ({self.name})"):
                    self._remove(st, key)
                    leftover = st.starting.pop(key, None)
                    if leftover:
                        self._retire(leftover)
                    st.save()
                stopped = True
            if names is None:
                orphans = self.backend.orphans(st)
                for what in orphans:
                    print(f"• stopping {what} (not in the state file)", file=sys.stderr)
                if orphans:
                    self.backend.stop_orphans(st)
                    stopped = True
            if not self._has_isvcs(st):
                comp = st.mediawiki.pop(self.name, None)
                if comp:
                    self.backend.stop([comp])
                    print(f"• stopped the MediaWiki replay server ({self.name})", file=sys.stderr)
                    stopped = True
                st.save()
                self.backend.cleanup_idle(st)
            if ingress.stop_gateway_if_idle(st):
                print("• stopped the gateway", file=sys.stderr)
                stopped = True
        return stopped

    # -- status, logs, smoke --------------------------------------------------------------------
    def status(self) -> list[ComponentStatus]:
        st = state.read()
        rows = []
        for phase, records in (("", st.isvcs), ("starting", st.starting)):
            for rec in records.values():
                if rec.target != self.name:
                    continue
                for name, comp in rec.components.items():
                    rows.append(self._row(rec.isvc, name, comp, phase))
        mw = st.mediawiki.get(self.name)
        if mw:
            rows.append(self._row("-", "mediawiki", mw, ""))
        rows += [
            ComponentStatus(self.name, "-", "orphan", "orphan", "-", None, what)
            for what in self.backend.orphans(st)
        ]
        return rows

    def _row(self, isvc: str, name: str, comp: ComponentRecord, phase: str) -> ComponentStatus:
        ok = self.backend.alive(comp)
        return ComponentStatus(
            target=self.name,
            isvc=isvc,
            component=name,
            state=(phase or "running") if ok else "exited",
            address=f"127.0.0.1:{comp.port}",
            pid=comp.process.pid if comp.process else None,
            detail=(comp.container or "") if ok else f"see {prog()} logs {isvc}",
        )

    def logs(self, isvc: str, component: str | None, follow: bool, lines: int | None = None) -> int:
        st = state.read()
        if isvc == "mediawiki":
            comps = [st.mediawiki[self.name]] if self.name in st.mediawiki else []
        else:
            rec = st.isvcs.get(self._key(isvc)) or st.starting.get(self._key(isvc))
            comps = (
                [c for n, c in rec.components.items() if component in (None, n)]
                if rec
                else self.backend.logs_by_name(isvc, component)
            )
        if not comps:
            print(
                f"no logs of {isvc} on the {self.name} target (has it been started?)",
                file=sys.stderr,
            )
            return 1
        self.backend.logs(comps, follow, lines)
        return 0

    def ingress_url(self) -> str:
        """The gateway, which routes every host target's isvcs by Host."""
        base = ingress.gateway_url(state.read())
        if base is None:
            raise RunError(f"the gateway is not running; start an isvc: {prog()} up <isvc>")
        return base

    def diagnostics(self, service: Service) -> str:
        """The last lines of each of the isvc's components, for a failed sample."""
        rec = state.read().isvcs.get(self._key(service.name))
        if rec is None:
            return f"{service.name} does not run on the {self.name} target"
        parts = []
        for name, comp in rec.components.items():
            tail = self.backend.log_tail(comp, LOG_TAIL_LINES).rstrip() or "(no output)"
            parts.append(f"=== {service.name}/{name}: last lines of its log\n{tail}")
        return "\n".join(parts)
