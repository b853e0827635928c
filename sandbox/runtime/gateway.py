"""The sandbox's ingress: routes by Host header (`<isvc>.<namespace>.wikimedia.org`) like Istio.

One gateway serves every isvc of a sandbox, on the local and docker targets alike. Routes live in a
JSON file (`{"<host>": {"url": "http://127.0.0.1:<port>", "isvc": "<name>"}}`) that the runtime
rewrites; the gateway re-reads it on SIGHUP.
Run: `python -m sandbox.runtime.gateway --routes FILE [--host H] [--port P] [...]` (`--help`).

URL forms (Lift Wing's client surfaces):
- internal: any path with `Host: <isvc>.<namespace>.wikimedia.org`, forwarded untouched
  (`/v1/models/<isvc>:predict`, `GET /v1/models/<isvc>`, `/v2/models/<isvc>/infer`, ...);
- public API Gateway: `/service/lw/inference/v1/models/<isvc>:predict` with any Host, rewritten
  to `/v1/models/<isvc>:predict` for the isvc's Host, as api.wikimedia.org's REST gateway does.

Every error the gateway itself answers is JSON `{"error": "..."}`: 400 for malformed HTTP and a
missing Host, 404 for an unknown Host or isvc (listing the known ones), 408 when the body does
not arrive in time, 413 over the body limit, 431 for oversized headers, 502 when the isvc does
not answer, 503 when its queue is full, 504 when it is too slow.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from yarl import URL

from sandbox.serving.limits import max_body_bytes

log = logging.getLogger("gateway")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
HEALTH_PATH = "/__sandbox__/health"
# api.wikimedia.org's REST gateway: `in: '/+service/lw/inference/(v1/models/<isvc>:predict(.*))'`,
# `out: '/\1'`, `to: '<isvc>.<namespace>.wikimedia.org'` (operations-deployment-charts,
# helmfile.d/services/rest-gateway/values.yaml, liftwing_inference).
PUBLIC_PREFIX = "/service/lw/inference/"
PUBLIC_FORM = re.compile(r"/+service/lw/inference/(v1/models/([\w.-]+):predict(.*))", re.DOTALL)
LOG_FIELD_MAX = 200  # characters of a path or Host in one log line


@dataclass(frozen=True)
class Route:
    host: str
    url: str
    isvc: str


@dataclass(frozen=True)
class Settings:
    """The gateway's limits and timeouts (see `main --help` and the README for the defaults)."""

    max_body_bytes: int
    timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    max_connections: int = 256
    max_pending: int = 256
    idle_timeout_s: float = 4.0


def load_routes(path: Path) -> dict[str, Route]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    routes = {}
    for host, target in raw.items():
        host = host.lower()
        if isinstance(target, str):  # the format before isvc names: {host: url}
            target = {"url": target, "isvc": host.split(".")[0]}
        routes[host] = Route(host, target["url"].rstrip("/"), target["isvc"])
    return routes


def write_routes(path: Path, routes: dict[str, dict[str, str]]) -> None:
    """Atomically replace the routes file, `{host: {"url": ..., "isvc": ...}}` (the gateway never
    reads a half-written one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    body = {host: {"url": r["url"], "isvc": r["isvc"]} for host, r in routes.items()}
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True))
    os.replace(tmp, path)


def clip(text: str, limit: int = LOG_FIELD_MAX) -> str:
    """`text`, cut to `limit` characters with a marker saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[+{len(text) - limit} chars]"


def _error(status: int, message: str, close: bool = False) -> web.Response:
    resp = web.json_response({"error": message}, status=status)
    if close:
        resp.force_close()
    return resp


