"""outlink-topic-model transformer: an article's outlinks from MediaWiki, then the predictor.

A plain kserve isvc on production's pins (kserve 0.14.1, mwapi 0.6.1, aiohttp), with today's
production request contract (wikimedia/machinelearning-liftwing-inference-services@bce944c:
src/models/outlink_topic_model/model_server/model.py), split as production ran it until 2025:
this transformer validates the request and gathers the outlinks' Wikidata items, the predictor
(`--predictor_host`) runs the model on them.

Request: {"lang": "en" | "wiki_id": "enwiki", "page_title": "..." | "page_id": 123,
          "revision_id": 456 (optional), "threshold": 0.5 (a float), "debug": false}
A client may send "features_str" (space-separated QIDs) instead of having them fetched.

MediaWiki is WIKI_URL (production's API proxy; the sandbox's replay server) with
`Host: <lang>.wikipedia.org`, or https://<lang>.wikipedia.org when WIKI_URL is unset.
Env: WIKI_URL, AIOHTTP_CLIENT_TIMEOUT (seconds, default 5), MW_API_MAX_RETRIES (default 2),
MW_API_RETRY_BASE_DELAY (seconds, default 0.5; doubled per retry), MODEL_NAME.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import mwapi
import mwapi.errors
from fastapi import HTTPException
from kserve import Model, ModelServer, model_server
from kserve.errors import InferenceError, InvalidInput

WIKIS_TSV = Path(__file__).resolve().parent / "wikis.tsv"
USER_AGENT = "WMF ML Team outlink-topic-model svc"
OUTLINKS_LIMIT = 1000  # Wikidata items gathered per article, as production
LINKS_PER_REQUEST = 500  # gpllimit: the most an ordinary client may ask for
TITLES_PER_REQUEST = 50  # MediaWiki's cap on titles= values
TITLES_MAX_BYTES = 6000  # keeps a titles= query string well under URL length limits
# A page or revision id, as JSON number or decimal string.
ID = re.compile(r"[1-9][0-9]{0,11}")

# MediaWiki API error codes that mean the client asked for something that is not there.
NOT_THERE = frozenset({"nosuchrevid", "missingtitle", "invalidtitle", "nosuchpageid"})
NOT_THERE_OR_HIDDEN = NOT_THERE | {"permissiondenied"}
# ... and those worth asking again.
TRANSIENT_CODES = frozenset({"maxlag", "ratelimited", "readonly"})
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})

T = TypeVar("T")


def read_wikis(path: Path = WIKIS_TSV) -> dict[str, str]:
    """wiki_id -> Wikipedia subdomain."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = csv.reader((line for line in f if not line.startswith("#")), delimiter="\t")
        return {row[0]: row[1] for row in rows if len(row) >= 2}


def api_error_code(exc: BaseException) -> str | None:
    """The MediaWiki error code of a failed mwapi call, if the wiki answered with one.

    mwapi 0.6.1's async session raises an API error as RequestError("<code>: <info> -- ...")
    without a `code` attribute, so the code is read back from the message's first token.
    """
    code = getattr(exc, "code", None)
    if code:
        return str(code)
    head, sep, _ = str(exc).partition(":")
    if sep and re.fullmatch(r"[A-Za-z0-9_-]+", head.strip()):
        return head.strip()
    return None


def is_transient(exc: BaseException) -> bool:
    """Timeouts, lost connections, 429/5xx and MediaWiki's transient error codes."""
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ClientConnectionError):
        return True
    code = api_error_code(exc)
    if code:
        return code in TRANSIENT_CODES or code.startswith("internal_api_error")
    http = exc if isinstance(exc, aiohttp.ClientResponseError) else exc.__cause__
    return isinstance(http, aiohttp.ClientResponseError) and http.status in TRANSIENT_STATUS


def title_batches(titles: list[str]) -> list[list[str]]:
    """Titles in groups of at most TITLES_PER_REQUEST and TITLES_MAX_BYTES (with separators)."""
    batches: list[list[str]] = []
    size = 0
    for title in titles:
        cost = len(title.encode("utf-8")) + 3  # "|" is sent as %7C
        if batches and len(batches[-1]) < TITLES_PER_REQUEST and size + cost <= TITLES_MAX_BYTES:
            batches[-1].append(title)
            size += cost
        else:
            batches.append([title])
            size = cost
    return batches


