"""The emulator answers every query form Lift Wing's outlink-topic-model sends, in formatversion 1
and 2, with the real API's shapes, and says "not in the fixtures" where the fixtures are silent.

The query forms are production's, as its code sends them through mwapi 0.6.1 (which adds
`format=json`, and `continue=` when following continuation):
wikimedia/machinelearning-liftwing-inference-services@bce944c0:
src/models/outlink_topic_model/model_server/model.py (`_get_page_id_from_page_title`,
`get_outlinks`, `get_outlinks_by_revision`); mediawiki-utilities/python-mwapi@fc45d32
(v0.6.1): mwapi/async_session.py, mwapi/util.py.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.mediawiki import ReplayServer, load_wikis
from sandbox.mediawiki.fixtures import Wiki, db_key
from tests.mediawiki_queries import EN, LINKS, MANY, MIXED, TARGET, TITLE_LOOKUP

pytestmark = pytest.mark.component

FR = "fr.wikipedia.org"
REDIRECT = "Sandbox edge case (redirect)"
MISSING = "This page does not exist at all"
FR_PAGE = "Page de test du bac à sable"
PARSE = {"action": "parse", "prop": "links", "format": "json", "formatversion": "2"}
FV = pytest.mark.parametrize("fv", ["1", "2"])


@pytest.fixture(scope="module")
def wikis() -> dict[str, Wiki]:
    return load_wikis()


@pytest.fixture(scope="module")
def server() -> Iterator[ReplayServer]:
    with ReplayServer(port=0) as srv:  # gpllimit max 500, as on Wikipedia
        yield srv


def get(server: ReplayServer, params: dict[str, str], host: str = EN) -> tuple[int, bytes, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", f"/w/api.php?{urllib.parse.urlencode(params)}", headers={"Host": host})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, body, json.loads(body)
    finally:
        conn.close()


def ok(server: ReplayServer, params: dict[str, str], host: str = EN) -> Any:
    status, _, doc = get(server, params, host)
    assert status == 200, doc
    assert "error" not in doc, doc
    return doc


def pages_of(doc: dict[str, Any], fv: str) -> list[dict[str, Any]]:
    """The pages in order; checks formatversion 1's keys (page id, or -1, -2, ...)."""
    pages = doc["query"]["pages"]
    if fv == "2":
        assert isinstance(pages, list)
        return pages
    assert isinstance(pages, dict)
    fake = 0
    for key, page in pages.items():
        if "pageid" in page:
            assert key == str(page["pageid"])
        else:
            fake -= 1
            assert key == str(fake)
    return list(pages.values())


def flag(fv: str) -> Any:
    """A true flag: `""` in formatversion 1, `true` in 2."""
    return "" if fv == "1" else True


# -- titles= and pageids= ----------------------------------------------------------------------


@FV
def test_title_lookup_as_production_sends_it(
    server: ReplayServer, wikis: dict[str, Wiki], fv: str
) -> None:
    doc = ok(server, {**TITLE_LOOKUP, "formatversion": fv})
    assert doc["batchcomplete"] == flag(fv)
    (page,) = pages_of(doc, fv)
    assert page == {"pageid": wikis[EN].pages[TARGET].pageid, "ns": 0, "title": TARGET}
    if fv == "1":  # production reads the page id as the first key of `pages`
        assert int(next(iter(doc["query"]["pages"]))) == wikis[EN].pages[TARGET].pageid


def test_formatversion_1_is_the_default(server: ReplayServer) -> None:
    assert ok(server, TITLE_LOOKUP) == ok(server, {**TITLE_LOOKUP, "formatversion": "1"})
    assert ok(server, {**TITLE_LOOKUP, "formatversion": "latest"}) == ok(
        server, {**TITLE_LOOKUP, "formatversion": "2"}
    )


@FV
def test_missing_and_invalid_titles(server: ReplayServer, fv: str) -> None:
    doc = ok(server, {**TITLE_LOOKUP, "titles": f"Bad <title>|{MISSING}", "formatversion": fv})
    missing, invalid = pages_of(doc, fv)
    assert missing == {"ns": 0, "title": MISSING, "missing": flag(fv)}
    assert invalid["invalid"] == flag(fv)
    assert invalid["title"] == "Bad <title>"
    if fv == "1":
        assert list(doc["query"]["pages"]) == ["-1", "-2"]


