"""The MediaWiki replay server: the wikis' APIs offline, with fault injection, in three modes.

- emulate (the default): the Action API answered from fixture wikis (`api.py`, `fixtures.py`);
- replay (`--replay DIR`): recorded exchanges answered byte for byte (`recordings.py`), with the
  emulator as well when `--emulate` or `--fixtures` is given (recordings win);
- record (`--record DIR`): every request forwarded to the real wiki over HTTPS (`upstream.py`)
  and its answer stored in DIR.

A request that neither a recording nor the emulator's fixtures can answer gets HTTP 501 with an
API error `replay-not-in-fixtures` that names the normalized request and how to record it;
it is never answered as a missing page.

Routes:
  GET|POST /w/api.php          the Action API of the wiki named by the Host header
                               (en.wikipedia.org). A wiki the fixtures declare nonexistent is
                               answered as Wikimedia does (missing.php): a language with no
                               Wikipedia (xx.wikipedia.org) is redirected (302) to the Incubator;
                               a host naming no Wikimedia project gets 404 "No wiki found".
  *    /w/rest.php/...         the REST API: recorded, or emulated for v1/revision/{id}/html and
                               v1/page/{title}/html (Parsoid HTML, rest.py).
  *    /api/rest_v1/...        Wikimedia's REST API: recorded, or emulated for page/summary.
  GET  /__replay__/health      {"status": "ok", "mode": ..., "wikis": {...}, "recordings": {...},
                               "fault": ..., "max_limit": N}
  GET  /__replay__/fault       the faults in force
  POST /__replay__/fault       set one: {"mode": "slow", "delay_s": 10, "wiki": "en.wikipedia.org",
                               "after": 0, "times": null}; {"mode": "none"} clears them.
  GET  /__replay__/requests    the last API requests (wiki, method, params, User-Agent, fault);
  DELETE /__replay__/requests  forgets them.
  GET|DELETE /__replay__/misses  the requests answered `replay-not-in-fixtures` (diagnose.py).
  POST /v1/events              EventGate: accepts events (201) and keeps them;
  GET|DELETE /__replay__/events  the events it accepted (`?stream=` filters).
  GET  /{domain}/v1/page/summary/{title}  the page summary through the REST gateway.

Run it with `ml-sandbox mediawiki` or `python -m sandbox.mediawiki --port 8090`; point an isvc at
it with WIKI_URL=http://127.0.0.1:8090. From Python: `ReplayServer(port=0).start()` serves in a
background thread (see its docstring).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import ssl
import sys
import threading
import urllib.parse
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from sandbox.mediawiki import api, rest
from sandbox.mediawiki.faults import Fault, FaultMode, FaultSpecError, FaultState
from sandbox.mediawiki.fixtures import FixtureError, Wiki, load_wikis
from sandbox.mediawiki.recordings import (
    Recording,
    RecordingStore,
    RequestKey,
    normalize,
    redacted,
)
from sandbox.mediawiki.upstream import (
    DEFAULT_ORIGIN,
    DEFAULT_TIMEOUT_S,
    WIKIMEDIA_HOST,
    Upstream,
    UpstreamFailure,
)

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090
WIKIS_KEY = web.AppKey("wikis", dict[str, Wiki])
FAULTS_KEY = web.AppKey("faults", FaultState)
MAX_LIMIT_KEY = web.AppKey("max_limit", int)
RECORDINGS_KEY = web.AppKey("recordings", RecordingStore)
UPSTREAM_KEY = web.AppKey("upstream", Upstream)
EMULATE_KEY = web.AppKey("emulate", bool)
MAX_BODY_KEY = web.AppKey("max_body", int)
# Request bodies above this are 413 (aiohttp's default; MediaWiki's POSTs are forms of a few KB).
MAX_BODY_BYTES = 1024 * 1024
# The request line and each header line: longer is 414 / 431 (aiohttp's default limit). The
# parser itself reads lines up to MAX_READ_LINE, so that a long line is read whole and answered
# as JSON rather than cut off with a connection reset.
MAX_LINE = 8190
MAX_READ_LINE = 4 * 1024 * 1024
MAX_DRAIN_BYTES = 64 * 1024 * 1024
NOT_IN_FIXTURES = "replay-not-in-fixtures"
NOT_IN_FIXTURES_STATUS = 501
HOW_TO_RECORD = (
    "Record it once with internet access: start `ml-sandbox mediawiki --record DIR` (or "
    "`python -m sandbox.mediawiki --record DIR`), point the isvc at it (WIKI_URL=<its URL>), "
    "send the same request, commit DIR, and serve it with `--replay DIR`. For a synthetic "
    "case, add the page to an emulator fixture instead (--fixtures DIR; see "
    "sandbox/mediawiki/README.md)."
)

_ERROR_500_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Wikimedia Error</title></head>
<body><h1>Error</h1><p>Our servers are currently under maintenance or experiencing a technical
issue. Please try again in a few minutes.</p><p>(replay server: injected error500 fault)</p>
</body></html>
"""
_NO_WIKI_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>No wiki found</title></head>
<body><h1>No wiki found</h1><p>Sorry, we were not able to work out what wiki you were trying to
view. Please specify a valid Host header.</p><p>(replay server wikis: {wikis})</p></body></html>
"""
_MOVED_PAGE = """<!DOCTYPE html>
<html><body><a href="{url}">The document has moved.</a></body></html>
"""
# A language with no Wikipedia: Wikimedia redirects it to the Incubator (missing.php).
_NO_LANGUAGE = re.compile(
    r"([a-z0-9-]+)\.(wikipedia|wiktionary|wikibooks|wikinews|wikiquote|wikivoyage)\.org"
)
_INCUBATOR_CODES = {
    "wikipedia": "p",
    "wiktionary": "t",
    "wikibooks": "b",
    "wikinews": "n",
    "wikiquote": "q",
    "wikivoyage": "y",
}
_MALFORMED_BODY = '{"batchcomplete": true, "query": {"pages": [{"pageid": 1, "ns": 0, "ti<html>'


class RequestLog:
    """The last API requests the server received, for tests and debugging (thread-safe)."""

    def __init__(self, size: int = 200) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries.append(entry)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


REQUESTS_KEY = web.AppKey("requests", RequestLog)
# Requests answered `replay-not-in-fixtures`: what `predict` reports when an isvc fails on one.
MISSES_KEY = web.AppKey("misses", RequestLog)
EVENTS_KEY = web.AppKey("events", RequestLog)  # what EventGate was sent


def _wiki_host(request: web.Request) -> str:
    """The wiki the Host header names, without its port (which is ignored, even a bad one)."""
    raw = request.headers.get("Host", "").strip()
    host = raw[: raw.find("]") + 1] if raw.startswith("[") else raw.split(":", 1)[0]
    return host.lower().rstrip(".")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Text that came in as bytes that are not UTF-8 (a header, a query string) holds lone
    # surrogates: written as JSON escapes (`\udcff`), so the answer is always valid UTF-8 JSON.
    text = json.dumps(body, ensure_ascii=False)
    return web.Response(
        body=text.encode("utf-8", "backslashreplace"),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def _own_error(
    status: int, code: str, info: str, headers: dict[str, str] | None = None
) -> web.Response:
    """An answer of the server's own (not a wiki's): JSON in MediaWiki's error envelope."""
    return _json({"error": {"code": code, "info": info}, "servedby": "replay"}, status, headers)


