"""The async MediaWiki client against the real replay server over HTTP on 127.0.0.1.

Expected QIDs come from the packaged fixtures (the edge-case and fr wikis this suite owns).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from sandbox.mediawiki import ReplayServer, load_wikis
from sandbox.mediawiki.fixtures import Wiki, db_key
from tests.mediawiki_client import (
    DEFAULT_USER_AGENT,
    InvalidInput,
    MediaWikiClient,
    MediaWikiError,
    OutlinkResult,
    PageNotFound,
    UnknownWiki,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamTimeout,
    UpstreamTimeoutError,
)

pytestmark = pytest.mark.component

T = TypeVar("T")
EN = "en.wikipedia.org"
FR = "fr.wikipedia.org"
MANY = "Sandbox edge case (many outlinks)"
MIXED = "Sandbox edge case (mixed outlinks)"
TARGET = "Sandbox edge case (redirect target)"
NO_LINKS = "Sandbox edge case (no outlinks)"
SMALL_LIMIT = 2


@pytest.fixture(scope="module")
def wikis() -> dict[str, Wiki]:
    return load_wikis()


@pytest.fixture(scope="module")
def server() -> Iterator[ReplayServer]:
    """Paging at gpllimit=max=2, so every article with links needs continuation."""
    with ReplayServer(port=0, max_limit=SMALL_LIMIT) as srv:
        yield srv


@pytest.fixture(scope="module")
def full_server() -> Iterator[ReplayServer]:
    """Paging at Wikipedia's gpllimit=max=500."""
    with ReplayServer(port=0) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_fault(server: ReplayServer) -> Iterator[None]:
    server.set_fault("none")
    yield
    server.set_fault("none")


def with_client(
    url: str, use: Callable[[MediaWikiClient], Awaitable[T]], timeout_s: float = 10.0
) -> T:
    async def run() -> T:
        client = MediaWikiClient(url, timeout_s=timeout_s)
        try:
            return await use(client)
        finally:
            await client.close()

    return asyncio.run(run())


def outlinks(url: str, lang: str, timeout_s: float = 10.0, **page: Any) -> OutlinkResult:
    return with_client(url, lambda c: c.outlinks(lang, **page), timeout_s)


def expected_qids(wiki: Wiki, title: str) -> list[str]:
    """The outlinks' items in API (title) order, redirects followed, each item once."""
    qids: list[str] = []
    for link in sorted(wiki.pages[title].links, key=db_key):
        page = wiki.pages.get(link)
        item = wiki.resolve(page).wikibase_item if page is not None else None
        if item and item not in qids:
            qids.append(item)
    return qids


# -- articles ----------------------------------------------------------------------------------


@pytest.mark.parametrize("title", [MIXED, TARGET, MANY])
def test_outlinks_by_title_follow_continuation(
    server: ReplayServer, wikis: dict[str, Wiki], title: str
) -> None:
    result = outlinks(server.url, "en", title=title)
    assert result.title == title
    assert result.page_id == wikis[EN].pages[title].pageid
    assert result.qids == expected_qids(wikis[EN], title)
    assert result.url == f"https://{EN}/wiki/{title.replace(' ', '_')}"


def test_paging_does_not_change_the_result(server: ReplayServer, full_server: ReplayServer) -> None:
    for title in (MIXED, MANY):
        assert outlinks(server.url, "en", title=title) == outlinks(
            full_server.url, "en", title=title
        )


def test_more_links_than_gpllimit_max(full_server: ReplayServer, wikis: dict[str, Wiki]) -> None:
    assert len(wikis[EN].pages[MANY].links) > 500  # the fixture needs real continuation
    result = outlinks(full_server.url, "en", title=MANY)
    assert result.qids == expected_qids(wikis[EN], MANY)
    assert len(result.qids) == len(set(result.qids))


def test_outlinks_by_page_id(server: ReplayServer, wikis: dict[str, Wiki]) -> None:
    page = wikis[EN].pages[MIXED]
    result = outlinks(server.url, "en", page_id=page.pageid)
    assert (result.title, result.page_id) == (MIXED, page.pageid)
    assert result == outlinks(server.url, "en", title=MIXED)


