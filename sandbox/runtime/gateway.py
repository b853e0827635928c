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

An absolute-form request target (`POST http://<isvc>.<ns>.wikimedia.org/v1/models/...`) is routed
by its authority, not by the Host header (RFC 9112 §3.2.2).

Every error the gateway itself answers is JSON `{"error": "..."}`: 400 for malformed HTTP and a
missing or malformed Host (a port that is not digits up to 65535), 404 for an unknown Host or
isvc (listing the known ones), 408 when the headers or the body do not arrive in time, 413 over
the body limit, 431 for oversized headers, 502 when the isvc does not answer, 503 when its queue
is full or while nothing healthy serves it (being replaced after a crash), 504 when it is too
slow.

Both sides speak HTTP/1.1 with httptools (llhttp) on asyncio/uvloop: a server protocol that
reads each body whole before forwarding it, and a pool of keep-alive connections per isvc.
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
from collections import deque
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import httptools

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
HOP_BY_HOP_HEAD = HOP_BY_HOP - {"content-length"}  # a HEAD answer keeps the GET's length
HEALTH_PATH = "/__sandbox__/health"
# The request body limit (413 above it), as Envoy's buffer limit in front of Lift Wing's isvcs;
# `ml-sandbox up --max-body-bytes` sets it.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# api.wikimedia.org's REST gateway: `in: '/+service/lw/inference/(v1/models/<isvc>:predict(.*))'`,
# `out: '/\1'`, `to: '<isvc>.<namespace>.wikimedia.org'` (operations-deployment-charts,
# helmfile.d/services/rest-gateway/values.yaml, liftwing_inference).
PUBLIC_PREFIX = "/service/lw/inference/"
PUBLIC_FORM = re.compile(r"/+service/lw/inference/(v1/models/([\w.-]+):predict(.*))", re.DOTALL)
LOG_FIELD_MAX = 200  # characters of a path or Host in one log line
MAX_LINE = 8190  # bytes of the request line, and of one header line (aiohttp's limit)
MAX_HEADERS = 128  # header fields of a request (aiohttp's limit)
CLIENT_IDLE_S = 75.0  # an idle client connection is closed after this (aiohttp's keep-alive)


@dataclass(frozen=True)
class Route:
    host: str
    url: str  # "" while nothing healthy serves the isvc (then `unavailable` says why)
    isvc: str
    unavailable: str = ""


@dataclass(frozen=True)
class Settings:
    """The gateway's limits and timeouts (see `main --help` and the README for the defaults)."""

    max_body_bytes: int
    timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    max_connections: int = 256
    max_pending: int = 256
    idle_timeout_s: float = 4.0
    # From the first byte of a request until its headers are complete (Envoy's
    # request_headers_timeout; 0 = off, Envoy's default). 408 past it.
    request_headers_timeout_s: float = 10.0


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
        url = (target.get("url") or "").rstrip("/")
        reason = target.get("unavailable") or ("" if url else "it has no healthy backend")
        routes[host] = Route(host, url, target["isvc"], reason if not url else "")
    return routes


def write_routes(path: Path, routes: dict[str, dict[str, str | None]]) -> None:
    """Atomically replace the routes file, `{host: {"url": ..., "isvc": ...}}` (the gateway never
    reads a half-written one). A route whose `url` is None is held: the gateway keeps the Host and
    answers 503 with the route's `unavailable` reason (an isvc being replaced after a crash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    body = {
        host: {"url": r["url"], "isvc": r["isvc"]}
        | ({"unavailable": r["unavailable"]} if r.get("unavailable") else {})
        for host, r in routes.items()
    }
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # private, like the run dir
    with os.fdopen(fd, "w") as f:
        json.dump(body, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


# RFC 3986 §3.2.2-3: an IP literal in brackets or a reg-name, then an optional port of digits
# (which may be empty). A reg-name holds no space, `/`, `?`, `#`, `@`, `[`, `]` or `:`.
_AUTHORITY = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s/?#@\[\]:]*)(?::([^:]*))?")
_ABSOLUTE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^#]*)", re.DOTALL)


def split_authority(value: str) -> tuple[str, str] | None:
    """(host lower-cased, port) of a Host header or a request target's authority, or None when
    it is not one: a port that is not digits or over 65535 (`:abc`, `:99999`)."""
    m = _AUTHORITY.fullmatch(value.strip())
    if m is None:
        return None
    host, port = m.group(1).lower().rstrip("."), m.group(2) or ""
    if port and (not port.isascii() or not port.isdigit() or len(port) > 5 or int(port) > 65535):
        return None
    return host, port


def clip(text: str, limit: int = LOG_FIELD_MAX) -> str:
    """`text`, cut to `limit` characters with a marker saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[+{len(text) - limit} chars]"


