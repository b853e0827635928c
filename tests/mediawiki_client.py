"""A test client of the MediaWiki replay server: an article's outlinks as QIDs, asked the way an
outlink-style isvc asks the Action API of Wikipedias (it was the sandbox's old serving helper;
the tests keep it to check the replay server and the recorder from an isvc's side).

    client = MediaWikiClient(wiki_url=os.environ.get("WIKI_URL"), timeout_s=5)
    result = await client.outlinks("en", title="Toni Morrison")   # or page_id=43165
    result.title, result.page_id, result.qids, result.url

With no `wiki_url` it asks https://<lang>.wikipedia.org; with one (the replay server, a proxy) every
request goes there with `Host: <lang>.wikipedia.org`, as Lift Wing reaches MediaWiki through its
internal API endpoint. It first resolves the page (title normalization, redirects, or the page
id), then pages through `generator=links` with `prop=pageprops` until no `continue` is left.
The whole call, continuation included, finishes within `timeout_s`.

Errors (all `MediaWikiError` with an `http_status`): `PageNotFound` and `UnknownWiki` are the
client's mistake (400, `InvalidInput`s); `UpstreamError` (502) and `UpstreamTimeout` (504) are
MediaWiki's failures (`UpstreamHTTPError`s). A language with
no Wikipedia is recognised as Wikimedia answers it: a redirect to the Incubator (or a 404 when
asking wikipedia.org directly).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

# Wikimedia's User-Agent policy: a client name, a way to find out more, the library.
DEFAULT_USER_AGENT = (
    "ml-sandbox-outlink-topic-model-transformer/0.1 "
    "(https://wikitech.wikimedia.org/wiki/Machine_Learning/LiftWing; "
    "local development replica of Lift Wing) "
    f"aiohttp/{aiohttp.__version__}"
)
_LANG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_MAX_LANG_LEN = 16
MAX_TITLE_BYTES = 255  # MediaWiki's limit, in UTF-8


class InvalidInput(ValueError):
    """The client's mistake (what an isvc answers with kserve's InvalidInput: 400)."""


class UpstreamHTTPError(Exception):
    """A dependency failed: 502, or 504 when it did not answer in time."""

    http_status = 502


class UpstreamTimeoutError(UpstreamHTTPError):
    http_status = 504


class MediaWikiError(Exception):
    """Base of the client's errors; `http_status` is what the isvc should answer."""

    http_status = 500

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)
        self.reason = message  # what kserve's InvalidInput handler reports

    def __str__(self) -> str:
        return self.reason


class PageNotFound(MediaWikiError, InvalidInput):
    """The page does not exist: missing, an invalid title, a bad page id."""

    http_status = 400


class UnknownWiki(MediaWikiError, InvalidInput):
    """`lang` names no Wikipedia."""

    http_status = 400


class UpstreamError(MediaWikiError, UpstreamHTTPError):
    """MediaWiki failed: HTTP 5xx, a body that is not the API's JSON, an API error, a dropped
    connection."""

    http_status = 502


class UpstreamTimeout(UpstreamError, UpstreamTimeoutError):
    """MediaWiki did not answer (all continuation pages) within the client's timeout."""

    http_status = 504


@dataclass(frozen=True)
class OutlinkResult:
    lang: str
    title: str  # after normalization and redirects
    page_id: int
    qids: list[str] = field(default_factory=list)  # Wikidata items of the outlinks, in API order

    @property
    def wiki(self) -> str:
        return f"{self.lang}.wikipedia.org"

    @property
    def url(self) -> str:
        return f"https://{self.wiki}/wiki/{self.title.replace(' ', '_')}"


def check_lang(lang: object) -> str:
    """`lang` if it can name a Wikipedia (en, simple, zh-min-nan); else UnknownWiki."""
    if not isinstance(lang, str) or not lang:
        raise UnknownWiki("lang must be a Wikipedia language code like en, fr or zh-min-nan")
    if len(lang) > _MAX_LANG_LEN or not _LANG.fullmatch(lang):
        raise UnknownWiki(
            f"lang {lang[:40]!r} is not a Wikipedia language code (like en, fr or zh-min-nan)"
        )
    return lang


