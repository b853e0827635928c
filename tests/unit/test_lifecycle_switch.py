"""The roll-out's route switch: when the gateway does not take the new route, `up` fails with the
old version still serving and the new one stopped (the lifecycle with a backend of its own that
starts nothing; the gateway's side is tests/component/test_publish.py)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sandbox import catalog
from sandbox.catalog import Component, Service
from sandbox.errors import RunError
from sandbox.runtime import ingress, lifecycle, state
from sandbox.runtime.lifecycle import HostTarget, Plan, Prepared
from sandbox.runtime.options import MediaWiki, UpOptions
from sandbox.runtime.state import ComponentRecord, IsvcRecord

pytestmark = pytest.mark.unit


@dataclass
class RecordingBackend:
    """A backend whose components are records only: what was started and stopped."""

    name: str = "fake"
    unit: str = "record"
    started: list[int] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)

    def check(self, opts: UpOptions) -> None:
        return None

    def prepare(self, services: list[Service], opts: UpOptions) -> Prepared:
        return Prepared()

    def ready(self, services: list[Service], opts: UpOptions, prepared: Prepared):
        return contextlib.nullcontext(iter(services))

    def plan(self, service, name, component: Component, opts, wiki_url, prepared) -> Plan:
        return Plan(env=dict(component.env), args=("--new",))

    def start(self, service, name, plan, models_dir, revision, peers) -> ComponentRecord:
        port = 20000 + len(self.started)
        self.started.append(port)
        return ComponentRecord(name, port)

    def alive(self, comp: ComponentRecord) -> bool:
        return comp.port not in self.stopped

    def why_dead(self, comp: ComponentRecord) -> str:
        return "stopped"

    def log_tail(self, comp: ComponentRecord, lines: int) -> str:
        return ""

    def stop(self, comps: list[ComponentRecord]) -> None:
        self.stopped += [c.port for c in comps]

    def cleanup_idle(self, st) -> None:
        return None


@pytest.fixture
def langid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Service:
    monkeypatch.setenv("SANDBOX_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setattr(
        lifecycle.models, "stage", lambda service, models_dir, source, private=True: None
    )
    monkeypatch.setattr(lifecycle, "_ready", lambda comp, isvc: True)
    monkeypatch.setattr(ingress, "ensure_gateway", lambda st, port, limit, **kw: False)
    return catalog.get("langid")


def test_a_route_the_gateway_does_not_take_fails_the_roll_out_and_keeps_the_old(
    langid: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = IsvcRecord("fake", "langid", langid.host, "old-fingerprint", "/nonexistent")
    old.components["predictor"] = ComponentRecord("predictor", 10000)
    with state.locked() as st:
        st.isvcs["fake/langid"] = old
    published: list[dict[str, int]] = []

    def publish(st: state.State, held=None, timeout_s: float = 0) -> bool:
        published.append({h: r.components["predictor"].port for h, r in st.routes().items()})
        return len(published) > 1  # the switch is not taken; putting the old route back is

    monkeypatch.setattr(ingress, "publish", publish)
    backend = RecordingBackend()
    with pytest.raises(RunError, match=r"did not switch .*\(the previous version still serves\)"):
        HostTarget(backend).up([langid], UpOptions(mediawiki=MediaWiki()))
    new = backend.started[0]
    assert published == [{langid.host: new}, {langid.host: 10000}]
    after = state.read()
    assert after.isvcs["fake/langid"].fingerprint == "old-fingerprint"
    assert after.starting == {}
    assert backend.stopped == [new]  # the new version, never the old one


def test_a_route_the_gateway_takes_retires_the_old(
    langid: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = IsvcRecord("fake", "langid", langid.host, "old-fingerprint", "/nonexistent")
    old.components["predictor"] = ComponentRecord("predictor", 10000)
    with state.locked() as st:
        st.isvcs["fake/langid"] = old
    monkeypatch.setattr(ingress, "publish", lambda st, held=None, timeout_s=0: True)
    backend = RecordingBackend()
    HostTarget(backend).up([langid], UpOptions())
    assert state.read().isvcs["fake/langid"].components["predictor"].port == backend.started[0]
    assert backend.stopped == [10000]