async def _drain(request: web.Request) -> None:
    """Read (and drop) the rest of a refused body, up to a bound, so that closing the connection
    does not reset it before the client has read the answer."""
    left = MAX_DRAIN_BYTES
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5):
            while left > 0 and (chunk := await request.content.readany()):
                left -= len(chunk)


@web.middleware
async def _json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """aiohttp's own answers (404 no route, 405, 413 over the body limit) as JSON; an exception
    in a handler is a JSON 500 (and one traceback in the log), never a plain-text page."""
    if len(request.raw_path) > MAX_LINE:
        return _own_error(
            414,
            "replay-uri-too-long",
            f"the request target is {len(request.raw_path)} bytes; the server takes {MAX_LINE} "
            "(send long parameters as a POST form)",
        )
    for name, value in request.raw_headers:
        if len(name) + len(value) > MAX_LINE:
            return _own_error(
                431, "replay-header-too-large", f"a header line is longer than {MAX_LINE} bytes"
            )
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        headers = {k: v for k, v in e.headers.items() if k.lower() in ("allow", "retry-after")}
        code = f"replay-http-{e.status}"
        info = e.text if e.text and not e.text.startswith(f"{e.status}:") else e.reason
        if e.status == 405:
            allowed = headers.get("Allow", "")
            info = f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
        elif e.status == 404:
            info = (
                f"no such route: {request.path} (the wikis' APIs are /w/api.php, /w/rest.php/..., "
                "/api/rest_v1/...; the server's own are /__replay__/...)"
            )
        elif e.status == 413:
            info = f"the request body is larger than {request.app[MAX_BODY_KEY]} bytes"
            await _drain(request)
        return _own_error(e.status, code, info, headers)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        log.exception("internal error answering %s %s", request.method, request.path)
        return _own_error(
            500, "replay-internal-error", "internal error in the replay server (see its log)"
        )


def _api_json(text: str, headers: dict[str, str] | None = None) -> web.Response:
    """An Action API answer as MediaWiki sends it (JSON text, `application/json; charset=utf-8`)."""
    return web.Response(
        text=text, content_type="application/json", charset="utf-8", headers=headers
    )