class _JSONErrors(RequestHandler):
    """aiohttp's connection handler, answering what its HTTP parser rejects with JSON (and one
    bounded log line) instead of its text/plain page and a traceback."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        if isinstance(exc, HttpProcessingError):
            text = clip(" ".join((exc.message or str(exc)).split()), 300)
            if isinstance(exc, LineTooLong) or "Too many headers" in text:
                status = 431
            text = f"malformed HTTP request: {text}"
        else:
            text = "internal error in the gateway (see its log)"
        log.warning("%s from %s: %s", status, request.remote, clip(repr(exc), 300))
        return _error(status, text, close=True)


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _JSONErrors(self, loop=self._loop, **self._kwargs)


class _DeadConnection(Exception):
    """The upstream closed the connection before any byte of an answer (typically a pooled
    connection it had closed after a 500 or when idle)."""


class Gateway:
    def __init__(self, routes_file: Path, settings: Settings):
        self.routes_file = routes_file
        self.settings = settings
        self.routes: dict[str, Route] = {}
        self.by_isvc: dict[str, Route] = {}
        self.in_flight: dict[str, int] = {}
        self.session: aiohttp.ClientSession | None = None
        self.fresh: aiohttp.ClientSession | None = None
        self.reload()

    def reload(self) -> None:
        self.routes = load_routes(self.routes_file)
        self.by_isvc = {r.isvc: r for r in self.routes.values()}
        log.info("routes: %s", ", ".join(self.routes) or "(none)")

    async def start(self) -> None:
        s = self.settings
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=s.connect_timeout_s)
        self.session = aiohttp.ClientSession(
            timeout=timeout,
            connector=aiohttp.TCPConnector(
                limit=0, limit_per_host=s.max_connections, keepalive_timeout=s.idle_timeout_s
            ),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )
        # The one retry after a dead pooled connection goes out on a new connection.
        self.fresh = aiohttp.ClientSession(
            timeout=timeout,
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )

    async def close(self) -> None:
        for session in (self.session, self.fresh):
            if session:
                await session.close()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        started = loop.time()
        host_header = request.headers.get("Host")
        try:
            response = await self._route(request, host_header, started + self.settings.timeout_s)
        except Exception as e:  # never a traceback to the client
            log.exception("internal error: %s", clip(repr(e)))
            response = _error(500, "internal error in the gateway (see its log)")
        log.info(
            '%s "%s %s" %s %.1fms',
            clip(host_header or "-"),
            request.method,
            clip(request.raw_path),
            response.status,
            (loop.time() - started) * 1000,
        )
        return response

    def _known(self) -> str:
        if not self.routes:
            return "none (is anything up?)"
        return "; ".join(f"{r.isvc} (Host {r.host})" for r in sorted(self.routes.values(), key=str))

    def _find(
        self, request: web.BaseRequest, host_header: str | None
    ) -> tuple[Route, str] | web.Response:
        """The route and the upstream path of a request, or the gateway's own answer."""
        path = request.raw_path
        if path.startswith(PUBLIC_PREFIX) or path.startswith("//"):
            m = PUBLIC_FORM.fullmatch(path)
            if m:
                route = self.by_isvc.get(m.group(2))
                if route is None:
                    name = clip(m.group(2))
                    return _error(404, f"no isvc named {name!r}; known: {self._known()}")
                return route, "/" + m.group(1)
            if path.startswith(PUBLIC_PREFIX):
                return _error(
                    404,
                    "the API Gateway form is POST /service/lw/inference/v1/models/<isvc>:predict; "
                    f"known isvcs: {self._known()}",
                )
        if host_header is None:
            return _error(
                400,
                "the request has no Host header: send Host: <isvc>.<namespace>.wikimedia.org, "
                "or use /service/lw/inference/v1/models/<isvc>:predict",
                close=True,
            )
        host = host_header.rsplit(":", 1)[0].lower() if not host_header.endswith("]") else ""
        route = self.routes.get(host)
        if route is None:
            if request.path == HEALTH_PATH:
                return web.json_response(
                    {"status": "ok", "routes": sorted(self.routes), "isvcs": sorted(self.by_isvc)}
                )
            return _error(
                404, f"no isvc is served for Host {clip(host_header)!r}; known: {self._known()}"
            )
        return route, path

    async def _route(
        self, request: web.BaseRequest, host_header: str | None, deadline: float
    ) -> web.StreamResponse:
        found = self._find(request, host_header)
        if isinstance(found, web.Response):
            return found
        route, path = found
        s = self.settings
        if request.content_length is not None and request.content_length > s.max_body_bytes:
            return _error(413, f"request body is larger than {s.max_body_bytes} bytes", close=True)
        upstream = route.url
        busy = self.in_flight.get(upstream, 0)
        if busy >= s.max_connections + s.max_pending:
            return _error(
                503,
                f"{route.host} is overloaded: {s.max_connections} requests in progress and "
                f"{s.max_pending} queued (--max-connections, --max-pending); retry later",
            )
        self.in_flight[upstream] = busy + 1
        try:
            body = await self._read_body(request, deadline)
            if isinstance(body, web.Response):
                return body
            return await self._forward(request, route, path, body, deadline)
        finally:
            self.in_flight[upstream] -= 1

    async def _read_body(self, request: web.BaseRequest, deadline: float) -> bytes | web.Response:
        """The whole body (Content-Length or chunked), or 413 past the limit, 408 past the deadline,
        400 when the client stops sending."""
        limit = self.settings.max_body_bytes
        content = request.content
        try:
            async with asyncio.timeout_at(deadline):
                if request.content_length is not None:
                    return await content.readexactly(request.content_length)
                chunks, size = [], 0
                while chunk := await content.readany():
                    size += len(chunk)
                    if size > limit:
                        return _error(413, f"request body is larger than {limit} bytes", close=True)
                    chunks.append(chunk)
                return b"".join(chunks)
        except TimeoutError:
            return _error(
                408, f"the request body did not arrive within {self.settings.timeout_s}s", True
            )
        except asyncio.IncompleteReadError as e:
            return _error(
                400, f"the body ended after {len(e.partial)} of {e.expected} bytes", close=True
            )
        except (aiohttp.ClientPayloadError, HttpProcessingError, ConnectionError) as e:
            return _error(400, f"cannot read the request body: {clip(str(e))}", close=True)

    async def _forward(
        self, request: web.BaseRequest, route: Route, path: str, body: bytes, deadline: float
    ) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = route.host
        if "Host" in request.headers:
            headers["X-Forwarded-Host"] = request.headers["Host"]
        url = URL(route.url + path, encoded=True)
        data = body if body or request.method not in ("GET", "HEAD", "OPTIONS") else None
        assert self.session is not None and self.fresh is not None
        try:
            async with asyncio.timeout_at(deadline):
                try:
                    return await self._send(self.session, request.method, url, data, headers)
                except _DeadConnection as e:
                    log.info("retrying on a new connection: %s", clip(repr(e.__cause__)))
                try:
                    return await self._send(self.fresh, request.method, url, data, headers)
                except _DeadConnection as e:
                    raise e.__cause__ from None  # type: ignore[misc]
        except TimeoutError:
            return _error(504, f"{route.host} did not answer within {self.settings.timeout_s}s")
        except aiohttp.ClientError as e:
            return _error(502, f"{route.host} is not answering ({route.url}): {clip(str(e))}")

    @staticmethod
    async def _send(
        session: aiohttp.ClientSession, method: str, url: URL, data: Any, headers: dict
    ) -> web.Response:
        try:
            resp = await session.request(method, url, data=data, headers=headers)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
            if isinstance(e, aiohttp.ClientConnectorError):
                raise  # could not connect at all: no retry
            raise _DeadConnection() from e
        async with resp:
            payload = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=resp.status, reason=resp.reason, body=payload, headers=out)


