"""The console's pieces that need no server: what an action runs, how the access log is read,
how the console is kept in the state. The page itself is tested in a browser
(tests/e2e/test_console.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.console import actions, view
from sandbox.errors import CatalogError, RunError
from sandbox.runtime import gateway, state
from sandbox.runtime.processes import ProcessRecord
from sandbox.runtime.state import ComponentRecord, IsvcRecord, ServerRecord

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SANDBOX_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setattr(actions, "_last_options", {})  # what a console saw in an earlier test
    return tmp_path / "run"


def _proc(pid: int) -> ProcessRecord:
    return ProcessRecord(pid=pid, start_ticks=5, log="/x.log", cmd=["x"])


def _running_langid(mediawiki_spec: str | None) -> None:
    with state.locked() as st:
        st.gateway = ServerRecord(18080, _proc(3), max_body_bytes=2048)
        rec = IsvcRecord("local", "langid", "langid.llm.wikimedia.org", "fp", "/m")
        rec.components["predictor"] = ComponentRecord("predictor", 5001, process=_proc(1))
        st.isvcs["local/langid"] = rec
        if mediawiki_spec is not None:
            st.mediawiki["local"] = ComponentRecord(
                "mediawiki", 5003, process=_proc(4), spec=mediawiki_spec
            )


def test_actions_are_cli_command_lines_with_the_options_on_record() -> None:
    assert actions.commands("start", "langid") == [["up", "langid", "--target", "local"]]
    _running_langid(json.dumps([None, "replay", "/rec"]))
    up = ["up", "langid", "--target", "local", "--port", "18080", "--max-body-bytes", "2048"]
    up += ["--mediawiki", "replay:/rec"]
    down = ["down", "langid", "--target", "local"]
    assert actions.commands("stop", "langid") == [down]
    assert actions.commands("restart", "langid") == [down, up]
    assert actions.commands("rebuild-model", "langid") == [
        ["models", "build", "langid", "--force"],
        down,
        up,
    ]


def test_the_fixture_wikis_mode_restarts_as_replay() -> None:
    _running_langid(json.dumps([None, "emulate", None]))
    assert actions.commands("restart", "langid")[1][-2:] == ["--mediawiki", "replay"]
    assert view.mediawiki_mode(state.read())[0]["mode"] == "replay (fixture wikis)"


def test_unknown_isvc_or_action_is_a_clear_error() -> None:
    with pytest.raises(CatalogError):
        actions.commands("stop", "no-such-isvc")
    with pytest.raises(RunError, match="unknown action"):
        actions.commands("explode", "langid")


def test_the_console_runs_its_commands_without_the_sandbox_mark(monkeypatch) -> None:
    monkeypatch.setenv("ML_SANDBOX_RUN_DIR", "/somewhere")
    assert "ML_SANDBOX_RUN_DIR" not in actions.child_env()


def test_the_gateway_access_log_is_read_as_written(capsys) -> None:
    gateway._access_log('langid.llm.wikimedia.org "POST /v1/models/langid:predict" 200 3.4ms')
    gateway._access_log('x.example "GET /v1/models/<script>" 404 0.9ms')
    gateway._access_log('- "/bad" 400 refused')
    lines = capsys.readouterr().out.splitlines()
    first = view.ACCESS_LINE.match(lines[0])
    assert first is not None
    assert (first["host"], first["method"], first["status"], first["ms"]) == (
        "langid.llm.wikimedia.org",
        "POST",
        "200",
        "3.4",
    )
    second = view.ACCESS_LINE.match(lines[1])
    assert second is not None and second["path"] == "/v1/models/<script>"
    assert view.ACCESS_LINE.match(lines[2]) is None  # refused before routing: no latency


def test_recent_requests_are_the_isvcs_own(run_dir: Path) -> None:
    log = state.logs_dir() / "gateway.log"
    log.parent.mkdir(parents=True)
    log.write_text(
        "2026-12-03 08:00:00,001 gateway langid.llm.wikimedia.org "
        '"POST /v1/models/langid:predict" 200 3.0ms\n'
        "2026-12-03 08:00:01,001 gateway other.example "
        '"POST /service/lw/inference/v1/models/langid:predict" 400 1.5ms\n'
        "2026-12-03 08:00:02,001 gateway outlink-topic-model.articletopic-outlink.wikimedia.org "
        '"POST /v1/models/outlink-topic-model:predict" 200 9.0ms\n'
        "2026-12-03 08:00:03,001 gateway routes: langid.llm.wikimedia.org\n"
    )
    got = view.recent_requests("langid")["requests"]
    assert [(r["status"], r["ms"]) for r in got] == [(200, 3.0), (400, 1.5)]


def test_the_console_is_kept_in_the_state_and_older_states_still_load(run_dir: Path) -> None:
    with state.locked() as st:
        st.console = ServerRecord(8088, _proc(9))
    back = state.read()
    assert back.console == ServerRecord(8088, _proc(9))
    assert _proc(9) in back.processes()  # so that it is never taken for an orphan
    doc = json.loads(state.state_path().read_text())
    del doc["console"]
    state.state_path().write_text(json.dumps(doc))
    assert state.read().console is None


def test_a_start_after_the_last_stop_brings_the_gateway_back_where_it_was() -> None:
    _running_langid(json.dumps([None, "emulate", None]))
    before = actions.commands("restart", "langid")[1]
    with state.locked() as st:  # `down langid`: the last isvc, so the gateway and replay go too
        st.isvcs.clear()
        st.gateway = None
        st.mediawiki.clear()
    assert actions.commands("start", "langid") == [before]
