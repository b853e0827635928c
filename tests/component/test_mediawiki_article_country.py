"""What production's article-country asks of MediaWiki and Wikidata, answered by the emulator from
the packaged fixtures, over real HTTP, in the real APIs' shapes.

The requests are production's, read from its code (never copied): inference-services@bce944c
src/models/article_country/model_server/utils.py sends, through mwapi 0.6.1's AsyncSession
(which adds nothing but what it is given, and `continue=` when continuing), `title_to_qid`
(`action=query&prop=pageprops&ppprop=wikibase_item&redirects=True&titles=T`), `title_to_categories`
(`generator=categories&redirects=&prop=pageprops&ppprop=wikibase_item&gcllimit=max`),
`title_to_links` (`generator=links&gplnamespace=0&gpllimit=50`, continued) on
`http://<lang>.wikipedia.org`, and `get_claims` (`action=wbgetentities&ids=Q&props=claims`) on
`http://www.wikidata.org`, all with `format=json&formatversion=2`.

The shapes are MediaWiki's: a category is a namespace-14 page that `generator=categories` yields
(ApiQueryCategories in generator mode, mediawiki/core includes/api/ApiQueryCategories.php), with
its `pageprops` as for any generated page; a coordinate is Wikibase's GlobeCoordinateValue
serialization (`latitude`, `longitude`, `altitude`, `precision`, `globe`; datatype
`globe-coordinate`, value type `globecoordinate`).
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

EN, WD = "en.wikipedia.org", "www.wikidata.org"
JSON2 = {"format": "json", "formatversion": "2"}
CATEGORIES = {
    "action": "query",
    "generator": "categories",
    "redirects": "",
    "prop": "pageprops",
    "ppprop": "wikibase_item",
    "gcllimit": "max",
    **JSON2,
}


@pytest.fixture(scope="module")
def server() -> Iterator[ReplayServer]:
    with ReplayServer(port=0, max_limit=50) as srv:  # as the sandbox runs it
        yield srv


def get(server: ReplayServer, host: str, params: dict[str, str]) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", f"/w/api.php?{urllib.parse.urlencode(params)}", headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_title_to_qid(server: ReplayServer) -> None:
    params = {"action": "query", "prop": "pageprops", "ppprop": "wikibase_item"}
    params["redirects"] = "True"
    status, doc = get(server, EN, {**params, "titles": "Fujisan", **JSON2})
    assert status == 200
    assert doc["query"]["redirects"] == [{"from": "Fujisan", "to": "Mount Fuji"}]
    assert doc["query"]["pages"][0]["pageprops"] == {"wikibase_item": "Q39231"}


def test_categories_are_namespace_14_pages_with_their_items(server: ReplayServer) -> None:
    status, doc = get(server, EN, {**CATEGORIES, "titles": "Toni_Morrison"})
    assert status == 200, doc
    assert doc["batchcomplete"] is True
    assert doc["query"]["normalized"] == [
        {"fromencoded": False, "from": "Toni_Morrison", "to": "Toni Morrison"}
    ]
    pages = doc["query"]["pages"]
    assert [p["title"] for p in pages] == sorted(p["title"] for p in pages)
    assert all(p["ns"] == 14 and p["pageid"] > 0 for p in pages)
    items = {p["title"]: p.get("pageprops", {}).get("wikibase_item") for p in pages}
    assert items["Category:American women novelists"] == "Q990000101"
    assert items["Category:Articles with short description"] is None  # no item: no pageprops


def test_categories_in_formatversion_1_are_keyed_by_page_id(server: ReplayServer) -> None:
    status, doc = get(server, EN, {**CATEGORIES, "formatversion": "1", "titles": "Mount Fuji"})
    assert status == 200
    pages = doc["query"]["pages"]
    assert isinstance(pages, dict)
    by_title = {p["title"]: (key, p) for key, p in pages.items()}
    key, page = by_title["Category:Mountains of Japan"]
    assert key == str(page["pageid"]) and page["pageprops"] == {"wikibase_item": "Q990000104"}


def test_categories_follow_redirects_and_a_missing_page_has_none(server: ReplayServer) -> None:
    _, doc = get(server, EN, {**CATEGORIES, "titles": "Fujisan"})
    assert doc["query"]["redirects"] == [{"from": "Fujisan", "to": "Mount Fuji"}]
    assert "Category:Mountains of Japan" in [p["title"] for p in doc["query"]["pages"]]
    status, doc = get(server, EN, {**CATEGORIES, "titles": "This page does not exist at all"})
    assert status == 200 and "query" not in doc  # as a generator over a missing page answers


def test_a_page_whose_categories_the_fixtures_do_not_list_is_not_in_the_fixtures(
    server: ReplayServer,
) -> None:
    status, doc = get(server, EN, {**CATEGORIES, "titles": "Sodium chloride"})
    assert status == 501
    assert doc["error"]["code"] == "replay-not-in-fixtures"
    assert "categories of 'Sodium chloride'" in doc["error"]["info"]


def test_a_categories_parameter_without_its_generator_is_unsupported(
    server: ReplayServer,
) -> None:
    params = {"action": "query", "titles": "Mount Fuji", "gcllimit": "max", **JSON2}
    status, doc = get(server, EN, params)
    assert status == 200 and doc["error"]["code"] == "replay-unsupported"
    assert "generator=categories" in doc["error"]["info"]


def test_claims_with_a_coordinate_location(server: ReplayServer) -> None:
    status, doc = get(server, WD, {"action": "wbgetentities", "ids": "Q39231", "props": "claims",
                                   **JSON2})  # fmt: skip
    assert status == 200
    claims = doc["entities"]["Q39231"]["claims"]
    (p625,) = claims["P625"]
    assert p625["mainsnak"]["datatype"] == "globe-coordinate"
    assert p625["mainsnak"]["datavalue"] == {
        "value": {
            "latitude": 35.3606,
            "longitude": 138.7274,
            "altitude": None,
            "precision": 0.0001,
            "globe": "http://www.wikidata.org/entity/Q2",
        },
        "type": "globecoordinate",
    }
    assert claims["P17"][0]["mainsnak"]["datavalue"]["value"]["id"] == "Q17"
