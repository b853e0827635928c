"""The MediaWiki replay server over real HTTP on 127.0.0.1: API shapes, continuation, faults.

Expectations are derived from the packaged fixtures (the edge-case and fr wikis this suite owns),
not written out by hand.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.mediawiki import FixtureError, ReplayServer, load_wikis
from sandbox.mediawiki.fixtures import Wiki, db_key
from sandbox.mediawiki.replay import main

pytestmark = pytest.mark.component

EN = "en.wikipedia.org"
FR = "fr.wikipedia.org"
MAX_LIMIT = 3
MANY = "Sandbox edge case (many outlinks)"
MIXED = "Sandbox edge case (mixed outlinks)"
TARGET = "Sandbox edge case (redirect target)"
NO_LINKS = "Sandbox edge case (no outlinks)"
BASE = {"action": "query", "format": "json", "formatversion": "2"}
LINKS = {
    **BASE,
    "generator": "links",
    "redirects": "1",
    "prop": "pageprops",
    "ppprop": "wikibase_item",
    "gplnamespace": "0",
    "gpllimit": "max",
}


@pytest.fixture(scope="module")
def wikis() -> dict[str, Wiki]:
    return load_wikis()


@pytest.fixture(scope="module")
def server() -> Iterator[ReplayServer]:
    with ReplayServer(port=0, max_limit=MAX_LIMIT) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_fault(server: ReplayServer) -> Iterator[None]:
    server.set_fault("none")
    yield
    server.set_fault("none")


class Reply:
    def __init__(self, resp: http.client.HTTPResponse) -> None:
        self.status = resp.status
        self.headers = {k.lower(): v for k, v in resp.getheaders()}
        self.body = resp.read()

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    server: ReplayServer,
    params: dict[str, str] | None = None,
    *,
    host: str = EN,
    path: str = "/w/api.php",
    method: str = "GET",
    body: bytes | None = None,
    timeout: float = 10,
) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        query = urllib.parse.urlencode(params or {})
        headers = {"Host": host}
        if method == "POST" and params is not None and body is None:
            body, query = query.encode(), ""
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, f"{path}?{query}" if query else path, body=body, headers=headers)
        return Reply(conn.getresponse())
    finally:
        conn.close()


def api(server: ReplayServer, host: str = EN, **params: str) -> dict[str, Any]:
    reply = call(server, {**BASE, **params}, host=host)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("application/json")
    return reply.json()


def all_link_batches(server: ReplayServer, **params: str) -> list[dict[str, Any]]:
    batches, extra = [], {}
    for _ in range(1000):
        doc = api(server, **{**LINKS, **params, **extra})
        batches.append(doc)
        if "continue" not in doc:
            return batches
        extra = doc["continue"]
    raise AssertionError("continuation never ended")


def expected_link_pages(wiki: Wiki, title: str) -> list[dict[str, Any]]:
    """What generator=links&redirects should list for `title`, from the fixture data."""
    pages: list[dict[str, Any]] = []
    for link in sorted(wiki.pages[title].links, key=db_key):
        page = wiki.pages.get(link)
        if page is None:
            entry: dict[str, Any] = {"ns": 0, "title": link, "missing": True}
        else:
            page = wiki.resolve(page)
            entry = {"pageid": page.pageid, "ns": 0, "title": page.title}
            if page.wikibase_item:
                entry["pageprops"] = {"wikibase_item": page.wikibase_item}
        if entry not in pages:
            pages.append(entry)
    return pages


# -- pages by title and id ---------------------------------------------------------------------


def test_health_lists_the_fixture_wikis(server: ReplayServer, wikis: dict[str, Wiki]) -> None:
    doc = call(server, path="/__replay__/health").json()
    assert doc["status"] == "ok"
    assert doc["wikis"] == {host: len(w.pages) for host, w in wikis.items() if w.exists}
    assert doc["mode"] == "emulate"
    assert {EN, FR} <= set(doc["wikis"])
    assert doc["fault"]["mode"] == "none"
    assert doc["max_limit"] == MAX_LIMIT


def test_title_lookup_with_pageprops(server: ReplayServer, wikis: dict[str, Wiki]) -> None:
    page = wikis[EN].pages[TARGET]
    doc = api(server, titles=TARGET, prop="pageprops", ppprop="wikibase_item")
    assert doc["batchcomplete"] is True
    assert doc["query"]["pages"] == [
        {
            "pageid": page.pageid,
            "ns": 0,
            "title": TARGET,
            "pageprops": {"wikibase_item": page.wikibase_item},
        }
    ]


def test_title_is_normalized(server: ReplayServer) -> None:
    raw = NO_LINKS.replace(" ", "_").lower()
    doc = api(server, titles=raw)
    assert doc["query"]["normalized"] == [{"fromencoded": False, "from": raw, "to": NO_LINKS}]
    assert doc["query"]["pages"][0]["title"] == NO_LINKS


def test_redirects_resolve_only_when_asked(server: ReplayServer, wikis: dict[str, Wiki]) -> None:
    redirect = next(p for p in wikis[EN].pages.values() if p.redirect_to == TARGET)
    followed = api(server, titles=redirect.title, redirects="1")
    assert followed["query"]["redirects"] == [{"from": redirect.title, "to": TARGET}]
    assert followed["query"]["pages"][0]["pageid"] == wikis[EN].pages[TARGET].pageid
    raw = api(server, titles=redirect.title)
    assert "redirects" not in raw["query"]
    assert raw["query"]["pages"][0]["title"] == redirect.title
    assert raw["query"]["pages"][0]["pageid"] != wikis[EN].pages[TARGET].pageid


def test_pageids_lookup_and_missing_ids(server: ReplayServer, wikis: dict[str, Wiki]) -> None:
    page = wikis[EN].pages[MIXED]
    unused = min(wikis[EN].missing_pageids)
    doc = api(server, pageids=f"{page.pageid}|{unused}|-4")
    # As ApiQuery lists them: missing ids before the pages found; ids <= 0 never exist.
    assert doc["query"]["pages"] == [
        {"pageid": unused, "missing": True},
        {"pageid": -4, "missing": True},
        {"pageid": page.pageid, "ns": 0, "title": MIXED},
    ]


def test_missing_and_invalid_titles(server: ReplayServer) -> None:
    doc = api(server, titles="No such page in the replay fixtures|Bad <title>")
    missing, invalid = doc["query"]["pages"]
    assert missing == {"ns": 0, "title": "No such page in the replay fixtures", "missing": True}
    assert invalid["invalid"] is True
    assert invalid["title"] == "Bad <title>"
    assert '"<"' in invalid["invalidreason"]


def test_too_long_title_is_invalid(server: ReplayServer) -> None:
    page = api(server, titles="é" * 200)["query"]["pages"][0]
    assert page["invalid"] is True
    assert "too long" in page["invalidreason"]


def test_post_form_answers_like_get(server: ReplayServer) -> None:
    params = {**BASE, "titles": TARGET, "prop": "pageprops"}
    posted = call(server, params, method="POST")
    assert posted.status == 200
    assert posted.json() == call(server, params).json()


def test_the_host_header_picks_the_wiki(server: ReplayServer, wikis: dict[str, Wiki]) -> None:
    fr_page = next(p for p in wikis[FR].pages.values() if p.links)
    assert api(server, host=FR, titles=fr_page.title)["query"]["pages"][0]["pageid"] == (
        fr_page.pageid
    )
    # Not in the en fixtures: a clear 501, not a missing page.
    reply = call(server, {**BASE, "titles": fr_page.title}, host=EN)
    assert reply.status == 501
    assert reply.json()["error"]["code"] == "replay-not-in-fixtures"


def test_a_language_without_a_wikipedia_redirects_to_the_incubator(server: ReplayServer) -> None:
    reply = call(server, {**BASE, "titles": TARGET}, host="xx-not-a-wiki.wikipedia.org")
    assert reply.status == 302
    location = urllib.parse.urlsplit(reply.headers["location"])
    assert location.hostname == "incubator.wikimedia.org"
    assert location.path.endswith("/xx-not-a-wiki")


@pytest.mark.parametrize("host", ["127.0.0.1", "example.org", "en.wikipedia.org.example"])
def test_a_host_naming_no_wiki_is_404(server: ReplayServer, host: str) -> None:
    reply = call(server, {**BASE, "titles": TARGET}, host=host)
    assert reply.status == 404
    assert b"No wiki found" in reply.body


# -- generator=links and continuation ----------------------------------------------------------


@pytest.mark.parametrize("title", [MIXED, TARGET, MANY])
def test_links_follow_continuation_to_the_full_list(
    server: ReplayServer, wikis: dict[str, Wiki], title: str
) -> None:
    page = wikis[EN].pages[title]
    batches = all_link_batches(server, pageids=str(page.pageid))
    pages = [p for b in batches for p in b.get("query", {}).get("pages", [])]
    expected = expected_link_pages(wikis[EN], title)
    # Pages may repeat across batches (two links to one redirect target); the set is exact.
    unique = [p for i, p in enumerate(pages) if p not in pages[:i]]
    assert sorted(unique, key=json.dumps) == sorted(expected, key=json.dumps)
    for batch in batches:  # as ApiQuery lists them: red links first, then pages in title order
        listed = batch.get("query", {}).get("pages", [])
        red = [p.get("missing", False) for p in listed]
        assert red == sorted(red, reverse=True)
        found = [p["title"] for p in listed if "missing" not in p]
        assert found == sorted(found, key=db_key)
    assert len(batches) == -(-len(wikis[EN].pages[title].links) // MAX_LIMIT)
    for batch in batches[:-1]:
        token = batch["continue"]["gplcontinue"]
        pageid, ns, key = token.split("|")
        assert (int(pageid), ns) == (page.pageid, "0")
        assert key in {db_key(t) for t in page.links}
        assert batch["continue"]["continue"] == "gplcontinue||"
        assert len(batch["query"]["pages"]) <= MAX_LIMIT


def test_generator_reports_input_redirects(server: ReplayServer, wikis: dict[str, Wiki]) -> None:
    redirect = next(p for p in wikis[EN].pages.values() if p.redirect_to == TARGET)
    doc = api(server, **{**LINKS, "titles": redirect.title})
    assert {"from": redirect.title, "to": TARGET} in doc["query"]["redirects"]


def test_generator_over_a_missing_page_or_no_links_has_no_query(server: ReplayServer) -> None:
    assert "query" not in api(server, **{**LINKS, "titles": "No such page in the fixtures"})
    assert "query" not in api(server, **{**LINKS, "titles": NO_LINKS})


def test_gpllimit_over_the_cap_is_clamped_with_a_warning(
    server: ReplayServer, wikis: dict[str, Wiki]
) -> None:
    doc = api(server, **{**LINKS, "titles": MANY, "gpllimit": str(MAX_LIMIT + 5)})
    assert len(doc["query"]["pages"]) == MAX_LIMIT
    assert f"may not be over {MAX_LIMIT}" in doc["warnings"]["links"]["warnings"]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"action": "parse", "page": "X"}, "replay-unsupported"),
        ({"titles": "X", "list": "allpages"}, "replay-unsupported"),
        ({"titles": "X", "formatversion": "3"}, "badvalue"),
        ({"action": "parse", "oldid": "1", "prop": "text"}, "replay-unsupported"),
        ({"titles": "X", "generator": "categorymembers"}, "replay-unsupported"),
        ({"titles": "X", "pageids": "1"}, "invalidparammix"),
        ({"pageids": "abc"}, "badinteger"),
        ({**LINKS, "titles": MANY, "gpllimit": "lots"}, "badinteger"),
        ({**LINKS, "titles": MANY, "gplcontinue": "not-a-token"}, "badcontinue"),
    ],
)
def test_api_errors_have_the_real_shape(
    server: ReplayServer, params: dict[str, str], code: str
) -> None:
    reply = call(server, {**BASE, **params})
    assert reply.status == 200
    assert reply.headers["mediawiki-api-error"] == code
    error = reply.json()["error"]
    assert error["code"] == code
    assert error["info"]
    # formatversion 2 puts the docref under `docref`, formatversion 1 (and an invalid one) `*`
    assert ("docref" if params.get("formatversion", "2") == "2" else "*") in error


def test_request_log_over_http(server: ReplayServer) -> None:
    assert call(server, path="/__replay__/requests", method="DELETE").status == 200
    call(server, {**BASE, "titles": TARGET}, host=FR)
    logged = call(server, path="/__replay__/requests").json()["requests"]
    assert [(r["wiki"], r["params"].get("titles")) for r in logged] == [(FR, TARGET)]


# -- faults ------------------------------------------------------------------------------------

QUERY = {**BASE, "titles": TARGET}


def test_error500_fault(server: ReplayServer) -> None:
    server.set_fault("error500")
    reply = call(server, QUERY)
    assert reply.status == 500
    assert reply.headers["content-type"].startswith("text/html")


def test_malformed_fault_is_a_200_that_is_not_json(server: ReplayServer) -> None:
    server.set_fault("malformed")
    reply = call(server, QUERY)
    assert reply.status == 200
    with pytest.raises(json.JSONDecodeError):
        reply.json()


def test_apierror_fault(server: ReplayServer) -> None:
    server.set_fault("apierror")
    reply = call(server, QUERY)
    assert reply.status == 200
    assert reply.json()["error"]["code"] == reply.headers["mediawiki-api-error"]


def test_reset_fault_drops_the_connection(server: ReplayServer) -> None:
    server.set_fault("reset")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        call(server, QUERY)


def test_slow_fault_delays_the_answer(server: ReplayServer) -> None:
    server.set_fault("slow", delay_s=30)
    with pytest.raises(TimeoutError):
        call(server, QUERY, timeout=0.3)


def answers_the_query(server: ReplayServer, timeout: float) -> bool:
    try:
        reply = call(server, QUERY, timeout=timeout)
        return reply.status == 200 and reply.json()["query"]["pages"][0]["title"] == TARGET
    except (OSError, http.client.HTTPException, ValueError, KeyError):
        return False


@pytest.mark.parametrize("mode", ["error500", "malformed", "apierror", "reset", "slow"])
def test_server_keeps_serving_after_a_fault(server: ReplayServer, mode: str) -> None:
    server.set_fault(mode, delay_s=30)
    assert not answers_the_query(server, timeout=0.3)
    assert not answers_the_query(server, timeout=0.3)
    server.set_fault("none")
    assert answers_the_query(server, timeout=10)


def test_fault_scoped_to_one_wiki(server: ReplayServer, wikis: dict[str, Wiki]) -> None:
    server.set_fault("error500", wiki=FR)
    fr_title = next(iter(wikis[FR].pages))
    assert call(server, {**BASE, "titles": fr_title}, host=FR).status == 500
    assert call(server, QUERY, host=EN).status == 200


def test_fault_after_and_times(server: ReplayServer) -> None:
    server.set_fault("error500", after=1, times=2)
    assert [call(server, QUERY).status for _ in range(5)] == [200, 500, 500, 200, 200]


def test_fault_switched_over_http(server: ReplayServer) -> None:
    body = json.dumps({"mode": "error500", "wiki": EN}).encode()
    reply = call(server, path="/__replay__/fault", method="POST", body=body)
    assert reply.status == 200
    assert reply.json()["wiki_faults"][EN]["mode"] == "error500"
    assert call(server, QUERY).status == 500
    off = call(server, path="/__replay__/fault", method="POST", body=b'{"mode": "none"}')
    assert off.json()["fault"]["mode"] == "none"
    assert call(server, QUERY).status == 200


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "JSON object"),
        (b'{"mode": "explode"}', "explode"),
        (b'{"mode": "slow", "delay_s": "long"}', "delay_s"),
        (b'{"mode": "slow", "colour": "red"}', "colour"),
        (b'{"mode": "error500", "times": 0}', "times"),
    ],
)
def test_bad_fault_requests_are_400(server: ReplayServer, body: bytes, problem: str) -> None:
    reply = call(server, path="/__replay__/fault", method="POST", body=body)
    assert reply.status == 400
    assert problem in reply.json()["error"]
    assert call(server, QUERY).status == 200


# -- fixtures ----------------------------------------------------------------------------------


def write(tmp: Path, name: str, text: str) -> Path:
    (tmp / name).write_text(text, encoding="utf-8")
    return tmp


def test_fixture_files_of_one_wiki_merge(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "wiki: xx.example.org\npages:\n  - {pageid: 1, title: A}\n")
    write(
        tmp_path,
        "b.yaml",
        "wiki: xx.example.org\npages:\n"
        "  - {pageid: 2, title: B, links: [{title: A}, {title: C, wikibase_item: Q3}]}\n",
    )
    wiki = load_wikis([tmp_path])["xx.example.org"]
    assert wiki.pages["B"].links == ["A", "C"]
    assert wiki.pages["A"].pageid == 1
    assert wiki.pages["C"].wikibase_item == "Q3"


EN_HEAD = "wiki: en.wikipedia.org\npages:\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (EN_HEAD + "  - {pageid: 1, title: A, wikibase_item: X1}\n", "Q42"),
        (
            EN_HEAD + "  - {pageid: 1, title: A}\n  - {pageid: 1, title: B}\n",
            "page id 1",
        ),
        (
            EN_HEAD + "  - {pageid: 1, title: A}\n  - {pageid: 2, title: a}\n",
            "defined twice",
        ),
        (EN_HEAD + "  - {title: A}\n", "pageid"),
        ("wiki: not a host\npages: []\n", "host name"),
        ("- just a list\n", "mapping"),
        ("wiki: [unclosed\n", "cannot read"),
    ],
)
def test_bad_fixtures_are_reported_by_file(tmp_path: Path, text: str, problem: str) -> None:
    write(tmp_path, "bad.yaml", text)
    with pytest.raises(FixtureError, match=r"bad\.yaml") as info:
        load_wikis([tmp_path])
    assert problem in str(info.value)


def test_cli_reports_bad_fixtures_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "bad.yaml", EN_HEAD + "  - {title: A}\n")
    assert main(["--port", "0", "--fixtures", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err
    assert "Traceback" not in err


def test_cli_rejects_a_bad_max_limit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", "0", "--max-limit", "0"]) == 2
    assert "--max-limit" in capsys.readouterr().err


# -- bad input is never a 500 ------------------------------------------------------------------


def raw_status(server: ReplayServer, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.mark.parametrize(
    ("request_bytes", "status", "words"),
    [
        pytest.param(
            b"GET /w/api.php?action=query&format=json&formatversion=2&titles=" + TARGET.replace(
                " ", "%20").encode() + b" HTTP/1.1\r\nHost: en.wikipedia.org:notaport\r\n\r\n",
            200, TARGET.encode(), id="bad-port-in-host",
        ),
        pytest.param(
            b"POST /w/api.php HTTP/1.1\r\nHost: en.wikipedia.org\r\nContent-Type: "
            b"multipart/form-data; boundary=zz\r\nContent-Length: 8\r\n\r\ngarbage!",
            400, b"replay-bad-request", id="broken-multipart",
        ),
        pytest.param(
            b"POST /w/api.php HTTP/1.1\r\nHost: en.wikipedia.org\r\nContent-Type: "
            b"application/x-www-form-urlencoded; charset=bogus\r\n"
            b"Content-Length: 8\r\n\r\naction=q",
            400, b"replay-bad-request", id="unknown-charset",
        ),
        pytest.param(
            b"GET /w/api.php?action=query&format=json&titles=%ED%A0%80 HTTP/1.1\r\n"
            b"Host: en.wikipedia.org\r\n\r\n",
            501, b"replay-not-in-fixtures", id="not-utf8",
        ),
    ],
)  # fmt: skip
def test_bad_requests_are_never_a_500(
    server: ReplayServer, request_bytes: bytes, status: int, words: bytes
) -> None:
    got, body = raw_status(server, request_bytes.replace(b"\r\n", b"\r\nConnection: close\r\n", 1))
    assert (got, words in body) == (status, True), body[:300]


def test_a_title_with_a_newline_is_invalid_not_trimmed(server: ReplayServer) -> None:
    # `$` matching before a final newline is the classic slip: MediaWiki trims only spaces.
    page = api(server, titles=f"{TARGET}\n")["query"]["pages"][0]
    assert page["invalid"] is True


def test_fixture_values_with_a_trailing_newline_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", 'wiki: "en.wikipedia.org\\n"\npages: []\n')
    with pytest.raises(FixtureError, match="host name"):
        load_wikis([tmp_path])
    write(tmp_path, "bad.yaml", EN_HEAD + '  - {pageid: 1, title: A, wikibase_item: "Q1\\n"}\n')
    with pytest.raises(FixtureError, match="Q42"):
        load_wikis([tmp_path])
