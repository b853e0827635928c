"""`ingress.publish` waits until the real gateway serves the new routes, and says when it does not
(the lifecycle then keeps the old version serving and rolls the new one back)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.runtime import ingress, processes
from sandbox.runtime.state import ComponentRecord, IsvcRecord, State

pytestmark = pytest.mark.component

HOST = "flaky.test.wikimedia.org"


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[State]:
    """A real gateway process in a run directory of this test's own."""
    monkeypatch.setenv("SANDBOX_RUN_DIR", str(tmp_path / "run"))
    st = State()
    assert ingress.ensure_gateway(st, processes.free_port())
    yield st
    assert st.gateway is not None
    os.killpg(st.gateway.process.pid, signal.SIGCONT)
    processes.stop(st.gateway.process)


def _serve(st: State, port: int) -> None:
    rec = IsvcRecord("local", "flaky", HOST, "f" * 16, "/nonexistent")
    rec.components["predictor"] = ComponentRecord("predictor", port)
    st.isvcs["local/flaky"] = rec


def test_publish_returns_when_the_gateway_serves_the_route(gateway: State) -> None:
    _serve(gateway, 1234)
    assert ingress.publish(gateway, timeout_s=10)
    assert gateway.gateway is not None
    assert ingress._served_routes(gateway.gateway.port) == {HOST: "http://127.0.0.1:1234"}


def test_publish_says_so_when_the_gateway_does_not_take_the_route(gateway: State) -> None:
    """A gateway that cannot reload (stopped here) keeps its old routes: publish waits its
    timeout for real, then returns False, instead of pretending the switch happened."""
    _serve(gateway, 1234)
    assert ingress.publish(gateway, timeout_s=10)
    assert gateway.gateway is not None
    os.killpg(gateway.gateway.process.pid, signal.SIGSTOP)
    _serve(gateway, 5678)
    started = time.monotonic()
    assert not ingress.publish(gateway, timeout_s=1.0)
    assert time.monotonic() - started >= 1.0
    os.killpg(gateway.gateway.process.pid, signal.SIGCONT)
    # Woken up, it serves what the routes file says.
    assert ingress.publish(gateway, timeout_s=10)
    assert ingress._served_routes(gateway.gateway.port) == {HOST: "http://127.0.0.1:5678"}