@dataclass
class Answer:
    """What goes back to the client."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    reason: str = ""
    close: bool = False


def _error(status: int, message: str, close: bool = False) -> Answer:
    body = json.dumps({"error": message}).encode()
    return Answer(status, [("Content-Type", "application/json")], body, close=close)


@dataclass
class Request:
    method: str
    raw_path: str
    headers: list[tuple[str, str]]
    host: str | None
    body: bytes
    started: float


_date: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date
    now = int(time.time())
    if now != _date[0]:
        _date = (now, formatdate(now, usegmt=True))
    return _date[1]


class _Downstream(asyncio.Protocol):
    """One client connection: parses requests with httptools (llhttp, as Node.js), reads each
    body whole, hands complete requests to the gateway and writes the answers in order."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[tuple[Request | None, Answer | None, bool]] = deque()
        self.task: asyncio.Task | None = None
        self.closed = False
        self.idle_handle: asyncio.TimerHandle | None = None
        self.body_handle: asyncio.TimerHandle | None = None
        self.headers_handle: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.size = 0
        self.early: Answer | None = None  # answered before the body was complete
        self.answered = False
        self.started = 0.0
        self.host: str | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for handle in (self.idle_handle, self.body_handle, self.headers_handle):
            if handle is not None:
                handle.cancel()
        if self.task is not None:
            self.task.cancel()  # nobody is left to read the answer

    def data_received(self, data: bytes) -> None:
        if self.idle_handle is not None:
            self.idle_handle.cancel()
            self.idle_handle = None
        if self.closed:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(_error(400, "protocol upgrades are not supported", close=True))
        except httptools.HttpParserError as e:
            text = clip(" ".join(str(e).split()), 300)
            self._refuse(_error(400, f"malformed HTTP request: {text}", close=True))

    def _refuse(self, answer: Answer) -> None:
        """Answer a request the parser cannot go on with, then close; read nothing more."""
        self.transport.pause_reading()  # type: ignore[union-attr]
        log.warning("%s from %s: %s", answer.status, self._peer(), json.loads(answer.body)["error"])
        if not self.answered:
            self.answered = True
            self._enqueue(None, answer)

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if peer else "?"

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._reset()
        self.started = self.loop.time()
        self.headers_handle = self.loop.call_later(self._headers_limit()[0], self._headers_timeout)

    def _headers_limit(self) -> tuple[float, str]:
        """How long the headers may take, and the flag that says so: --request-headers-timeout,
        or --timeout (which counts from the request's first byte) when it is shorter or the
        other is off."""
        s = self.gateway.settings
        if 0 < s.request_headers_timeout_s <= s.timeout_s:
            return s.request_headers_timeout_s, "--request-headers-timeout"
        return s.timeout_s, "--timeout"

    def _headers_timeout(self) -> None:
        self.headers_handle = None
        if not self.answered:
            limit, flag = self._headers_limit()
            self._refuse(
                _error(408, f"the request headers did not arrive within {limit:g}s ({flag})", True)
            )

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_LINE and self.early is None:
            self.early = _error(431, f"the request line is longer than {MAX_LINE} bytes", True)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.early is not None:
            return
        if len(self.headers) >= MAX_HEADERS:
            self.early = _error(431, f"more than {MAX_HEADERS} header fields", True)
        elif len(name) + len(value) > MAX_LINE:
            self.early = _error(431, f"a header line is longer than {MAX_LINE} bytes", True)
        else:
            self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self.headers_handle is not None:
            self.headers_handle.cancel()
            self.headers_handle = None
        limit = self.gateway.settings.max_body_bytes
        length = None
        expect = False
        for name, value in self.headers:
            lower = name.lower()
            if lower == "host":
                if self.host is not None:
                    self.early = self.early or _error(400, "more than one Host header", True)
                self.host = value
            elif lower == "content-length":
                length = int(value)  # llhttp has checked it
            elif lower == "expect":
                expect = value.lower() == "100-continue"
        if self.early is None and length is not None and length > limit:
            self.early = _error(413, f"request body is larger than {limit} bytes")
        if self.early is not None:
            self.answered = True
            self._enqueue(None, self.early)
            return
        if expect:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # type: ignore[union-attr]
        remaining = self.started + self.gateway.settings.timeout_s - self.loop.time()
        self.body_handle = self.loop.call_later(max(remaining, 0), self._body_timeout)

    def on_body(self, body: bytes) -> None:
        if self.answered:
            return  # drained: the answer is out already
        self.size += len(body)
        limit = self.gateway.settings.max_body_bytes
        if self.size > limit:
            self.answered = True
            self._cancel_body_timer()
            self._enqueue(None, _error(413, f"request body is larger than {limit} bytes"))
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        self._cancel_body_timer()
        if self.answered:
            return
        self.answered = True
        request = Request(
            method=self.parser.get_method().decode("latin-1"),
            raw_path=self.url.decode("latin-1"),
            headers=self.headers,
            host=self.host,
            body=b"".join(self.body),
            started=self.started,
        )
        self._enqueue(request, None)

    def _cancel_body_timer(self) -> None:
        if self.body_handle is not None:
            self.body_handle.cancel()
            self.body_handle = None

    def _body_timeout(self) -> None:
        self.body_handle = None
        if not self.answered:
            timeout = self.gateway.settings.timeout_s
            self._refuse(_error(408, f"the request body did not arrive within {timeout}s", True))

    # answers, in order
    def _enqueue(self, request: Request | None, answer: Answer | None) -> None:
        keep_alive = self.parser.should_keep_alive() if answer is None else not answer.close
        self.queue.append((request, answer, keep_alive))
        if self.task is None:
            self.task = self.loop.create_task(self._answer_all())

    async def _answer_all(self) -> None:
        try:
            while self.queue and not self.closed:
                request, answer, keep_alive = self.queue.popleft()
                if request is not None:
                    answer = await self.gateway.handle(request)
                else:
                    self.gateway.log_refused(self, answer)
                assert answer is not None
                self._write(answer, request, keep_alive and not answer.close)
                if answer.close or not keep_alive:
                    self.closed = True
                    self.transport.close()  # type: ignore[union-attr]
                    return
        finally:
            self.task = None
        self._idle()

    def _write(self, answer: Answer, request: Request | None, keep_alive: bool) -> None:
        reason = answer.reason or HTTPStatus(answer.status).phrase
        lines = [f"HTTP/1.1 {answer.status} {reason}"]
        head_only = request is not None and request.method == "HEAD"
        has_length = False
        for name, value in answer.headers:
            if name.lower() == "content-length":
                if not head_only:
                    continue
                has_length = True
            lines.append(f"{name}: {value}")
        if not has_length:
            lines.append(f"Content-Length: {len(answer.body)}")
        if not any(name.lower() == "date" for name, _ in answer.headers):
            lines.append(f"Date: {_http_date()}")
        if not keep_alive:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        self.transport.write(head if head_only else head + answer.body)  # type: ignore[union-attr]

    def _idle(self) -> None:
        if not self.closed and self.task is None:
            self.idle_handle = self.loop.call_later(CLIENT_IDLE_S, self._close_idle)

    def _close_idle(self) -> None:
        self.idle_handle = None
        if self.task is None and not self.closed:
            self.closed = True
            self.transport.close()  # type: ignore[union-attr]


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

    async def handle(self, request: Request) -> Answer:
        try:
            answer = await self._route(request)
        except Exception as e:  # never a traceback to the client
            log.exception("internal error: %s", clip(repr(e)))
            answer = _error(500, "internal error in the gateway (see its log)")
        ms = (asyncio.get_running_loop().time() - request.started) * 1000
        path = clip(request.raw_path)
        host = clip(request.host or "-")
        _access_log(f'{host} "{request.method} {path}" {answer.status} {ms:.1f}ms')
        return answer

    def log_refused(self, conn: _Downstream, answer: Answer | None) -> None:
        if answer is not None:
            path = clip(conn.url.decode("latin-1")) or "-"
            _access_log(f'{clip(conn.host or "-")} "{path}" {answer.status} refused')

    def _known(self) -> str:
        if not self.routes:
            return "none (is anything up?)"
        return "; ".join(f"{r.isvc} (Host {r.host})" for r in sorted(self.routes.values(), key=str))

    def _find(self, request: Request) -> tuple[Route, str] | Answer:
        """The route and the upstream path of a request, or the gateway's own answer."""
        path = request.raw_path
        host_header = request.host
        absolute = _ABSOLUTE.fullmatch(path) if not path.startswith("/") else None
        if absolute is not None:
            # RFC 9112 §3.2.2: the target's authority, not the Host header, names the origin.
            scheme, authority, rest = absolute.groups()
            if scheme.lower() not in ("http", "https") or not authority:
                return _error(
                    400,
                    f"an absolute request target must be http://<host>/<path>; got {clip(path)!r}",
                    close=True,
                )
            host_header = request.host = authority  # X-Forwarded-Host and the log say it too
            path = rest if rest.startswith("/") else "/" + rest
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
        authority = split_authority(host_header)
        if authority is None:
            return _error(
                400,
                f"the Host {clip(host_header)!r} is not a host with an optional port (digits, "
                "at most 65535): send Host: <isvc>.<namespace>.wikimedia.org",
                close=True,
            )
        host = authority[0]
        route = self.routes.get(host)
        if route is None:
            if path.split("?", 1)[0] == HEALTH_PATH:
                health = {
                    "status": "ok",
                    # host -> upstream: `ml-sandbox up` waits until a route switch is served
                    "routes": {h: r.url or None for h, r in sorted(self.routes.items())},
                    "isvcs": sorted(self.by_isvc),
                }
                return Answer(
                    200, [("Content-Type", "application/json")], json.dumps(health).encode()
                )
            return _error(
                404, f"no isvc is served for Host {clip(host_header)!r}; known: {self._known()}"
            )
        return route, path

    async def _route(self, request: Request) -> Answer:
        found = self._find(request)
        if isinstance(found, Answer):
            return found
        route, path = found
        s = self.settings
        if not route.url:  # kept while it is replaced: never a 404 for a known isvc
            answer = _error(
                503, f"{route.isvc} (Host {route.host}) is unavailable: {route.unavailable}"
            )
            answer.headers.append(("Retry-After", "1"))
            return answer
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
            return await self._forward(request, route, path, request.started + s.timeout_s)
        finally:
            self.in_flight[upstream] -= 1

    async def _forward(self, request: Request, route: Route, path: str, deadline: float) -> Answer:
        method, body = request.method, request.body
        lines = [f"{method} {path} HTTP/1.1", f"Host: {route.host}"]
        lines += [f"{k}: {v}" for k, v in request.headers if k.lower() not in HOP_BY_HOP]
        if request.host is not None:
            lines.append(f"X-Forwarded-Host: {request.host}")
        if body or method not in ("GET", "HEAD", "OPTIONS", "DELETE"):
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        try:
            async with asyncio.timeout_at(deadline):
                answer = await self._pool(route.url).request(head + body, method == "HEAD")
        except TimeoutError:
            return _error(504, f"{route.host} did not answer within {self.settings.timeout_s}s")
        except UpstreamError as e:
            return _error(502, f"{route.host} is not answering ({route.url}): {clip(str(e))}")
        if method == "HEAD":
            headers = [(k, v) for k, v in answer.headers if k.lower() not in HOP_BY_HOP_HEAD]
        else:
            headers = [(k, v) for k, v in answer.headers if k.lower() not in HOP_BY_HOP]
        return Answer(answer.status, headers, b"".join(answer.body), answer.reason)


def main(argv: list[str] | None = None) -> int:
    defaults = Settings(max_body_bytes=DEFAULT_MAX_BODY_BYTES)
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
        "--request-headers-timeout",
        type=float,
        default=defaults.request_headers_timeout_s,
        help="seconds from the first byte of a request until its headers are complete, 408 past "
        "it (Envoy's request_headers_timeout; 0 turns it off, Envoy's default)",
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
    if not 0 <= args.request_headers_timeout < float("inf"):
        parser.error("--request-headers-timeout must be >= 0 (0: off)")
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
        request_headers_timeout_s=args.request_headers_timeout,
    )
    gateway = Gateway(args.routes, settings)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, gateway.reload)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        try:
            server = await loop.create_server(
                lambda: _Downstream(gateway), args.host, args.port, backlog=1024
            )
        except OSError as e:
            print(f"gateway: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        log.info("listening on http://%s:%d; %s", args.host, args.port, settings)
        await stop.wait()
        server.close()
        gateway.close()

    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
