"""revise-tone-task-generator, production's code unmodified on the local target (heavy tier: torch):
its REST calls to `http://en.wikipedia.org/w/rest.php/...` (a wiki's own domain, which no setting
of the isvc changes) reach the MediaWiki emulator through the launcher's mesh egress, and its
weighted-tags events reach the emulator's EventGate with production's structure.

Needs a checkout (SANDBOX_INFERENCE_SERVICES, else ../shared/inference-services).
"""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from sandbox.runtime import state
from sandbox.runtime.processes import free_port
from tests.e2e.conftest import cli
from tests.production_support import checkout

CHECKOUT = checkout()
if CHECKOUT is None:
    pytest.skip("no inference-services checkout", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.heavy]

ISVC = "revise-tone-task-generator"
STREAM = "mediawiki.cirrussearch.page_weighted_tags_change.v1"


@pytest.fixture
def served(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("SANDBOX_INFERENCE_SERVICES", str(CHECKOUT))
    port = free_port()
    cli("up", ISVC, "--mediawiki", "replay", "--port", str(port), "--timeout", "600")
    (replay,) = state.read().mediawiki.values()
    yield f"http://127.0.0.1:{port}", replay.url
    cli("down", check=False)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _predict(gateway: str, body: dict) -> dict:
    req = urllib.request.Request(
        f"{gateway}/v1/models/{ISVC}:predict",
        data=json.dumps(body).encode(),
        headers={"Host": f"{ISVC}.{ISVC}.wikimedia.org", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def _events(mediawiki: str) -> list[dict]:
    answer = _get(f"{mediawiki}/__replay__/events?stream={STREAM}")
    kept = answer["events"] if isinstance(answer, dict) else answer
    return [e.get("event", e) for e in kept]


def test_rest_reaches_the_emulator_and_events_reach_eventgate(served) -> None:
    gateway, mediawiki = served
    flagged = _predict(
        gateway,
        {"lang": "en", "page_title": "Sandbox museum", "page_id": 900000101, "rev_id": 3900000101},
    )
    assert [p["section_name"] for p in flagged["predictions"]] == [
        "_Lead",
        "Reception",
        "Reception",
    ]
    empty = _predict(
        gateway,
        {"lang": "en", "page_title": "Sandbox stub", "page_id": 900000102, "rev_id": 3900000102},
    )
    assert empty["predictions"] == []

    asked = _get(f"{mediawiki}/__replay__/requests")
    asked = asked["requests"] if isinstance(asked, dict) else asked
    paths = [(r["wiki"], r["path"], r["answered_by"]) for r in asked]
    assert ("en.wikipedia.org", "/w/rest.php/v1/revision/3900000101/html", "emulator") in paths
    assert ("en.wikipedia.org", "/w/rest.php/v1/revision/3900000102/html", "emulator") in paths

    events = _events(mediawiki)
    by_page = {e["page"]["page_id"]: e for e in events}
    assert set(by_page) == {900000101, 900000102}, events
    set_event, clear_event = by_page[900000101], by_page[900000102]
    for event in (set_event, clear_event):
        assert event["$schema"] == "/mediawiki/cirrussearch/page_weighted_tags_change/1.0.0"
        assert event["meta"] == {"stream": STREAM, "domain": "en.wikipedia.org"}
        assert event["wiki_id"] == "enwiki" and event["rev_based"] is True
    (tag,) = set_event["weighted_tags"]["set"]["recommendation.tone"]
    assert tag["tag"] == "exists"
    assert tag["score"] == max(p["score"] for p in flagged["predictions"])
    assert clear_event["weighted_tags"] == {"clear": ["recommendation.tone"]}


def test_heavy_entries_list_includes_revise_tone() -> None:
    """The coverage run of the heavy tier covers it too (test_production_isvcs.HEAVY)."""
    from tests.e2e.test_production_isvcs import HEAVY

    assert ISVC in HEAVY
    assert os.path.isfile(CHECKOUT / "src/models/revise_tone_task_generator/model_server/model.py")