async def _inject(
    request: web.Request, fault: Fault, params: dict[str, str]
) -> web.StreamResponse | None:
    """The response for an injected fault, or None to answer normally."""
    if fault.mode is FaultMode.SLOW:
        await asyncio.sleep(fault.delay_s)
        return None
    if fault.mode is FaultMode.ERROR500:
        return web.Response(text=_ERROR_500_PAGE, status=500, content_type="text/html")
    if fault.mode is FaultMode.MALFORMED:
        return web.Response(text=_MALFORMED_BODY, content_type="application/json")
    if fault.mode is FaultMode.APIERROR:
        code = "internal_api_error_DBConnectionError"
        body = api.error_body(
            _wiki_host(request),
            code,
            "[replay] Exception caught: Cannot access the database (injected apierror fault).",
            api.formatversion_of(params),
        )
        return _api_json(api.encode(body, params), {"MediaWiki-API-Error": code})
    if fault.mode is FaultMode.RESET:
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError  # nothing to answer on a dropped connection
    return None


def _no_wiki(host: str, known: list[str]) -> web.Response:
    """What Wikimedia answers for a host with no wiki: a language missing from a project is
    redirected (302) to the Incubator; anything else is 404 "No wiki found"."""
    missing = _NO_LANGUAGE.fullmatch(host)
    if missing is None:
        page = _NO_WIKI_PAGE.format(wikis=", ".join(sorted(known)))
        return web.Response(text=page, status=404, content_type="text/html")
    lang, project = missing.groups()
    url = (
        f"https://incubator.wikimedia.org/wiki/W{_INCUBATOR_CODES[project]}/"
        f"{urllib.parse.quote(lang)}?goto=mainpage"
    )
    return web.Response(
        text=_MOVED_PAGE.format(url=url),
        status=302,
        content_type="text/html",
        headers={"Location": url},
    )


def not_in_fixtures_body(key: RequestKey, reason: str, formatversion: int = 2) -> dict[str, Any]:
    """The error envelope of a request the server cannot answer from its fixtures."""
    info = (
        f"This request is not in the fixtures of the MediaWiki replay server: {reason}. "
        f"Request (normalized): {key.describe()}. It is not answered as a missing page. "
        + HOW_TO_RECORD
    )
    body = api.error_body(key.host, NOT_IN_FIXTURES, info, formatversion)
    body["error"]["request"] = key.to_json()
    body["error"]["record"] = HOW_TO_RECORD
    return body


def _not_in_fixtures(
    request: web.Request, key: RequestKey, reason: str, params: dict[str, str]
) -> web.Response:
    log.warning(
        "NOT IN THE FIXTURES (%s): %s -- record it with --record DIR", reason, key.describe()
    )
    request.app[MISSES_KEY].add(
        {"request": key.describe(), "reason": reason, **key.to_json(), "record": HOW_TO_RECORD}
    )
    body = not_in_fixtures_body(key, reason, api.formatversion_of(params))
    return _json(
        body,
        NOT_IN_FIXTURES_STATUS,
        {"MediaWiki-API-Error": NOT_IN_FIXTURES, "X-Replay-Error": NOT_IN_FIXTURES},
    )


def _recorded(rec: Recording) -> web.Response:
    """A recorded answer, byte for byte."""
    headers = {name.title(): value for name, value in rec.headers.items()}
    if rec.content_type:
        headers["Content-Type"] = rec.content_type
    return web.Response(body=rec.body, status=rec.status, headers=headers)


class BadRequest(Exception):
    """The request cannot be read; the message says why (answered 400)."""


async def _read_params(request: web.Request) -> tuple[list[tuple[str, str]], bytes]:
    """The request's parameters (query string, then a form body) in order, and its raw body."""
    items = list(request.query.items())
    body = b""
    if request.method not in ("GET", "HEAD") and request.can_read_body:
        body = await request.read()
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            try:
                form = await request.post()
            except (ValueError, LookupError, UnicodeDecodeError) as e:
                raise BadRequest(f"the {request.content_type} body cannot be read: {e}") from e
            items += [(k, v) for k, v in form.items() if isinstance(v, str)]
    return items, body


async def _record(
    request: web.Request, key: RequestKey, body: bytes, entry: dict[str, Any]
) -> web.Response:
    upstream, store = request.app[UPSTREAM_KEY], request.app[RECORDINGS_KEY]
    host = key.host
    if not upstream.allows(host):
        entry["answered_by"] = "refused"
        return _json(
            {
                "error": {
                    "code": "replay-not-a-wiki",
                    "info": f"{host!r} is not a Wikimedia wiki, so the recorder does not forward "
                    "it (give --upstream ORIGIN to record from another MediaWiki)",
                },
                "servedby": "replay",
            },
            404,
        )
    raw_path = request.raw_path
    if "domain" in request.match_info:
        # The REST gateway's /{domain}/v1/... is the wiki's own /api/rest_v1/...
        raw_path = "/api/rest_v1/" + raw_path.split("/v1/", 1)[1]
    try:
        answer = await upstream.forward(request.method, host, raw_path, dict(request.headers), body)
    except UpstreamFailure as e:
        entry["answered_by"] = "upstream-failed"
        log.warning("record: %s: %s", key.describe(), e)
        body_json = api.error_body(host, e.code, f"[replay recorder] {e}")
        return _json(body_json, e.status, {"MediaWiki-API-Error": e.code})
    entry["answered_by"] = "upstream"
    if answer.status >= 500:
        # A wiki's 5xx is transient: passed on, never made a fixture.
        log.warning("record: not recorded (HTTP %d): %s", answer.status, key.describe())
    else:
        rec = Recording(
            key=key,
            status=answer.status,
            content_type=answer.content_type,
            body=answer.body,
            headers=answer.headers,
            recorded_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            upstream=upstream.describe(host),
        )
        try:
            path = store.save(rec)
        except OSError as e:
            log.error("record: cannot write the recording of %s: %s", key.describe(), e)
            body_json = api.error_body(
                host, "replay-record-failed", f"[replay recorder] cannot write into {e}"
            )
            return _json(body_json, 500, {"MediaWiki-API-Error": "replay-record-failed"})
        log.info("recorded %s -> %s", key.describe(), path)
        return _recorded(rec)
    return _recorded(
        Recording(key, answer.status, answer.content_type, answer.body, answer.headers)
    )


