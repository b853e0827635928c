"""`--mediawiki replay` starts the replay server only for isvcs that call MediaWiki (a WIKI_URL
in a component's env in service.yaml): langid never does (issue 15, defect 9)."""

from __future__ import annotations

import pytest

from sandbox.runtime import state
from sandbox.runtime.processes import free_port
from tests.e2e.conftest import cli

pytestmark = pytest.mark.e2e


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_RUN_DIR", str(tmp_path / "run"))
    yield tmp_path / "run"
    cli("down", check=False)


def test_replay_is_started_only_for_isvcs_that_call_mediawiki(run_dir) -> None:
    up = cli("up", "langid", "--mediawiki", "replay", "--port", str(free_port()))
    assert "no MediaWiki replay server: langid does not call MediaWiki" in up.stderr
    assert "starting the MediaWiki replay server" not in up.stderr
    st = state.read()
    assert st.mediawiki == {} and "local/langid" in st.isvcs
    assert "eng_Latn" in cli("predict", "langid", "english").stdout