def test_redirect_and_unnormalized_titles_resolve(
    server: ReplayServer, wikis: dict[str, Wiki]
) -> None:
    canonical = outlinks(server.url, "en", title=TARGET)
    redirect = next(p for p in wikis[EN].pages.values() if p.redirect_to == TARGET)
    assert outlinks(server.url, "en", title=redirect.title) == canonical
    assert outlinks(server.url, "en", title=TARGET.replace(" ", "_")) == canonical
    assert outlinks(server.url, "en", page_id=redirect.pageid) == canonical


def test_page_without_outlinks(server: ReplayServer, wikis: dict[str, Wiki]) -> None:
    result = outlinks(server.url, "en", title=NO_LINKS)
    assert result.page_id == wikis[EN].pages[NO_LINKS].pageid
    assert result.qids == []


def test_the_lang_picks_the_wiki(server: ReplayServer, wikis: dict[str, Wiki]) -> None:
    page = next(p for p in wikis[FR].pages.values() if p.links and p.redirect_to is None)
    result = outlinks(server.url, "fr", title=page.title)
    assert result.qids == expected_qids(wikis[FR], page.title)
    assert result.url.startswith(f"https://{FR}/wiki/")
    # Not a page of the en fixtures: the replay says so (HTTP 501), it does not fake a missing one.
    with pytest.raises(UpstreamError, match="HTTP 501"):
        outlinks(server.url, "en", title=page.title)