async def handle_wiki(request: web.Request) -> web.StreamResponse:
    """Every wiki request: fault, then record, recording, emulator, or `not in the fixtures`."""
    # The REST gateway form names the wiki in the path (/en.wikipedia.org/v1/...), not the Host.
    host = request.match_info.get("domain") or _wiki_host(request)
    try:
        items, body = await _read_params(request)
    except BadRequest as e:
        return _json(
            api.error_body(host or "en.wikipedia.org", "replay-bad-request", str(e)),
            400,
            {"MediaWiki-API-Error": "replay-bad-request"},
        )
    params = dict(items)
    key = normalize(request.method, host, request.path, items)
    fault = request.app[FAULTS_KEY].take(host)
    entry: dict[str, Any] = {
        "wiki": host,
        "method": request.method,
        "path": request.path,
        "params": redacted(params),
        "user_agent": request.headers.get("User-Agent", ""),
        "fault": fault.mode.value,
        "answered_by": "fault",
    }
    request.app[REQUESTS_KEY].add(entry)
    faulted = await _inject(request, fault, params)
    if faulted is not None:
        return faulted
    if UPSTREAM_KEY in request.app:
        return await _record(request, key, body, entry)
    store = request.app.get(RECORDINGS_KEY)
    rec = store.get(key) if store is not None else None
    if rec is not None:
        entry["answered_by"] = "recording"
        return _recorded(rec)
    wikis = request.app[WIKIS_KEY]
    wiki = wikis.get(host) if request.app[EMULATE_KEY] else None
    if wiki is not None and not wiki.exists:
        entry["answered_by"] = "emulator"
        return _no_wiki(host, [h for h, w in wikis.items() if w.exists])
    if wiki is not None and request.method in ("GET", "HEAD") and rest.handles(request.path):
        entry["answered_by"] = "emulator"
        try:
            answer = rest.answer(wiki, request.path)
        except api.NotInFixtures as e:
            entry["answered_by"] = "not-in-fixtures"
            return _not_in_fixtures(request, key, str(e), params)
        headers = {"Content-Type": answer.content_type, **answer.headers}
        return web.Response(body=answer.body, status=answer.status, headers=headers)
    if wiki is not None and request.path == "/w/api.php":
        entry["answered_by"] = "emulator"
        try:
            doc = api.answer(wiki, params, max_limit=request.app[MAX_LIMIT_KEY])
        except api.ApiError as e:
            doc = api.error_body(host, e.code, e.info, api.formatversion_of(params))
            return _api_json(api.encode(doc, params), {"MediaWiki-API-Error": e.code})
        except api.NotInFixtures as e:
            entry["answered_by"] = "not-in-fixtures"
            return _not_in_fixtures(request, key, str(e), params)
        return _api_json(api.encode(doc, params))
    recorded_hosts = store.hosts() if store is not None else {}
    if not WIKIMEDIA_HOST.fullmatch(host) and host not in recorded_hosts:
        entry["answered_by"] = "no-wiki"
        known = sorted(set(recorded_hosts) | {h for h, w in wikis.items() if w.exists})
        return _no_wiki(host, known)
    entry["answered_by"] = "not-in-fixtures"
    reasons = []
    if store is not None:
        reasons.append(f"no recording in {', '.join(str(d) for d in store.dirs)} matches it")
    if wiki is not None:
        reasons.append(
            "the emulator answers /w/api.php, /w/rest.php/v1/{revision/<id>,page/<title>}/html "
            "and page/summary/<title> only"
        )
    elif request.app[EMULATE_KEY]:
        reasons.append(f"the emulator has no fixture wiki {host}")
    return _not_in_fixtures(request, key, ", and ".join(reasons), params)


def mode_of(app: web.Application) -> str:
    if UPSTREAM_KEY in app:
        return "record"
    if RECORDINGS_KEY in app:
        return "replay+emulate" if app[EMULATE_KEY] else "replay"
    return "emulate"


