"""`up` refuses what it cannot do before the slow work: an isvc that runs on another target is
found before any image or venv is built (issue 15, defect 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox import catalog
from sandbox.errors import RunError
from sandbox.runtime import local, state
from sandbox.runtime.options import UpOptions
from sandbox.runtime.processes import free_port
from sandbox.runtime.state import IsvcRecord

pytestmark = pytest.mark.unit


def test_a_conflict_with_another_target_is_found_before_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_RUN_DIR", str(tmp_path / "run"))
    langid = catalog.get("langid")
    with state.locked() as st:
        st.isvcs["docker/langid"] = IsvcRecord("docker", "langid", langid.host, "fp", "/m")
    built: list[str] = []

    def prepare(self, services, opts):  # what would build the venvs (minutes, cold)
        built.append("prepare")
        raise AssertionError("built before the conflict was found")

    monkeypatch.setattr(local.LocalBackend, "prepare", prepare)
    monkeypatch.setattr(local.LocalBackend, "ready", prepare)  # builds the venvs and models
    with pytest.raises(RunError, match="langid already runs on the docker target"):
        local.target().up([langid], UpOptions(gateway_port=free_port()))
    assert built == []


def test_the_wheelhouse_note_is_information_without_pips_error() -> None:
    from sandbox import images

    pip = (
        "ERROR: Could not find a version that satisfies the requirement fasttext==0.9.3\n"
        "ERROR: No matching distribution found for fasttext==0.9.3\n"
    )
    note = images.wheelhouse_note(pip)
    assert "info:" in note and "fasttext==0.9.3 has no wheel" in note
    assert "ERROR" not in note and "No matching distribution" not in note
    assert "ERROR" not in images.wheelhouse_note("ERROR: something else\n")


def test_only_isvcs_that_name_wiki_url_use_mediawiki() -> None:
    services = catalog.load_all()
    assert services["outlink-topic-model"].uses_mediawiki
    assert not services["langid"].uses_mediawiki
