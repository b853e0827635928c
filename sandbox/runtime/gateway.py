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
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import httptools
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict

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
        "expect",
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
    """The upstream closed a reused connection before any byte of an answer (typically one it
    had closed after a 500, or when idle)."""


class UpstreamError(Exception):
    """The upstream could not be reached, or broke off its answer (502)."""


class _Response:
    __slots__ = ("body", "done", "headers", "keep_alive", "reason", "status")

    def __init__(self) -> None:
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.keep_alive = False
        self.done = False


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection to an upstream, answering one request at a time."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[_Response] | None = None
        self.response = _Response()
        self.received = False
        self.reused = False
        self.closed = False
        self.head = False
        self.idle_handle: asyncio.TimerHandle | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self.waiter is None:  # bytes nobody asked for: the connection is unusable
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("the isvc switched protocols"))
        except httptools.HttpParserError as e:
            self._fail(UpstreamError(f"malformed HTTP response: {e}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.discard(self)
        if self.waiter is not None and not self.waiter.done():
            if self.response.status and not any(
                k.lower() in ("content-length", "transfer-encoding")
                for k, _ in self.response.headers
            ):  # a body delimited by the end of the connection (HTTP/1.0 style)
                self.response.keep_alive = False
                self.waiter.set_result(self.response)
            elif not self.received and self.reused:
                self.waiter.set_exception(_DeadConnection())
            else:
                why = f": {exc}" if exc else ""
                self.waiter.set_exception(UpstreamError(f"connection closed mid-answer{why}"))

    # httptools callbacks
    def on_status(self, status: bytes) -> None:
        self.response.reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.response.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.response.status = self.parser.get_status_code()
        self.response.keep_alive = self.parser.should_keep_alive()
        if self.head:  # no body follows; do not trust the parser to know
            self.response.keep_alive = False
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        self.response.body.append(body)

    def on_message_complete(self) -> None:
        if self.response.done:
            return
        self.response.done = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.response)

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def send(self, request: bytes, head: bool) -> _Response:
        assert self.transport is not None
        self.response = _Response()
        self.received = False
        self.head = head
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            return await self.waiter
        finally:
            self.waiter = None


class _Pool:
    """Keep-alive connections to one upstream: at most `size` at once; callers beyond wait (FIFO)
    for one; idle ones close after `idle_timeout_s`."""

    def __init__(self, host: str, port: int, settings: Settings) -> None:
        self.host, self.port, self.settings = host, port, settings
        self.slots = asyncio.Semaphore(settings.max_connections)
        self.idle: list[_Connection] = []

    def discard(self, conn: _Connection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self), self.host, self.port
                )
        except TimeoutError:
            raise UpstreamError(
                f"cannot connect within {self.settings.connect_timeout_s}s"
            ) from None
        except OSError as e:
            raise UpstreamError(f"cannot connect: {e.strerror or e}") from None
        return conn

    async def request(self, request: bytes, head: bool) -> _Response:
        async with self.slots:
            conn = None
            while self.idle:
                candidate = self.idle.pop()
                if candidate.idle_handle is not None:
                    candidate.idle_handle.cancel()
                if not candidate.closed:
                    conn = candidate
                    conn.reused = True
                    break
            if conn is None:
                conn = await self._connect()
            try:
                try:
                    response = await conn.send(request, head)
                except _DeadConnection:
                    log.info("retrying on a new connection: the isvc closed a kept-alive one")
                    conn = await self._connect()
                    response = await conn.send(request, head)
            except BaseException:
                conn.close()  # cancelled (deadline) or failed mid-request: never reuse
                raise
            if response.keep_alive and not conn.closed:
                conn.idle_handle = asyncio.get_running_loop().call_later(
                    self.settings.idle_timeout_s, conn.close
                )
                self.idle.append(conn)
            else:
                conn.close()
            return response

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


_stamp: tuple[int, str] = (0, "")


