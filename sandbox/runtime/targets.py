"""What a target is (`Target`, the rows of `status`) and choosing one by name; `auto` is
minikube when its kube context answers, else local."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Protocol

from sandbox.catalog import Service
from sandbox.errors import RunError
from sandbox.runtime import processes, state
from sandbox.runtime.options import UpOptions


@dataclass
class ComponentStatus:
    target: str
    isvc: str
    component: str  # predictor | transformer | gateway | mediawiki | orphan
    state: str  # running | starting | exited | missing | orphan | ready
    address: str  # host:port or container name
    pid: int | None = None
    detail: str = ""

    @classmethod
    def of_server(
        cls, component: str, rec: state.ServerRecord, running: str = ""
    ) -> ComponentStatus:
        """The row of one of the sandbox's own servers (the gateway, the console) on 127.0.0.1:
        running (with `running` as its detail) or exited (pointing at its log)."""
        ok = processes.alive(rec.process)
        return cls(
            target="-",
            isvc="-",
            component=component,
            state="running" if ok else "exited",
            address=f"127.0.0.1:{rec.port}",
            pid=rec.process.pid,
            detail=running if ok else f"see {rec.process.log}",
        )


class Target(Protocol):
    """What every target offers the CLI. A host target (local, docker) is a
    `lifecycle.HostTarget` over its backend; minikube is `minikube.MinikubeTarget`."""

    name: str
    # How long a sample is retried while the ingress answers 502/503 or nothing (smoke.send).
    settle_s: float

    def up(self, services: list[Service], opts: UpOptions) -> None: ...

    def down(self, names: list[str] | None = None) -> bool:
        """Stop isvcs (all when none is named); False when there was nothing to stop."""
        ...

    def status(self) -> list[ComponentStatus]: ...

    def logs(
        self, isvc: str, component: str | None, follow: bool, lines: int | None = None
    ) -> int: ...

    def ingress_url(self) -> str:
        """Where this target's isvcs are reached, by their Host header: the gateway, or the
        cluster's Istio ingress. A RunError when nothing serves there."""
        ...

    def diagnostics(self, service: Service) -> str:
        """What the user needs when a sample fails: logs, conditions, events."""
        ...


TARGETS = ("local", "docker", "minikube")
HOST_TARGETS = ("local", "docker")


def get(name: str) -> Target:
    if name == "local":
        from sandbox.runtime import local

        return local.target()
    if name == "docker":
        from sandbox.runtime import docker

        return docker.target()
    if name == "minikube":
        from sandbox.runtime.minikube import MinikubeTarget

        return MinikubeTarget()
    raise RunError(f"unknown target {name!r}; choose one of: auto, {', '.join(TARGETS)}")


def resolve(name: str) -> str:
    """`auto` -> a concrete target, saying which and why."""
    if name != "auto":
        return name
    from sandbox.runtime.minikube import context_answers

    answers = context_answers()
    chosen = "minikube" if answers else "local"
    why = "the ml-sandbox kube context answers" if answers else "no minikube sandbox answers"
    print(f"• target: {chosen} ({why}; choose with --target)", file=sys.stderr)
    return chosen


def active() -> list[str]:
    """The host targets with something on record; local always (its orphans, the gateway)."""
    recorded = state.read().targets()
    return [t for t in HOST_TARGETS if t == "local" or t in recorded]


def running(isvc: str) -> str | None:
    """The host target an isvc (or `mediawiki`) runs on, per the state."""
    st = state.read()
    if isvc == "mediawiki":
        return next(iter(st.mediawiki), None)
    for rec in [*st.isvcs.values(), *st.starting.values()]:
        if rec.isvc == isvc:
            return rec.target
    return None