def main(argv: list[str] | None = None) -> int:
    defaults = Settings(max_body_bytes=max_body_bytes())
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.runtime.gateway",
        description="Host-routing gateway of the sandbox (the Istio ingress of the local and "
        "docker targets). Limits and timeouts are per request and per isvc; see the README.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--routes", type=Path, required=True, help="JSON file {host: route}")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=8080, help="port to bind")
    parser.add_argument(
        "--timeout",
        type=float,
        default=defaults.timeout_s,
        help="seconds from a request's arrival until its whole answer: receiving the body, "
        "waiting for a connection, the isvc's answer (408 or 504 past it)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=defaults.connect_timeout_s,
        help="seconds to open a connection to an isvc (Istio's connectTimeout default)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=defaults.max_connections,
        help="connections to each isvc; more concurrent requests wait for one",
    )
    parser.add_argument(
        "--max-pending",
        type=int,
        default=defaults.max_pending,
        help="requests per isvc allowed to wait for a connection; beyond it, 503 at once",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=defaults.idle_timeout_s,
        help="seconds an idle pooled connection is kept (below uvicorn's 5 s keep-alive)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=defaults.max_body_bytes,
        help="request body limit, 413 above it (MAX_BODY_BYTES, else 1 MiB)",
    )
    args = parser.parse_args(argv)
    for name in ("timeout", "connect_timeout", "idle_timeout"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    for name in ("max_connections", "max_body_bytes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.max_pending < 0:
        parser.error("--max-pending must be >= 0")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s gateway %(message)s", stream=sys.stdout
    )
    settings = Settings(
        max_body_bytes=args.max_body_bytes,
        timeout_s=args.timeout,
        connect_timeout_s=args.connect_timeout,
        max_connections=args.max_connections,
        max_pending=args.max_pending,
        idle_timeout_s=args.idle_timeout,
    )
    gateway = Gateway(args.routes, settings)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, gateway.reload)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await gateway.start()
        runner = web.ServerRunner(_Server(gateway.handle, access_log=None))
        await runner.setup()
        try:
            await web.TCPSite(runner, args.host, args.port, backlog=1024).start()
        except OSError as e:
            print(f"gateway: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        log.info("listening on http://%s:%d; %s", args.host, args.port, settings)
        await stop.wait()
        await runner.cleanup()
        await gateway.close()

    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