def test_requests_are_what_the_api_expects(server: ReplayServer, wikis: dict[str, Wiki]) -> None:
    server.requests.clear()
    outlinks(server.url, "en", title=MIXED)
    sent = server.requests.list()
    pages = -(-len(wikis[EN].pages[MIXED].links) // SMALL_LIMIT)
    assert len(sent) == 1 + pages  # resolve the title, then every page of links
    for req in sent:
        assert req["wiki"] == EN  # the Host header
        assert req["user_agent"] == DEFAULT_USER_AGENT
        assert req["params"]["format"] == "json"
        assert req["params"]["formatversion"] == "2"
        assert "redirects" in req["params"]
    links = sent[1:]
    assert all(r["params"]["generator"] == "links" for r in links)
    assert all(r["params"]["gpllimit"] == "max" for r in links)
    assert all(r["params"]["gplnamespace"] == "0" for r in links)
    assert "gplcontinue" not in links[0]["params"]
    assert all("gplcontinue" in r["params"] for r in links[1:])


def test_one_pooled_session_for_many_calls(server: ReplayServer) -> None:
    async def use(client: MediaWikiClient) -> set[int]:
        sessions = set()
        for title in (MIXED, TARGET, NO_LINKS):
            await client.outlinks("en", title=title)
            sessions.add(id(client._session))
        await asyncio.gather(*(client.outlinks("en", title=MIXED) for _ in range(5)))
        sessions.add(id(client._session))
        return sessions

    assert len(with_client(server.url, use)) == 1


# -- the client's mistakes: 400 ----------------------------------------------------------------


@pytest.mark.parametrize(
    "page",
    [
        {"title": "No such page in the replay fixtures"},
        {"title": "Bad <title>"},
        {"title": "Two|titles"},
        {"title": "   "},
        {"title": "x" * 100_000},
        {"page_id": 0},
        {"page_id": -3},
    ],
)
def test_missing_or_invalid_pages(server: ReplayServer, page: dict[str, Any]) -> None:
    with pytest.raises(PageNotFound) as info:
        outlinks(server.url, "en", **page)
    assert isinstance(info.value, InvalidInput)
    assert info.value.http_status == 400
    assert "does not exist on en.wikipedia.org" in str(info.value)


def test_missing_page_id_is_not_found(server: ReplayServer, wikis: dict[str, Wiki]) -> None:
    unused = min(wikis[EN].missing_pageids)
    with pytest.raises(PageNotFound, match=f"page id {unused} does not exist"):
        outlinks(server.url, "en", page_id=unused)


def test_a_page_not_in_the_fixtures_is_no_missing_page(server: ReplayServer) -> None:
    for page in ({"title": "Douglas Adams"}, {"page_id": 8091}):
        with pytest.raises(UpstreamError, match="HTTP 501") as info:
            outlinks(server.url, "en", **page)
        assert not isinstance(info.value, PageNotFound)


def test_a_wiki_url_without_the_api_is_an_upstream_error(server: ReplayServer) -> None:
    with pytest.raises(UpstreamError, match="HTTP 404") as info:
        outlinks(f"{server.url}/not-mediawiki", "en", title=TARGET)
    assert not isinstance(info.value, UnknownWiki)


@pytest.mark.parametrize("lang", ["xx-not-a-wiki", "zz"])
def test_unknown_wiki(server: ReplayServer, wikis: dict[str, Wiki], lang: str) -> None:
    assert not wikis[f"{lang}.wikipedia.org"].exists  # declared so by a fixture
    with pytest.raises(UnknownWiki) as info:
        outlinks(server.url, lang, title=TARGET)
    assert isinstance(info.value, InvalidInput)
    assert info.value.http_status == 400
    assert f"lang {lang!r}" in str(info.value)


@pytest.mark.parametrize("lang", ["", "EN", "en!", "-en", "en--x", "a" * 40, "en.wikipedia.org"])
def test_malformed_lang_fails_before_any_request(lang: str) -> None:
    # Nothing listens on this URL: a request would be an UpstreamError, not UnknownWiki.
    with pytest.raises(UnknownWiki, match="lang"):
        outlinks("http://127.0.0.1:9", lang, title=TARGET)


def test_title_xor_page_id(server: ReplayServer) -> None:
    with pytest.raises(PageNotFound):
        outlinks(server.url, "en")
    with pytest.raises(PageNotFound):
        outlinks(server.url, "en", title=TARGET, page_id=1)


def test_bad_wiki_url_is_refused() -> None:
    with pytest.raises(ValueError, match="wiki_url"):
        MediaWikiClient("ftp://example.org")


# -- MediaWiki's failures: 502 / 504 -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["error500", "malformed", "apierror", "reset"])
def test_faults_are_upstream_errors(server: ReplayServer, mode: str) -> None:
    server.set_fault(mode)
    with pytest.raises(UpstreamError) as info:
        outlinks(server.url, "en", title=TARGET)
    assert not isinstance(info.value, UpstreamTimeout)
    assert isinstance(info.value, UpstreamHTTPError)
    assert info.value.http_status == 502
    assert EN in str(info.value)
    server.set_fault("none")
    assert outlinks(server.url, "en", title=TARGET).title == TARGET


def test_slow_wiki_times_out_within_the_client_timeout(server: ReplayServer) -> None:
    server.set_fault("slow", delay_s=60)
    with pytest.raises(UpstreamTimeout) as info:
        outlinks(server.url, "en", title=TARGET, timeout_s=0.5)
    assert isinstance(info.value, UpstreamTimeoutError)
    assert info.value.http_status == 504
    server.set_fault("none")
    assert outlinks(server.url, "en", title=TARGET).title == TARGET


def test_the_timeout_covers_all_continuation_pages(server: ReplayServer) -> None:
    # Each answer alone is well within the timeout; the whole paged call is not.
    server.set_fault("slow", delay_s=0.3)
    with pytest.raises(UpstreamTimeout):
        outlinks(server.url, "en", title=MIXED, timeout_s=0.8)


def test_fault_in_the_middle_of_continuation(server: ReplayServer) -> None:
    server.set_fault("error500", after=2)
    with pytest.raises(UpstreamError, match="HTTP 500"):
        outlinks(server.url, "en", title=MIXED)


def test_a_fault_on_another_wiki_does_not_matter(
    server: ReplayServer, wikis: dict[str, Wiki]
) -> None:
    server.set_fault("reset", wiki=FR)
    assert outlinks(server.url, "en", title=TARGET).title == TARGET
    fr_title = next(iter(wikis[FR].pages))
    with pytest.raises(UpstreamError):
        outlinks(server.url, "fr", title=fr_title)


def test_nothing_listening_is_an_upstream_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(UpstreamError, match="cannot connect"):
            outlinks(f"http://127.0.0.1:{port}", "en", title=TARGET)


def test_errors_share_one_base() -> None:
    for cls in (PageNotFound, UnknownWiki, UpstreamError, UpstreamTimeout):
        assert issubclass(cls, MediaWikiError)