def as_id(value: Any, field: str) -> int | str:
    """A page or revision id as given (a number, or digits in a string), or a 400."""
    if isinstance(value, bool) or not (
        (isinstance(value, int) and value > 0) or (isinstance(value, str) and ID.fullmatch(value))
    ):
        raise InvalidInput(f'Expected "{field}" to be a positive integer.')
    return value


class OutlinkTransformer(Model):
    def __init__(self, name: str, predictor_host: str):
        super().__init__(name)
        self.predictor_host = predictor_host
        self.wiki_url = os.environ.get("WIKI_URL") or None
        self.timeout = float(os.environ.get("AIOHTTP_CLIENT_TIMEOUT", "5"))
        self.max_retries = int(os.environ.get("MW_API_MAX_RETRIES", "2"))
        self.retry_delay = float(os.environ.get("MW_API_RETRY_BASE_DELAY", "0.5"))
        self.wikis = read_wikis()
        self.langs = frozenset(self.wikis.values())
        self._http: aiohttp.ClientSession | None = None
        self.ready = True

    # MediaWiki

    def mediawiki(self, lang: str) -> mwapi.AsyncSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout), raise_for_status=True
            )
        # mwapi 0.6.1 gives each request its own timeout (300 s when none is given), which
        # replaces the aiohttp session's: AIOHTTP_CLIENT_TIMEOUT is passed to it as well.
        session = mwapi.AsyncSession(
            host=self.wiki_url or f"https://{lang}.wikipedia.org",
            user_agent=USER_AGENT,
            session=self._http,
            timeout=self.timeout,
        )
        session.headers["Host"] = f"{lang}.wikipedia.org"
        return session

    async def with_retries(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        for attempt in range(self.max_retries + 1):
            try:
                return await call()
            except Exception as exc:
                if attempt == self.max_retries or not is_transient(exc):
                    raise
                delay = self.retry_delay * 2**attempt
                logging.warning("MediaWiki: %s failed (%r); retry in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def page_id_of(self, lang: str, title: str) -> int:
        """The page id of a title, as `action=query&titles=` gives it (-1 for a missing page)."""
        session = self.mediawiki(lang)
        doc = await self.with_retries(
            lambda: session.get(action="query", titles=title), f"page id of {title!r} ({lang})"
        )
        pages = doc.get("query", {}).get("pages") or {}
        if not pages:
            raise InvalidInput(f"MediaWiki knows no page for the title {title!r} on {lang}.")
        return int(next(iter(pages)))

    async def outlinks_of_page(self, lang: str, page_id: int | str) -> set[str]:
        """The Wikidata items of the page's current links to articles (ns 0, not red links)."""
        session = self.mediawiki(lang)

        async def gather() -> set[str]:
            qids: set[str] = set()
            pages = await session.get(
                action="query",
                generator="links",
                redirects="",
                prop="pageprops",
                ppprop="wikibase_item",
                gplnamespace=0,
                gpllimit=LINKS_PER_REQUEST,
                format="json",
                formatversion=2,
                continuation=True,
                pageids=page_id,
            )
            async for doc in pages:
                if "query" not in doc:  # a page without links, or no such page
                    logging.info("no outlinks for page %s (%s): %r", page_id, lang, doc)
                    break
                for page in doc["query"].get("pages", []):
                    qid = page.get("pageprops", {}).get("wikibase_item")
                    if page.get("ns") == 0 and "missing" not in page and qid:
                        qids.add(qid)
                if len(qids) > OUTLINKS_LIMIT:
                    break
            return qids

        return await self.with_retries(gather, f"outlinks of page {page_id} ({lang})")

    async def outlinks_of_revision(self, lang: str, revision_id: int | str) -> set[str]:
        """The Wikidata items of the links a given revision has (parse, then pageprops)."""
        session = self.mediawiki(lang)
        try:
            parsed = await self.with_retries(
                lambda: session.get(
                    action="parse", oldid=revision_id, prop="links", format="json", formatversion=2
                ),
                f"links of revision {revision_id} ({lang})",
            )
        except (mwapi.errors.RequestError, mwapi.errors.APIError) as exc:
            code = api_error_code(exc)
            if code in NOT_THERE_OR_HIDDEN:
                raise HTTPException(
                    status_code=400,
                    detail=(
                        f"Cannot fetch revision {revision_id} on {lang}.wikipedia.org: "
                        f"MediaWiki API error '{code}'."
                    ),
                ) from exc
            raise
        links = parsed.get("parse", {}).get("links", [])
        titles = [link["title"] for link in links if link.get("ns") == 0 and link.get("exists")]
        qids: set[str] = set()
        for batch in title_batches(titles[:OUTLINKS_LIMIT]):
            doc = await self.with_retries(
                lambda batch=batch: session.get(
                    action="query",
                    titles="|".join(batch),
                    prop="pageprops",
                    ppprop="wikibase_item",
                    format="json",
                    formatversion=2,
                ),
                f"Wikidata items of revision {revision_id}'s links ({lang})",
            )
            for page in doc.get("query", {}).get("pages", []):
                qid = page.get("pageprops", {}).get("wikibase_item")
                if qid:
                    qids.add(qid)
        return qids

    # The request

    def lang_of(self, request: dict[str, Any]) -> str:
        if "lang" not in request and "wiki_id" in request:
            wiki_id = request["wiki_id"]
            lang = self.wikis.get(wiki_id) if isinstance(wiki_id, str) else None
            if lang is None:
                raise InvalidInput(f"Unknown wiki_id: {wiki_id}")
            return lang
        if "lang" not in request:
            raise InvalidInput('Missing "lang" in input data.')
        lang = request["lang"]
        if not isinstance(lang, str):
            raise InvalidInput('Expected "lang" to be a string.')
        if lang not in self.langs:
            raise InvalidInput(f"Unsupported lang: {lang!r} is not the code of a Wikipedia.")
        return lang

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> dict:
        if isinstance(payload, bytes):  # a body sent without a JSON content type
            try:
                payload = json.loads(payload.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise InvalidInput("Please verify that request input is a json dict") from None
        if not isinstance(payload, dict):
            raise InvalidInput("Please verify that request input is a json dict")
        if "event" in payload:
            raise InvalidInput("Events (the EventGate stream input) are not served here.")
        lang = self.lang_of(payload)

        title, page_id = payload.get("page_title"), payload.get("page_id")
        if title and page_id:
            raise InvalidInput(
                "Detected both `page_title` and `page_id` in the request. "
                "Please pass only one of those."
            )
        if not title and not page_id:
            raise InvalidInput("You must pass either `page_title` or `page_id`.")
        if isinstance(title, int) and not isinstance(title, bool):
            title = str(title)  # a title such as "1984"; production looks it up as it is
        if title and not isinstance(title, str):
            raise InvalidInput('Expected "page_title" to be a string.')
        if page_id:
            page_id = as_id(page_id, "page_id")

        threshold = payload.get("threshold", 0.5)
        if not isinstance(threshold, float):
            raise InvalidInput('Expected "threshold" to be a float')
        debug = bool(payload.get("debug", False))
        if debug:
            threshold = 0.0  # every topic, with its score
        revision_id = payload.get("revision_id")
        if revision_id is not None:
            revision_id = as_id(revision_id, "revision_id")
        features = payload.get("features_str")
        if features is not None and (not isinstance(features, str) or "\n" in features):
            raise InvalidInput('Expected "features_str" to be a string of space-separated QIDs.')

        if title:
            # As production: a failed title lookup is the stock server's 500 for the exception.
            page_id = await self.page_id_of(lang, title)
        try:
            if features is None:
                if revision_id is not None:
                    qids = await self.outlinks_of_revision(lang, revision_id)
                else:
                    qids = await self.outlinks_of_page(lang, page_id)
                features = " ".join(sorted(qids))
        except (HTTPException, InvalidInput):
            raise
        except Exception as exc:
            # The cause is in the log (the replay server's "not in the fixtures" included); the
            # client gets production's message.
            logging.exception("MediaWiki failed for %s (%s)", title or page_id, lang)
            raise InferenceError(
                "An unexpected error has occurred while trying to get outlinks from MW API. "
                "Please contact the ML team for more info."
            ) from exc
        return {
            "features_str": features,
            "page_id": page_id,
            "page_title": title or None,
            "lang": lang,
            "threshold": threshold,
            "debug": debug,
        }


if __name__ == "__main__":
    args, _ = model_server.parser.parse_known_args()
    name = os.environ.get("MODEL_NAME") or args.model_name or "outlink-topic-model"
    ModelServer(workers=1).start([OutlinkTransformer(name, args.predictor_host)])