def _access_log(line: str) -> None:
    """One line on stdout in the logging format below, without logging's per-record cost."""
    global _stamp
    now = time.time()
    if int(now) != _stamp[0]:
        _stamp = (int(now), time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)))
    sys.stdout.write(f"{_stamp[1]},{int(now * 1000) % 1000:03d} gateway {line}\n")
    sys.stdout.flush()


class Gateway:
    def __init__(self, routes_file: Path, settings: Settings):
        self.routes_file = routes_file
        self.settings = settings
        self.routes: dict[str, Route] = {}
        self.by_isvc: dict[str, Route] = {}
        self.in_flight: dict[str, int] = {}
        self.pools: dict[str, _Pool] = {}
        self.reload()

    def reload(self) -> None:
        self.routes = load_routes(self.routes_file)
        self.by_isvc = {r.isvc: r for r in self.routes.values()}
        log.info("routes: %s", ", ".join(self.routes) or "(none)")

    def _pool(self, url: str) -> _Pool:
        pool = self.pools.get(url)
        if pool is None:
            parsed = urlsplit(url)
            pool = _Pool(parsed.hostname or "127.0.0.1", parsed.port or 80, self.settings)
            self.pools[url] = pool
        return pool

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        started = loop.time()
        host_header = request.headers.get("Host")
        try:
            response = await self._route(request, host_header, started + self.settings.timeout_s)
        except Exception as e:  # never a traceback to the client
            log.exception("internal error: %s", clip(repr(e)))
            response = _error(500, "internal error in the gateway (see its log)")
        ms = (loop.time() - started) * 1000
        path = clip(request.raw_path)
        host = clip(host_header or "-")
        _access_log(f'{host} "{request.method} {path}" {response.status} {ms:.1f}ms')
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
            return _error(413, f"request body is larger than {s.max_body_bytes} bytes")
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
        length = request.content_length
        if length is not None:
            body = content.read_nowait(length)  # usually all of it has arrived with the headers
            if len(body) == length:
                return body
        try:
            async with asyncio.timeout_at(deadline):
                if length is not None:
                    return body + await content.readexactly(length - len(body))
                chunks, size = [], 0
                while chunk := await content.readany():
                    size += len(chunk)
                    if size > limit:
                        return _error(413, f"request body is larger than {limit} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except TimeoutError:
            return _error(
                408, f"the request body did not arrive within {self.settings.timeout_s}s", True
            )
        except asyncio.IncompleteReadError as e:
            got = length - e.expected + len(e.partial) if length is not None else len(e.partial)
            return _error(400, f"the body ended after {got} of {length} bytes", close=True)
        except (aiohttp.ClientPayloadError, HttpProcessingError, ConnectionError) as e:
            return _error(400, f"cannot read the request body: {clip(str(e))}", close=True)

    async def _forward(
        self, request: web.BaseRequest, route: Route, path: str, body: bytes, deadline: float
    ) -> web.StreamResponse:
        method = request.method
        lines = [f"{method} {path} HTTP/1.1", f"Host: {route.host}"]
        lines += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        if "Host" in request.headers:
            lines.append(f"X-Forwarded-Host: {request.headers['Host']}")
        if body or method not in ("GET", "HEAD", "OPTIONS", "DELETE"):
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
        try:
            async with asyncio.timeout_at(deadline):
                answer = await self._pool(route.url).request(head + body, method == "HEAD")
        except TimeoutError:
            return _error(504, f"{route.host} did not answer within {self.settings.timeout_s}s")
        except UpstreamError as e:
            return _error(502, f"{route.host} is not answering ({route.url}): {clip(str(e))}")
        headers = CIMultiDict((k, v) for k, v in answer.headers if k.lower() not in HOP_BY_HOP)
        return web.Response(
            status=answer.status,
            reason=answer.reason or None,
            body=b"".join(answer.body),
            headers=headers,
        )


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
        gateway.close()

    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
