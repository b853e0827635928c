"""The emulator answers what revertrisk-wikidata asks of www.wikidata.org, with the real API's
shapes, and says "not in the fixtures" where the fixtures are silent.

The requests are production's, as its code sends them through mwapi 0.6.1 (which adds
`format=json`): inference-services@bce944c src/models/revertrisk_wikidata/model_server/model.py
(`_get_revision_content`, `_fetch_metadata_features`) and utils.py (`fetch_labels_from_api`).
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.mediawiki import ReplayServer

pytestmark = pytest.mark.component

WD = "www.wikidata.org"
ITEM, PAGEID = "Q99000101", "99000101"


@pytest.fixture(scope="module")
def server() -> Iterator[ReplayServer]:
    with ReplayServer(port=0) as srv:
        yield srv


def get(server: ReplayServer, params: dict[str, str]) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        query = urllib.parse.urlencode({**params, "format": "json"})
        conn.request("GET", f"/w/api.php?{query}", headers={"Host": WD})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_revision_content_is_the_items_json_in_the_main_slot(server: ReplayServer) -> None:
    status, doc = get(
        server,
        {
            "action": "query",
            "prop": "revisions",
            "revids": "2300000002",
            "rvprop": "content|ids|title",
            "rvslots": "main",
        },
    )
    assert status == 200
    page = doc["query"]["pages"][PAGEID]
    assert (page["title"], page["ns"]) == (ITEM, 0)
    rev = page["revisions"][0]
    assert (rev["revid"], rev["parentid"]) == (2300000002, 2300000001)
    slot = rev["slots"]["main"]
    assert slot["contentmodel"] == "wikibase-item"
    entity = json.loads(slot["*"])
    assert entity["id"] == ITEM
    claim = entity["claims"]["P31"][0]
    assert claim["mainsnak"]["datavalue"]["value"]["id"] == "Q5"


def test_metadata_queries(server: ReplayServer) -> None:
    _, doc = get(
        server,
        {
            "action": "query",
            "prop": "revisions",
            "revids": "2300000002",
            "rvprop": "user|userid|timestamp|ids",
        },
    )
    rev = doc["query"]["pages"][PAGEID]["revisions"][0]
    assert rev["user"] == "Example editor" and rev["userid"] == 99000001
    assert rev["timestamp"] == "2024-03-02T12:30:00Z"
    assert "slots" not in rev  # only the rvprops asked for

    _, users = get(
        server,
        {
            "action": "query",
            "list": "users",
            "ususers": "Example editor",
            "usprop": "groups|registration",
        },
    )
    user = users["query"]["users"][0]
    assert user["groups"] == ["*", "user", "autoconfirmed"]
    assert user["registration"] == "2020-01-15T09:00:00Z"

    _, first = get(
        server,
        {
            "action": "query",
            "prop": "revisions",
            "pageids": PAGEID,
            "rvdir": "newer",
            "rvlimit": "1",
            "rvprop": "timestamp",
        },
    )
    assert first["query"]["pages"][PAGEID]["revisions"] == [{"timestamp": "2024-03-01T10:00:00Z"}]
    assert first["continue"]["rvcontinue"] == "20240302123000|2300000002"


def test_a_logged_out_editor(server: ReplayServer) -> None:
    _, doc = get(
        server,
        {"action": "query", "prop": "revisions", "revids": "2300000003", "rvprop": "user|userid"},
    )
    rev = doc["query"]["pages"][PAGEID]["revisions"][0]
    assert rev == {"user": "192.0.2.10", "anon": "", "userid": 0}
    _, users = get(
        server,
        {"action": "query", "list": "users", "ususers": "192.0.2.10", "usprop": "groups"},
    )
    assert users["query"]["users"] == [{"name": "192.0.2.10", "invalid": ""}]


def test_labels_of_items_and_properties(server: ReplayServer) -> None:
    _, doc = get(
        server,
        {"action": "wbgetentities", "props": "labels", "languages": "en", "ids": "Q5|P31"},
    )
    assert doc["entities"]["P31"]["type"] == "property"
    assert doc["entities"]["P31"]["labels"]["en"]["value"] == "instance of"
    assert doc["entities"]["Q5"]["labels"]["en"] == {"language": "en", "value": "human"}


@pytest.mark.parametrize(
    "params",
    [
        {"action": "query", "prop": "revisions", "revids": "2399999999", "rvprop": "ids"},
        {"action": "query", "list": "users", "ususers": "Nobody here", "usprop": "groups"},
    ],
)
def test_what_the_fixtures_do_not_name_is_not_in_the_fixtures(
    server: ReplayServer, params: dict[str, str]
) -> None:
    status, doc = get(server, params)
    assert status == 501
    assert doc["error"]["code"] == "replay-not-in-fixtures"


def test_every_revision_of_the_load_test_is_answered(server: ReplayServer) -> None:
    """revertrisk-wikidata's load test (test/locust/data/wikidata_revids.tsv): each revision, its
    parent, its page's first revision, its editor and the labels of its diff have an answer."""
    from sandbox.mediawiki import generate
    from tests.production_support import checkout

    root = checkout()
    if root is None:
        pytest.skip("no inference-services checkout")
    revids = generate.read_wikidata_revisions(root)
    assert len(revids) >= 30
    for revid in revids:
        status, doc = get(
            server,
            {
                "action": "query",
                "prop": "revisions",
                "revids": str(revid),
                "rvprop": "content|ids|title",
                "rvslots": "main",
            },
        )
        assert status == 200, (revid, doc)
        ((pageid, page),) = doc["query"]["pages"].items()
        rev = page["revisions"][0]
        status, parent = get(
            server,
            {
                "action": "query",
                "prop": "revisions",
                "revids": str(rev["parentid"]),
                "rvprop": "timestamp",
            },
        )
        assert status == 200 and parent["query"]["pages"][pageid]["revisions"]
        status, first = get(
            server,
            {
                "action": "query",
                "prop": "revisions",
                "pageids": pageid,
                "rvdir": "newer",
                "rvlimit": "1",
                "rvprop": "timestamp",
            },
        )
        assert status == 200 and first["query"]["pages"][pageid]["revisions"]
        status, labels = get(
            server,
            {
                "action": "wbgetentities",
                "props": "labels",
                "languages": "en",
                "ids": f"{page['title']}|P31|Q5",
            },
        )
        assert status == 200 and len(labels["entities"]) == 3