async def handle_health(request: web.Request) -> web.Response:
    app = request.app
    wikis = app[WIKIS_KEY] if app[EMULATE_KEY] else {}
    store = app.get(RECORDINGS_KEY)
    health: dict[str, Any] = {
        "status": "ok",
        "mode": mode_of(app),
        "wikis": {host: len(w.pages) for host, w in sorted(wikis.items()) if w.exists},
        "recordings": store.hosts() if store is not None else {},
        "max_limit": app[MAX_LIMIT_KEY],
    }
    if UPSTREAM_KEY in app and store is not None:
        health["record_dir"] = str(store.write_dir)
        health["upstream"] = app[UPSTREAM_KEY].origin
    return _json(health | app[FAULTS_KEY].snapshot())


async def handle_get_requests(request: web.Request) -> web.Response:
    return _json({"requests": request.app[REQUESTS_KEY].list()})


async def handle_clear_requests(request: web.Request) -> web.Response:
    request.app[REQUESTS_KEY].clear()
    return _json({"requests": []})


async def handle_get_misses(request: web.Request) -> web.Response:
    return _json({"misses": request.app[MISSES_KEY].list()})


async def handle_clear_misses(request: web.Request) -> web.Response:
    request.app[MISSES_KEY].clear()
    return _json({"misses": []})


async def handle_eventgate(request: web.Request) -> web.Response:
    """POST /v1/events as EventGate answers it (wikimedia/eventgate routes/events.js): an event
    or a list of them; 201 when all are accepted (202 at once with `?hasty`), 400 with
    `{"invalid": [...]}` when all are invalid, 207 with `invalid` and `error` when some are; an
    empty body is 400. Accepted events are kept for GET /__replay__/events."""
    try:
        raw = await request.read()
        data = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return web.Response(status=400, reason="Request body must be JSON encoded events.")
    if not data:
        return web.Response(
            status=400, reason="Request body was empty. Must provide JSON encoded events."
        )
    events = data if isinstance(data, list) else [data]
    invalid = []
    for event in events:
        problem = eventgate_problem(event)
        if problem is not None:
            invalid.append({"status": "invalid", "event": event, "context": {"message": problem}})
            continue
        request.app[EVENTS_KEY].add(
            {
                "stream": event["meta"]["stream"],
                "schema": event["$schema"],
                "received_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "user_agent": request.headers.get("User-Agent", ""),
                "event": event,
            }
        )
    n, bad = len(events), len(invalid)
    if "hasty" in request.query:
        return web.Response(status=202, reason=f"{n} events hastily received.")
    if not bad:
        return web.Response(status=201, reason=f"All {n} out of {n} events were accepted.")
    if bad == n:
        return _json({"invalid": invalid}, 400)
    return _json({"invalid": invalid, "error": []}, 207)


def eventgate_problem(event: Any) -> str | None:
    """Why EventGate would refuse `event` (None: accepted). Every Wikimedia event names its
    schema (`$schema`) and its stream (`meta.stream`); the schema itself is not checked here."""
    if not isinstance(event, dict):
        return "an event is a JSON object"
    if not isinstance(event.get("$schema"), str) or not event["$schema"]:
        return "the event has no $schema"
    meta = event.get("meta")
    if not isinstance(meta, dict) or not isinstance(meta.get("stream"), str) or not meta["stream"]:
        return "the event has no meta.stream"
    return None


async def handle_get_events(request: web.Request) -> web.Response:
    events = request.app[EVENTS_KEY].list()
    stream = request.query.get("stream")
    if stream is not None:
        events = [e for e in events if e["stream"] == stream]
    return _json({"events": events})


async def handle_clear_events(request: web.Request) -> web.Response:
    request.app[EVENTS_KEY].clear()
    return _json({"events": []})


async def handle_get_fault(request: web.Request) -> web.Response:
    return _json(request.app[FAULTS_KEY].snapshot())


async def handle_set_fault(request: web.Request) -> web.Response:
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError, RecursionError):
        # ValueError: not JSON, or an integer past Python's digit limit; RecursionError: nesting
        return _json({"error": 'the body must be a JSON object like {"mode": "none"}'}, 400)
    try:
        fault = Fault.parse(data)
    except FaultSpecError as e:
        return _json({"error": str(e)}, 400)
    request.app[FAULTS_KEY].set(fault)
    log.info("replay fault set: %s", fault.to_json())
    return _json(request.app[FAULTS_KEY].snapshot())