@FV
def test_normalized_and_redirects(server: ReplayServer, wikis: dict[str, Wiki], fv: str) -> None:
    doc = ok(server, {**TITLE_LOOKUP, "titles": REDIRECT.replace(" ", "_"), "formatversion": fv})
    expected = {"from": REDIRECT.replace(" ", "_"), "to": REDIRECT}
    # formatversion 2 says fromencoded: false; formatversion 1 leaves a false flag out
    assert doc["query"]["normalized"] == [
        {"fromencoded": False, **expected} if fv == "2" else expected
    ]
    (page,) = pages_of(doc, fv)
    assert page["title"] == REDIRECT  # not followed without `redirects`
    followed = ok(
        server, {**TITLE_LOOKUP, "titles": REDIRECT, "redirects": "", "formatversion": fv}
    )
    assert followed["query"]["redirects"] == [{"from": REDIRECT, "to": TARGET}]
    (page,) = pages_of(followed, fv)
    assert page["pageid"] == wikis[EN].pages[TARGET].pageid


@FV
def test_pageids_with_pageprops(server: ReplayServer, wikis: dict[str, Wiki], fv: str) -> None:
    page = wikis[EN].pages[TARGET]
    gone = min(wikis[EN].missing_pageids)
    params = {"action": "query", "format": "json", "formatversion": fv, "prop": "pageprops"}
    doc = ok(server, {**params, "pageids": f"{page.pageid}|{gone}", "ppprop": "wikibase_item"})
    assert pages_of(doc, fv) == [
        {"pageid": gone, "missing": flag(fv)},
        {
            "pageid": page.pageid,
            "ns": 0,
            "title": TARGET,
            "pageprops": {"wikibase_item": page.wikibase_item},
        },
    ]


def test_titles_of_link_targets_with_pageprops(
    server: ReplayServer, wikis: dict[str, Wiki]
) -> None:
    """Production's revision path: up to 50 outlink titles a request, prop=pageprops."""
    wiki = wikis[EN]
    titles = [t for t in wiki.pages[MANY].links][:50]
    doc = ok(
        server,
        {
            "action": "query",
            "titles": "|".join(titles),
            "prop": "pageprops",
            "ppprop": "wikibase_item",
            "format": "json",
            "formatversion": "2",
        },
    )
    got = {p["title"]: p.get("pageprops", {}).get("wikibase_item") for p in doc["query"]["pages"]}
    assert got == {t: wiki.pages[t].wikibase_item for t in titles}
    too_many = {**TITLE_LOOKUP, "titles": "|".join(wiki.pages[MANY].links[:51])}
    assert get(server, too_many)[2]["error"]["code"] == "toomanyvalues"


# -- generator=links ---------------------------------------------------------------------------


@FV
def test_outlinks_as_production_pages_through_them(
    server: ReplayServer, wikis: dict[str, Wiki], fv: str
) -> None:
    """gpllimit=500 over 1,100 links: three requests, continuing as mwapi does."""
    wiki = wikis[EN]
    params = {**LINKS, "pageids": str(wiki.pages[MANY].pageid), "formatversion": fv}
    batches = []
    for _ in range(10):
        doc = ok(server, params)
        batches.append(pages_of(doc, fv))
        if "continue" not in doc:
            break
        assert doc["continue"]["continue"] == "gplcontinue||"
        assert doc["batchcomplete"] == flag(fv)
        params = {**params, **doc["continue"]}
    assert [len(b) for b in batches] == [500, 500, 100]
    assert "warnings" not in doc  # 500 is within the limit for users
    titles = [p["title"] for b in batches for p in b]
    assert titles == sorted(wiki.pages[MANY].links, key=db_key)
    qids = {p["pageprops"]["wikibase_item"] for b in batches for p in b if "pageprops" in p}
    expected = {wiki.pages[t].wikibase_item for t in wiki.pages[MANY].links} - {None}
    assert qids == expected


@FV
def test_outlinks_with_red_links_and_redirects(
    server: ReplayServer, wikis: dict[str, Wiki], fv: str
) -> None:
    wiki = wikis[EN]
    doc = ok(server, {**LINKS, "pageids": str(wiki.pages[MIXED].pageid), "formatversion": fv})
    pages = pages_of(doc, fv)
    assert pages[0] == {"ns": 0, "title": "Sandbox red link", "missing": flag(fv)}
    assert all("missing" not in p for p in pages[1:])
    assert {"from": "Sandbox article alias", "to": "Sandbox linked article A"} in doc["query"][
        "redirects"
    ]
    # production keeps namespace-0 pages that are not missing and have an item
    qids = {p["pageprops"]["wikibase_item"] for p in pages if p["ns"] == 0 and "missing" not in p
            and "pageprops" in p}  # fmt: skip
    assert qids == {"Q990100001", "Q990100002", "Q990100003"}


