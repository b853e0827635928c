"""The MediaWiki replay server: the Action API of the fixture wikis, with fault injection.

Routes:
  GET|POST /w/api.php          the API of the wiki named by the Host header (en.wikipedia.org).
                               As on Wikimedia (missing.php), a language with no Wikipedia
                               (xx.wikipedia.org) is redirected (302) to the Incubator, and a
                               host naming no project gets 404 "No wiki found".
  GET  /__replay__/health      {"status": "ok", "wikis": [...], "fault": ..., "max_limit": N}
  GET  /__replay__/fault       the faults in force
  POST /__replay__/fault       set one: {"mode": "slow", "delay_s": 10, "wiki": "en.wikipedia.org",
                               "after": 0, "times": null}; {"mode": "none"} clears them.
  GET  /__replay__/requests    the last API requests (wiki, method, params, User-Agent, fault);
  DELETE /__replay__/requests  forgets them.

Run it with `ml-sandbox mediawiki` or `python -m sandbox.mediawiki --port 8090`; point an isvc at
it with WIKI_URL=http://127.0.0.1:8090. From Python: `ReplayServer(port=0).start()` serves in a
background thread (see its docstring).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import signal
import sys
import threading
import urllib.parse
from collections import deque
from pathlib import Path
from typing import Any

from aiohttp import web

from sandbox.mediawiki import api
from sandbox.mediawiki.faults import Fault, FaultMode, FaultSpecError, FaultState
from sandbox.mediawiki.fixtures import FixtureError, Wiki, load_wikis

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090
WIKIS_KEY = web.AppKey("wikis", dict[str, Wiki])
FAULTS_KEY = web.AppKey("faults", FaultState)
MAX_LIMIT_KEY = web.AppKey("max_limit", int)

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
    r"^([a-z0-9-]+)\.(wikipedia|wiktionary|wikibooks|wikinews|wikiquote|wikivoyage)\.org$"
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


def _wiki_host(request: web.Request) -> str:
    return (request.url.host or "").lower().rstrip(".")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(body, ensure_ascii=False),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


async def _inject(request: web.Request, fault: Fault) -> web.StreamResponse | None:
    """The response for an injected fault, or None to answer normally."""
    if fault.mode is FaultMode.SLOW:
        await asyncio.sleep(fault.delay_s)
        return None
    if fault.mode is FaultMode.ERROR500:
        return web.Response(text=_ERROR_500_PAGE, status=500, content_type="text/html")
    if fault.mode is FaultMode.MALFORMED:
        return web.Response(text=_MALFORMED_BODY, content_type="application/json")
    if fault.mode is FaultMode.APIERROR:
        body = api.error_body(
            _wiki_host(request),
            "internal_api_error_DBConnectionError",
            "[replay] Exception caught: Cannot access the database (injected apierror fault).",
        )
        return _json(body, headers={"MediaWiki-API-Error": body["error"]["code"]})
    if fault.mode is FaultMode.RESET:
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError  # nothing to answer on a dropped connection
    return None


def _no_wiki(host: str, wikis: dict[str, Wiki]) -> web.Response:
    """What Wikimedia answers for a host with no wiki: a language missing from a project is
    redirected (302) to the Incubator; anything else is 404 "No wiki found"."""
    missing = _NO_LANGUAGE.match(host)
    if missing is None:
        page = _NO_WIKI_PAGE.format(wikis=", ".join(sorted(wikis)))
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


async def handle_api(request: web.Request) -> web.StreamResponse:
    host = _wiki_host(request)
    params: dict[str, str] = dict(request.query)
    if request.method == "POST":
        params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    fault = request.app[FAULTS_KEY].take(host)
    request.app[REQUESTS_KEY].add(
        {
            "wiki": host,
            "method": request.method,
            "params": params,
            "user_agent": request.headers.get("User-Agent", ""),
            "fault": fault.mode.value,
        }
    )
    faulted = await _inject(request, fault)
    if faulted is not None:
        return faulted
    wikis = request.app[WIKIS_KEY]
    wiki = wikis.get(host)
    if wiki is None:
        return _no_wiki(host, wikis)
    try:
        body = api.answer(wiki, params, max_limit=request.app[MAX_LIMIT_KEY])
    except api.ApiError as e:
        return _json(api.error_body(host, e.code, e.info), headers={"MediaWiki-API-Error": e.code})
    return _json(body)


async def handle_health(request: web.Request) -> web.Response:
    wikis = request.app[WIKIS_KEY]
    return _json(
        {
            "status": "ok",
            "wikis": {host: len(w.pages) for host, w in sorted(wikis.items())},
            "max_limit": request.app[MAX_LIMIT_KEY],
            **request.app[FAULTS_KEY].snapshot(),
        }
    )


async def handle_get_requests(request: web.Request) -> web.Response:
    return _json({"requests": request.app[REQUESTS_KEY].list()})


async def handle_clear_requests(request: web.Request) -> web.Response:
    request.app[REQUESTS_KEY].clear()
    return _json({"requests": []})


async def handle_get_fault(request: web.Request) -> web.Response:
    return _json(request.app[FAULTS_KEY].snapshot())


async def handle_set_fault(request: web.Request) -> web.Response:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _json({"error": 'the body must be a JSON object like {"mode": "none"}'}, 400)
    try:
        fault = Fault.parse(data)
    except FaultSpecError as e:
        return _json({"error": str(e)}, 400)
    request.app[FAULTS_KEY].set(fault)
    log.info("replay fault set: %s", fault.to_json())
    return _json(request.app[FAULTS_KEY].snapshot())


def make_app(
    wikis: dict[str, Wiki], faults: FaultState | None = None, max_limit: int = api.API_MAX_LIMIT
) -> web.Application:
    if not 1 <= max_limit <= api.API_MAX_LIMIT:
        raise ValueError(f"max_limit must be between 1 and {api.API_MAX_LIMIT}")
    app = web.Application()
    app[WIKIS_KEY] = wikis
    app[FAULTS_KEY] = faults or FaultState()
    app[MAX_LIMIT_KEY] = max_limit
    app[REQUESTS_KEY] = RequestLog()
    app.router.add_route("GET", "/w/api.php", handle_api)
    app.router.add_route("POST", "/w/api.php", handle_api)
    app.router.add_get("/__replay__/health", handle_health)
    app.router.add_get("/__replay__/fault", handle_get_fault)
    app.router.add_post("/__replay__/fault", handle_set_fault)
    app.router.add_get("/__replay__/requests", handle_get_requests)
    app.router.add_delete("/__replay__/requests", handle_clear_requests)
    return app


class ReplayServer:
    """The replay server in a background thread, for tests and the local runtime.

        server = ReplayServer(port=0, max_limit=50).start()   # port 0: a free port
        server.url                      # http://127.0.0.1:<port>  (use as WIKI_URL)
        server.set_fault("slow", delay_s=10, wiki="en.wikipedia.org")
        server.set_fault("none")
        server.stop()

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
    ) -> None:
        self.host = host
        self.access_log = access_log
        self.port = port
        self.faults = FaultState(fault)
        self.app = make_app(
            wikis if wikis is not None else load_wikis(fixtures), self.faults, max_limit
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def wikis(self) -> dict[str, Wiki]:
        return self.app[WIKIS_KEY]

    @property
    def requests(self) -> RequestLog:
        """The last API requests received (`.list()`, `.clear()`)."""
        return self.app[REQUESTS_KEY]

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
        self._runner = web.AppRunner(
            self.app,
            handler_cancellation=True,  # a slow fault stops when its client gives up
            shutdown_timeout=1.0,
            access_log=logging.getLogger("sandbox.mediawiki.access") if self.access_log else None,
            access_log_format='%a "%r" %s %b Host=%{Host}i "%{User-Agent}i"',
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = self._runner.addresses
        self.port = sockets[0][1] if sockets else self.port

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
    "Serve the MediaWiki Action API of the fixture wikis (en.wikipedia.org, ...) offline, so the "
    "outlink-topic-model transformer runs without Wikipedia. The wiki is chosen by the Host "
    "header; point an isvc at it with WIKI_URL=http://127.0.0.1:8090. Switch faults at run time "
    'with: curl -X POST -d \'{"mode": "slow", "delay_s": 10}\' '
    "http://127.0.0.1:8090/__replay__/fault"
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
        help="what gpllimit=max means (default: %(default)s like Wikipedia; lower it to get "
        "continuation with small fixtures)",
    )
    parser.add_argument(
        "--fixtures",
        type=Path,
        action="append",
        metavar="DIR",
        help="directory of *.yaml fixture wikis (repeatable; default: the packaged fixtures)",
    )


def serve(args: argparse.Namespace) -> int:
    """Run the replay server in the foreground until interrupted; exit code for the CLI."""
    if not 0 <= args.port <= 65535:
        print(f"mediawiki replay: error: --port {args.port} is not a TCP port", file=sys.stderr)
        return 2
    if not 1 <= args.max_limit <= api.API_MAX_LIMIT:
        print(
            f"mediawiki replay: error: --max-limit must be between 1 and {api.API_MAX_LIMIT}",
            file=sys.stderr,
        )
        return 2
    try:
        fault = Fault.parse({"mode": args.fault, "delay_s": args.delay})
        wikis = load_wikis(args.fixtures)
    except (FixtureError, FaultSpecError) as e:
        print(f"mediawiki replay: error: {e}", file=sys.stderr)
        return 2
    server = ReplayServer(
        args.host,
        args.port,
        wikis=wikis,
        fault=fault,
        max_limit=args.max_limit,
        access_log=True,
    )
    try:
        server.start()
    except OSError as e:
        print(
            f"mediawiki replay: error: cannot listen on {args.host}:{args.port}: {e.strerror}",
            file=sys.stderr,
        )
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(
        f"MediaWiki replay serving {', '.join(sorted(wikis))} on {server.url} "
        f"(fault: {fault.mode.value}, gpllimit max: {args.max_limit}); "
        f"use WIKI_URL={server.url}",
        flush=True,
    )
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="python -m sandbox.mediawiki", description=DESCRIPTION)
    add_arguments(parser)
    return serve(parser.parse_args(argv))
