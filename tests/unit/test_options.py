"""`--mediawiki` is parsed once, at the CLI boundary, into a `MediaWiki` that every target reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.errors import UsageError
from sandbox.runtime.options import RECORDINGS_DIR, MediaWiki

pytestmark = pytest.mark.unit


def test_every_form_parses_to_one_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recs").mkdir()
    assert MediaWiki.parse("live") == MediaWiki("live")
    assert MediaWiki.parse("replay") == MediaWiki("emulate")
    assert MediaWiki.parse("https://mw.example.org") == MediaWiki(
        "url", url="https://mw.example.org"
    )
    assert MediaWiki.parse("replay:recs") == MediaWiki("replay", directory=str(tmp_path / "recs"))
    assert MediaWiki.parse("record") == MediaWiki(
        "record", directory=str(tmp_path / RECORDINGS_DIR)
    )
    assert MediaWiki.parse("record:~/x").directory == str(Path("~/x").expanduser())
    # Which modes run the replay server, and how each one reads back.
    assert [MediaWiki.parse(v).replay_server for v in ("live", "replay", "https://x")] == [
        False,
        True,
        False,
    ]
    assert str(MediaWiki.parse("replay")) == "replay"
    assert str(MediaWiki.parse("https://x")) == "https://x"


@pytest.mark.parametrize("value", ["ftp://x", "nonsense", "replay:", "record:", "emulate"])
def test_anything_else_is_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError, match="--mediawiki must be") as err:
        MediaWiki.parse(value)
    assert err.value.exit_code == 2


def test_a_replay_folder_must_exist(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not a folder of recordings"):
        MediaWiki.parse(f"replay:{tmp_path / 'missing'}")