def make_app(
    wikis: dict[str, Wiki],
    faults: FaultState | None = None,
    max_limit: int = api.API_MAX_LIMIT,
    *,
    recordings: RecordingStore | None = None,
    upstream: Upstream | None = None,
    emulate: bool = True,
) -> web.Application:
    """The server's application. `recordings` alone: replay them; with `upstream`: record into
    `recordings.write_dir`; `emulate`: answer from `wikis` what no recording answers."""
    if not 1 <= max_limit <= api.API_MAX_LIMIT:
        raise ValueError(f"max_limit must be between 1 and {api.API_MAX_LIMIT}")
    if upstream is not None and (recordings is None or recordings.write_dir is None):
        raise ValueError("record mode needs a RecordingStore with a write_dir")
    app = web.Application(middlewares=[_json_errors], client_max_size=MAX_BODY_BYTES)
    app[MAX_BODY_KEY] = MAX_BODY_BYTES
    app[WIKIS_KEY] = wikis
    app[FAULTS_KEY] = faults or FaultState()
    app[MAX_LIMIT_KEY] = max_limit
    app[REQUESTS_KEY] = RequestLog()
    app[MISSES_KEY] = RequestLog()
    app[EVENTS_KEY] = RequestLog(1000)
    app[EMULATE_KEY] = emulate and upstream is None
    if recordings is not None:
        app[RECORDINGS_KEY] = recordings
    if upstream is not None:
        app[UPSTREAM_KEY] = upstream

        async def close_upstream(_: web.Application) -> None:
            await upstream.close()

        app.on_cleanup.append(close_upstream)
    app.router.add_route("GET", "/w/api.php", handle_wiki)
    app.router.add_route("POST", "/w/api.php", handle_wiki)
    app.router.add_route("*", "/w/rest.php/{tail:.*}", handle_wiki)
    app.router.add_route("*", "/api/rest_v1/{tail:.*}", handle_wiki)
    # Wikimedia's REST API through the REST gateway: the wiki's domain leads the path.
    app.router.add_get(r"/{domain:[a-z0-9-]+(?:\.[a-z0-9-]+)+}/v1/{tail:.*}", handle_wiki)
    app.router.add_post("/v1/events", handle_eventgate)  # EventGate
    app.router.add_get("/__replay__/health", handle_health)
    app.router.add_get("/__replay__/misses", handle_get_misses)
    app.router.add_delete("/__replay__/misses", handle_clear_misses)
    app.router.add_get("/__replay__/events", handle_get_events)
    app.router.add_delete("/__replay__/events", handle_clear_events)
    app.router.add_get("/__replay__/fault", handle_get_fault)
    app.router.add_post("/__replay__/fault", handle_set_fault)
    app.router.add_get("/__replay__/requests", handle_get_requests)
    app.router.add_delete("/__replay__/requests", handle_clear_requests)
    return app


