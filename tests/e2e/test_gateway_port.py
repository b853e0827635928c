"""The gateway's port: a failed move keeps the working gateway, the port is sticky, and a missing
gateway fails `status` (issue 15, defect 1). A real gateway process, in a run dir of its own."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.cli import main
from sandbox.errors import RunError
from sandbox.runtime import ingress, processes, state
from sandbox.runtime.gateway import HEALTH_PATH
from sandbox.runtime.processes import free_port
from sandbox.runtime.state import IsvcRecord

pytestmark = pytest.mark.e2e


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("SANDBOX_RUN_DIR", str(tmp_path / "run"))
    yield tmp_path / "run"
    st = state.read()
    if st.gateway:
        processes.stop(st.gateway.process)


def test_a_failed_move_keeps_the_working_gateway(run_dir: Path) -> None:
    port = free_port()
    with state.locked() as st:
        assert ingress.ensure_gateway(st, port)
    gw = state.read().gateway
    assert gw and gw.port == port
    with socket.socket() as taken:  # another program holds the port we would move to
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        other = taken.getsockname()[1]
        with state.locked() as st, pytest.raises(RunError, match=f"port {other} is already in use"):
            ingress.ensure_gateway(st, other)
    after = state.read().gateway
    assert after and after.port == port and processes.alive(after.process)
    assert processes.http_ok(f"http://127.0.0.1:{port}{HEALTH_PATH}")


def test_the_port_is_sticky(run_dir: Path) -> None:
    from sandbox.commands.runtime import DEFAULT_PORT, gateway_port

    assert gateway_port(None) == DEFAULT_PORT  # nothing runs: the default
    port = free_port()
    with state.locked() as st:
        ingress.ensure_gateway(st, port)
    assert gateway_port(None) == port  # an `up` without --port keeps the port in use
    assert gateway_port(port + 1) == port + 1  # --port moves it


def test_dev_keeps_the_running_gateways_port_as_up_does(run_dir: Path) -> None:
    import argparse

    from sandbox.commands import dev

    parser = argparse.ArgumentParser()
    dev.register(parser.add_subparsers())
    port = free_port()
    with state.locked() as st:
        ingress.ensure_gateway(st, port)
    assert dev.up_options(parser.parse_args(["dev", "langid"])).gateway_port == port
    named = parser.parse_args(["dev", "langid", "--port", str(port + 1)])
    assert dev.up_options(named).gateway_port == port + 1


def test_a_missing_gateway_fails_status(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    with state.locked() as st:
        st.isvcs["local/langid"] = IsvcRecord("local", "langid", "l.llm.wikimedia.org", "fp", "/m")
    assert main(["status", "--target", "local"]) == 1
    out = capsys.readouterr().out
    assert "gateway" in out and "missing" in out