def test_gpllimit_over_500_is_clamped_with_a_warning(server: ReplayServer) -> None:
    doc = ok(server, {**LINKS, "titles": MANY, "gpllimit": "501", "formatversion": "1"})
    assert len(doc["query"]["pages"]) == 500
    assert doc["warnings"]["links"] == {"*": "gpllimit may not be over 500 (set to 500) for users."}


@FV
def test_outlinks_of_a_redirect_title_follow_it(
    server: ReplayServer, wikis: dict[str, Wiki], fv: str
) -> None:
    doc = ok(server, {**LINKS, "titles": REDIRECT, "formatversion": fv})
    assert doc["query"]["redirects"] == [{"from": REDIRECT, "to": TARGET}]
    assert {p["title"] for p in pages_of(doc, fv)} == set(wikis[EN].pages[TARGET].links)


@FV
def test_outlinks_of_a_missing_page_have_no_query(server: ReplayServer, fv: str) -> None:
    """Production looks a missing title up as page id -1 (fv1's key) and asks for its links."""
    assert "query" not in ok(server, {**LINKS, "pageids": "-1", "formatversion": fv})
    assert "query" not in ok(server, {**LINKS, "titles": MISSING, "formatversion": fv})


# -- action=parse ------------------------------------------------------------------------------


@FV
def test_parse_links_of_a_revision(server: ReplayServer, wikis: dict[str, Wiki], fv: str) -> None:
    page = wikis[EN].pages[MIXED]
    doc = ok(server, {**PARSE, "oldid": str(page.revid), "formatversion": fv})
    parse = doc["parse"]
    assert (parse["title"], parse["pageid"], parse["revid"]) == (MIXED, page.pageid, page.revid)
    red = "Sandbox red link"
    if fv == "2":
        assert [link["title"] for link in parse["links"]] == page.links_in_page_order
        assert all(link["exists"] is (link["title"] != red) for link in parse["links"])
    else:
        assert [link["*"] for link in parse["links"]] == page.links_in_page_order
        for link in parse["links"]:
            assert link.get("exists") == (None if link["*"] == red else "")
    assert all(link["ns"] == 0 for link in parse["links"])


@FV
def test_parse_of_a_revision_that_does_not_exist(
    server: ReplayServer, wikis: dict[str, Wiki], fv: str
) -> None:
    revid = min(wikis[EN].missing_revids)
    status, _, doc = get(server, {**PARSE, "oldid": str(revid), "formatversion": fv})
    assert status == 200
    assert doc["error"]["code"] == "nosuchrevid"
    assert doc["error"]["info"] == f"There is no revision with ID {revid}."
    assert ("docref" if fv == "2" else "*") in doc["error"]


# -- encoding ----------------------------------------------------------------------------------


def test_formatversion_1_escapes_non_ascii_unless_utf8(server: ReplayServer) -> None:
    params = {**TITLE_LOOKUP, "titles": FR_PAGE}
    _, fv1, _ = get(server, params, host=FR)
    assert b"\\u00e0" in fv1
    _, utf8, _ = get(server, {**params, "utf8": ""}, host=FR)
    _, fv2, _ = get(server, {**params, "formatversion": "2"}, host=FR)
    assert "à".encode() in utf8 and "à".encode() in fv2


def test_requestid_is_echoed_first(server: ReplayServer) -> None:
    doc = ok(server, {**TITLE_LOOKUP, "requestid": "abc-1"})
    assert next(iter(doc)) == "requestid" and doc["requestid"] == "abc-1"


# -- not in the fixtures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "what"),
    [
        ({**TITLE_LOOKUP, "titles": "Douglas Adams"}, "'Douglas Adams'"),
        ({**TITLE_LOOKUP, "titles": f"{TARGET}|Douglas Adams"}, "'Douglas Adams'"),
        ({**LINKS, "pageids": "8091"}, "page id 8091"),
        ({**LINKS, "titles": "Sandbox outlink 0001"}, "outlinks of 'Sandbox outlink 0001'"),
        ({**PARSE, "oldid": "123456"}, "revision 123456"),
    ],
)
def test_what_the_fixtures_do_not_say_is_not_in_the_fixtures(
    server: ReplayServer, params: dict[str, str], what: str
) -> None:
    status, _, doc = get(server, params)
    assert status == 501
    error = doc["error"]
    assert error["code"] == "replay-not-in-fixtures"
    assert what in error["info"]
    assert error["request"]["params"]["action"] == params["action"]
    assert "--record DIR" in error["record"]
