"""The typed state: what is stored, what is derived, and a bad file reported, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.runtime import state
from sandbox.runtime.processes import ProcessRecord
from sandbox.runtime.state import ComponentRecord, IsvcRecord, ServerRecord, State

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SANDBOX_RUN_DIR", str(tmp_path / "run"))
    return tmp_path / "run"


def _proc(pid: int) -> ProcessRecord:
    return ProcessRecord(pid=pid, start_ticks=5, log="/x.log", cmd=["x"])


def _outlink() -> IsvcRecord:
    rec = IsvcRecord("local", "outlink-topic-model", "o.ns.wikimedia.org", "fp", "/m")
    rec.components["predictor"] = ComponentRecord("predictor", 5001, process=_proc(1))
    rec.components["transformer"] = ComponentRecord("transformer", 5002, process=_proc(2))
    return rec


def test_round_trip_and_derived_facts(run_dir: Path) -> None:
    with state.locked() as st:
        st.gateway = ServerRecord(8080, _proc(3))
        st.isvcs["local/outlink-topic-model"] = _outlink()
        st.mediawiki["local"] = ComponentRecord("mediawiki", 5003, process=_proc(4))
    back = state.read()
    assert back == st
    rec = back.isvcs["local/outlink-topic-model"]
    assert rec.url == "http://127.0.0.1:5002"  # the transformer is the entry component
    assert back.routes() == {"o.ns.wikimedia.org": rec}
    assert sorted(p.pid for p in back.processes()) == [1, 2, 3, 4]
    stored = json.loads(state.state_path().read_text())
    assert "url" not in json.dumps(stored) and "routes" not in stored  # derived, not stored
    assert state.state_path().stat().st_mode & 0o777 == 0o600
    assert run_dir.stat().st_mode & 0o777 == 0o700


def test_starting_isvcs_are_not_routed() -> None:
    st = State(starting={"local/outlink-topic-model": _outlink()})
    assert st.routes() == {} and st.targets() == ["local"]


@pytest.mark.parametrize(
    "content",
    ["{broken", "[]", '{"isvcs": null}', '{"version": 2, "isvcs": {"a": 1}}', '{"version": 1}'],
)
def test_a_bad_state_file_is_moved_aside_with_a_warning(
    run_dir: Path, content: str, capsys: pytest.CaptureFixture
) -> None:
    run_dir.mkdir(parents=True)
    state.state_path().write_text(content)
    assert state.read() == State()
    err = capsys.readouterr().err
    assert "is not a state file this version can read" in err and "orphans" in err
    assert len(list(run_dir.glob("state.corrupt-*.json"))) == 1