class _JsonErrorsHandler(RequestHandler):
    """aiohttp's connection handler, answering a request it cannot parse (a line over 8190
    bytes, malformed HTTP) with JSON, logged in one line rather than with a traceback."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        why = " ".join(str(exc or message or "").split())
        log.warning("refused a malformed request (HTTP %d): %s", status, why[:200])
        if request.writer.output_size > 0:
            raise ConnectionError("an answer is already under way")
        resp = _own_error(status, "replay-bad-http", f"malformed HTTP request: {why[:300]}")
        resp.force_close()
        return resp


class _JsonErrorsServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorsHandler(self, loop=self._loop, **self._kwargs)


class _JsonErrorsRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorsServer  # the same server, with the handler above
        return server


class ReplayServer:
    """The replay server in a background thread, for tests and the local runtime.

        server = ReplayServer(port=0, max_limit=50).start()   # port 0: a free port
        server.url                      # http://127.0.0.1:<port>  (use as WIKI_URL)
        server.set_fault("slow", delay_s=10, wiki="en.wikipedia.org")
        server.set_fault("none")
        server.stop()

    Modes: the emulator over `fixtures` (default: the packaged ones); `replay=[DIR, ...]`
    (recordings; add `emulate=True` to fall back on the emulator); `record=DIR` (forward to
    `upstream`, default https://<wiki host>, trusting `upstream_ca` as well). With `tls` (a
    server SSLContext, see `tls_context`) it answers HTTPS instead of HTTP.
    Also a context manager (`with ReplayServer() as server:`).
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        fixtures: list[Path] | None = None,
        wikis: dict[str, Wiki] | None = None,
        fault: Fault | None = None,
        max_limit: int = api.API_MAX_LIMIT,
        access_log: bool = False,
        replay: list[Path] | None = None,
        record: Path | None = None,
        emulate: bool | None = None,
        upstream: str = DEFAULT_ORIGIN,
        upstream_ca: Path | None = None,
        upstream_timeout_s: float = DEFAULT_TIMEOUT_S,
        also_ports: list[int] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.tls = tls
        self.access_log = access_log
        self.port = port
        # Ports served as well, plain HTTP (a container's: the mesh's ports 80 and 4680, for an
        # isvc that reaches a wiki by its name, e.g. http://en.wikipedia.org; docker.py, mesh.py).
        self.also_ports = list(also_ports or [])
        self.faults = FaultState(fault)
        if emulate is None:
            emulate = (not replay and record is None) or fixtures is not None
        store = None
        if record is not None:
            store = RecordingStore(write_dir=record)
        elif replay:
            store = RecordingStore(replay)
        self.app = make_app(
            wikis if wikis is not None else (load_wikis(fixtures) if emulate else {}),
            self.faults,
            max_limit,
            recordings=store,
            upstream=Upstream(upstream, upstream_ca, upstream_timeout_s) if record else None,
            emulate=emulate,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def mode(self) -> str:
        return mode_of(self.app)

    @property
    def wikis(self) -> dict[str, Wiki]:
        return self.app[WIKIS_KEY]

    @property
    def recordings(self) -> RecordingStore | None:
        return self.app.get(RECORDINGS_KEY)

    @property
    def requests(self) -> RequestLog:
        """The last API requests received (`.list()`, `.clear()`)."""
        return self.app[REQUESTS_KEY]

    @property
    def misses(self) -> RequestLog:
        """The requests answered `replay-not-in-fixtures` (`.list()`, `.clear()`)."""
        return self.app[MISSES_KEY]

    @property
    def events(self) -> RequestLog:
        """The events EventGate (POST /v1/events) accepted (`.list()`, `.clear()`)."""
        return self.app[EVENTS_KEY]

    def set_fault(self, mode: str | FaultMode, **options: Any) -> None:
        """Switch the fault of the running server: `mode` and the `Fault` fields as keywords."""
        self.faults.set(Fault.parse({"mode": str(mode), **options}))

    def start(self) -> ReplayServer:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as e:  # reported to start()'s caller
                failure.append(e)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="mediawiki-replay", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self

    async def _serve(self) -> None:
        self._runner = _JsonErrorsRunner(
            self.app,
            handler_cancellation=True,  # a slow fault stops when its client gives up
            shutdown_timeout=1.0,
            access_log=logging.getLogger("sandbox.mediawiki.access") if self.access_log else None,
            access_log_format='%a "%r" %s %b Host=%{Host}i "%{User-Agent}i"',
            max_line_size=MAX_READ_LINE,
            max_field_size=MAX_READ_LINE,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.tls)
        await site.start()
        sockets = self._runner.addresses
        self.port = sockets[0][1] if sockets else self.port
        for port in self.also_ports:
            await web.TCPSite(self._runner, self.host, port).start()

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop = self._thread = None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- command line ------------------------------------------------------------------------------

DESCRIPTION = (
    "Serve the wikis' APIs (the MediaWiki Action API /w/api.php, the REST API /w/rest.php) "
    "offline for isvcs, choosing the wiki by the Host header; point an isvc at it with "
    "WIKI_URL=http://127.0.0.1:8090 (and REST_GATEWAY_ENDPOINT=http://127.0.0.1:8090/, "
    "EVENTGATE_URL=http://127.0.0.1:8090/v1/events: the emulator also answers MediaWiki REST's "
    "HTML and page summary, Wikidata's wbgetentities and EventGate, and keeps the events at "
    "/__replay__/events). Three modes: emulate (default: answers from fixture wikis, "
    "the packaged ones or --fixtures DIR), replay (--replay DIR: recorded exchanges, byte for "
    "byte; add --emulate to fall back on the emulator) and record (--record DIR: forwards every "
    "request to the real wiki over HTTPS and stores it in DIR, for --replay later). A request "
    "none of them can answer gets HTTP 501 `replay-not-in-fixtures` naming it and how to record "
    "it. Switch faults at run time in every mode with: "
    'curl -X POST -d \'{"mode": "slow", "delay_s": 10}\' http://127.0.0.1:8090/__replay__/fault'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to bind (default: %(default)s; use 0.0.0.0 only inside a container)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--also-port",
        type=int,
        action="append",
        default=[],
        metavar="PORT",
        help="listen on this port as well, plain HTTP (repeatable; in a container: the mesh's "
        "ports 80 and 4680, where an isvc reaches http://<wiki> by name)",
    )
    parser.add_argument(
        "--fault",
        choices=[m.value for m in FaultMode],
        default="none",
        help="fault injected into every API answer from the start (default: %(default)s)",
    )
    parser.add_argument(
        "--delay",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="delay of the `slow` fault (default: %(default)s)",
    )
    parser.add_argument(
        "--max-limit",
        type=int,
        default=api.API_MAX_LIMIT,
        metavar="N",
        help="emulator: what gpllimit=max means and the cap on gpllimit (default: %(default)s "
        "like Wikipedia; lower it to get continuation with small fixtures)",
    )
    parser.add_argument(
        "--fixtures",
        type=Path,
        action="append",
        metavar="DIR",
        help="emulator: directory of *.yaml fixture wikis (repeatable; default: the packaged "
        "fixtures); implies --emulate",
    )
    parser.add_argument(
        "--tls-cert",
        type=Path,
        metavar="FILE",
        help="answer HTTPS with this PEM certificate chain (with --tls-key), e.g. one issued for "
        "the wikis' host names by a CA the client trusts; default: plain HTTP",
    )
    parser.add_argument(
        "--tls-key", type=Path, metavar="FILE", help="the PEM private key of --tls-cert"
    )
    modes = parser.add_argument_group("record and replay")
    modes.add_argument(
        "--record",
        type=Path,
        metavar="DIR",
        help="record mode: forward every request to the real wiki over HTTPS (needs internet) "
        "and store each exchange as a YAML file under DIR/<wiki>/ (a request recorded again "
        "replaces its file; a wiki's 5xx is passed on but not stored)",
    )
    modes.add_argument(
        "--replay",
        type=Path,
        action="append",
        metavar="DIR",
        help="replay mode: answer the requests recorded in DIR byte for byte (repeatable); "
        "parameter order and requestid/maxlag/maxage/smaxage do not matter",
    )
    modes.add_argument(
        "--emulate",
        action="store_true",
        help="with --replay: answer what no recording matches from the emulator's fixtures "
        "(default without --replay and --record)",
    )
    modes.add_argument(
        "--upstream",
        default=os.environ.get("SANDBOX_MEDIAWIKI_UPSTREAM", DEFAULT_ORIGIN),
        metavar="ORIGIN",
        help="record mode: where requests go (default: %(default)s, the wiki named by the Host "
        "header; SANDBOX_MEDIAWIKI_UPSTREAM sets it for `up --mediawiki record`); an origin "
        "without {host} (https://127.0.0.1:8443, an API proxy) gets every wiki's requests with "
        "the wiki in the Host header",
    )
    modes.add_argument(
        "--upstream-ca",
        type=Path,
        default=os.environ.get("SANDBOX_MEDIAWIKI_UPSTREAM_CA") or None,
        metavar="FILE",
        help="record mode: a PEM CA bundle to trust as well as the system's (a local origin); "
        "default: SANDBOX_MEDIAWIKI_UPSTREAM_CA",
    )
    modes.add_argument(
        "--upstream-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="record mode: how long the wiki may take to answer (default: %(default)s)",
    )


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side TLS context from a PEM certificate chain and its key; ValueError naming the
    file when they cannot be read or do not match."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as e:
        raise ValueError(f"{e.filename}: no such file") from None
    except PermissionError as e:
        raise ValueError(f"{e.filename}: permission denied") from None
    except ssl.SSLError as e:
        raise ValueError(
            f"--tls-cert {cert} / --tls-key {key}: not a PEM certificate and its key ({e.reason})"
        ) from None
    return context


def _fail(message: str, code: int = 2) -> int:
    print(f"mediawiki replay: error: {message}", file=sys.stderr)
    return code


def serve(args: argparse.Namespace) -> int:
    """Run the replay server in the foreground until interrupted; exit code for the CLI."""
    for port in [args.port, *args.also_port]:
        if not 0 <= port <= 65535:
            return _fail(f"--port {port} is not a TCP port")
    if not 1 <= args.max_limit <= api.API_MAX_LIMIT:
        return _fail(f"--max-limit must be between 1 and {api.API_MAX_LIMIT}")
    if args.record is not None and (args.replay or args.emulate or args.fixtures):
        return _fail(
            "--record forwards every request to the wikis; it does not combine with --replay, "
            "--emulate or --fixtures"
        )
    if args.record is not None and args.record.exists() and not args.record.is_dir():
        return _fail(f"--record {args.record}: not a directory")
    if args.upstream_timeout <= 0:
        return _fail("--upstream-timeout must be > 0")
    if (args.tls_cert is None) != (args.tls_key is None):
        return _fail("--tls-cert and --tls-key go together")
    try:
        tls = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
        fault = Fault.parse({"mode": args.fault, "delay_s": args.delay})
        server = ReplayServer(
            args.host,
            args.port,
            fixtures=args.fixtures,
            fault=fault,
            max_limit=args.max_limit,
            access_log=True,
            replay=args.replay,
            record=args.record,
            emulate=True if args.emulate else None,
            upstream=args.upstream,
            upstream_ca=args.upstream_ca,
            upstream_timeout_s=args.upstream_timeout,
            also_ports=args.also_port,
            tls=tls,
        )
    except (FixtureError, FaultSpecError, ValueError) as e:
        return _fail(str(e))
    try:
        server.start()
    except OSError as e:
        ports = ", ".join(map(str, [args.port, *args.also_port]))
        return _fail(f"cannot listen on {args.host} (port {ports}): {e.strerror}", 1)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"MediaWiki replay ({_describe(server, args)}) on {server.url}", flush=True)
    print(f"  fault: {fault.mode.value}; use WIKI_URL={server.url}", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
    return 0


def _describe(server: ReplayServer, args: argparse.Namespace) -> str:
    store = server.recordings
    parts = [f"mode: {server.mode}"]
    if args.record is not None:
        parts.append(f"recording into {args.record} from {args.upstream}")
    elif store is not None:
        parts.append(f"{len(store)} recorded requests from {', '.join(map(str, args.replay))}")
    if server.app[EMULATE_KEY]:
        wikis = sorted(h for h, w in server.wikis.items() if w.exists)
        parts.append(f"emulating {', '.join(wikis)} (gpllimit max {args.max_limit})")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="python -m sandbox.mediawiki", description=DESCRIPTION)
    add_arguments(parser)
    return serve(parser.parse_args(argv))