class MediaWikiClient:
    """One pooled aiohttp session per client (the transformer keeps one client per process),
    created lazily inside the running event loop."""

    def __init__(
        self,
        wiki_url: str | None = None,
        timeout_s: float = 5.0,
        user_agent: str = DEFAULT_USER_AGENT,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self.wiki_url = (wiki_url or "").strip().rstrip("/") or None
        if self.wiki_url is not None and not self.wiki_url.startswith(("http://", "https://")):
            raise ValueError(f"wiki_url {wiki_url!r} must be an http(s):// URL")
        self.timeout_s = timeout_s
        self.user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- HTTP ----------------------------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers={"User-Agent": self.user_agent, "Accept": "application/json"},
            )
            self._loop = loop
        return self._session

    def _endpoint(self, wiki: str) -> tuple[str, dict[str, str]]:
        if self.wiki_url is None:
            return f"https://{wiki}/w/api.php", {}
        return f"{self.wiki_url}/w/api.php", {"Host": wiki}

    async def _request(self, wiki: str, params: dict[str, str]) -> tuple[int, bytes, str | None]:
        url, headers = self._endpoint(wiki)
        session = self._get_session()
        for attempt in (1, 2):
            try:
                async with session.get(
                    url, params=params, headers=headers, allow_redirects=False
                ) as resp:
                    return resp.status, await resp.read(), resp.headers.get("Location")
            except aiohttp.ServerDisconnectedError:
                # A pooled keep-alive connection the server had closed: retry once on a new one.
                if attempt == 2:
                    raise
                log.debug("%s closed the connection; retrying once", wiki)
        raise AssertionError("unreachable")

    async def _query(self, wiki: str, params: dict[str, str]) -> dict[str, Any]:
        """One API request: its JSON body, or the error it stands for."""
        query = {"action": "query", "format": "json", "formatversion": "2", **params}
        try:
            status, body, location = await self._request(wiki, query)
        except TimeoutError:
            raise  # the caller knows the whole budget
        except aiohttp.ClientConnectorError as e:
            raise UpstreamError(f"cannot connect to MediaWiki for {wiki}: {e}") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as e:
            raise UpstreamError(
                f"MediaWiki ({wiki}) closed the connection without a complete answer: {e}"
            ) from None
        except aiohttp.ClientError as e:
            raise UpstreamError(f"request to MediaWiki ({wiki}) failed: {e}") from None
        lang = wiki.split(".")[0]
        # Wikimedia redirects a language with no Wikipedia to the Incubator (missing.php).
        incubator = 300 <= status < 400 and "incubator.wikimedia.org" in (location or "")
        if incubator or (status == 404 and self.wiki_url is None):
            raise UnknownWiki(f"there is no Wikipedia in lang {lang!r} ({wiki} does not exist)")
        if 300 <= status < 400:
            raise UpstreamError(
                f"MediaWiki ({wiki}) answered HTTP {status} redirecting to {location}: "
                "WIKI_URL should be the final URL"
            )
        if status == 404:
            raise UpstreamError(
                f"{self.wiki_url}/w/api.php answered HTTP 404 for {wiki}: "
                "WIKI_URL is not a MediaWiki API"
            )
        if status != 200:
            raise UpstreamError(f"MediaWiki ({wiki}) answered HTTP {status}")
        try:
            doc = json.loads(body)
        except json.JSONDecodeError:
            raise UpstreamError(
                f"MediaWiki ({wiki}) sent a body that is not JSON: {body[:80]!r}"
            ) from None
        if not isinstance(doc, dict):
            raise UpstreamError(f"MediaWiki ({wiki}) sent JSON that is not an API response")
        error = doc.get("error")
        if error is not None:
            code = error.get("code", "?") if isinstance(error, dict) else "?"
            info = error.get("info", "") if isinstance(error, dict) else str(error)
            raise UpstreamError(f"MediaWiki API error on {wiki}: {code}: {info}")
        return doc

    @staticmethod
    def _pages(doc: dict[str, Any], wiki: str) -> list[dict[str, Any]]:
        query = doc.get("query", {})
        pages = query.get("pages", []) if isinstance(query, dict) else None
        if not isinstance(pages, list) or not all(isinstance(p, dict) for p in pages):
            raise UpstreamError(f"MediaWiki ({wiki}) sent an unexpected `query` shape")
        return pages

    # -- outlinks ------------------------------------------------------------------------------

    async def _resolve(self, wiki: str, title: str | None, page_id: int | None) -> tuple[str, int]:
        """The page's (title, page id) after normalization and redirects, or PageNotFound."""
        if title is not None:
            # U+001F first: the value is one title even if it holds the `|` separator.
            params = {"titles": f"\x1f{title}" if "|" in title else title}
            asked = f"page {title!r}"
        else:
            params = {"pageids": str(page_id)}
            asked = f"page id {page_id}"
        doc = await self._query(wiki, {**params, "redirects": "1"})
        pages = self._pages(doc, wiki)
        page = pages[0] if pages else {"missing": True}
        if page.get("invalid"):
            reason = page.get("invalidreason", "invalid title")
            raise PageNotFound(f"{asked} does not exist on {wiki}: {reason}")
        pageid, resolved = page.get("pageid"), page.get("title")
        if page.get("missing") or not isinstance(pageid, int) or not isinstance(resolved, str):
            raise PageNotFound(f"{asked} does not exist on {wiki}")
        return resolved, pageid

    async def _outlink_qids(self, wiki: str, page_id: int) -> list[str]:
        base = {
            "generator": "links",
            "pageids": str(page_id),
            "redirects": "1",
            "prop": "pageprops",
            "ppprop": "wikibase_item",
            "gplnamespace": "0",
            "gpllimit": "max",
        }
        qids: dict[str, None] = {}
        params, seen = base, set()
        while True:  # bounded by the timeout and the repeated-continuation check
            doc = await self._query(wiki, params)
            for page in self._pages(doc, wiki):
                props = page.get("pageprops")
                qid = props.get("wikibase_item") if isinstance(props, dict) else None
                if isinstance(qid, str) and qid:
                    qids[qid] = None
            cont = doc.get("continue")
            if not cont:
                return list(qids)
            if not isinstance(cont, dict) or not all(isinstance(v, str) for v in cont.values()):
                raise UpstreamError(f"MediaWiki ({wiki}) sent an unexpected `continue` shape")
            key = tuple(sorted(cont.items()))
            if key in seen:
                raise UpstreamError(f"MediaWiki ({wiki}) repeated a continuation: {cont}")
            seen.add(key)
            params = {**base, **cont}

    async def outlinks(
        self, lang: str, *, title: str | None = None, page_id: int | None = None
    ) -> OutlinkResult:
        """The Wikidata items of the namespace-0 outlinks of one article (by title or page id)."""
        wiki = f"{check_lang(lang)}.wikipedia.org"
        if (title is None) == (page_id is None):
            raise PageNotFound("give either a page title or a page id")
        if title is not None and (not isinstance(title, str) or not title.strip()):
            raise PageNotFound(f"page {title!r} does not exist on {wiki}: the title is empty")
        if title is not None and len(title.encode()) > MAX_TITLE_BYTES:
            raise PageNotFound(
                f"page {title[:60]!r}... does not exist on {wiki}: titles are at most "
                f"{MAX_TITLE_BYTES} bytes"
            )
        if page_id is not None and (isinstance(page_id, bool) or not isinstance(page_id, int)):
            raise PageNotFound(f"page id {page_id!r} does not exist on {wiki}: not a number")
        if page_id is not None and page_id <= 0:
            raise PageNotFound(f"page id {page_id} does not exist on {wiki}")
        try:
            async with asyncio.timeout(self.timeout_s):
                resolved, pageid = await self._resolve(wiki, title, page_id)
                qids = await self._outlink_qids(wiki, pageid)
        except TimeoutError:
            raise UpstreamTimeout(
                f"MediaWiki ({wiki}) did not answer within {self.timeout_s:g}s"
            ) from None
        return OutlinkResult(lang=lang, title=resolved, page_id=pageid, qids=qids)

    async def close(self) -> None:
        session, loop = self._session, self._loop
        # A session of another (finished) event loop cannot be closed from this one.
        if session is not None and not session.closed and loop is asyncio.get_running_loop():
            await session.close()
        self._session = None
        self._loop = None
