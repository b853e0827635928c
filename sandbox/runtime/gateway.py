"""The sandbox's ingress: routes by Host header (`<isvc>.<namespace>.wikimedia.org`) like Istio.

One gateway serves every isvc of a sandbox, on the local and docker targets alike. Routes live in a
JSON file (`{"<host>": "http://127.0.0.1:<port>"}`) that the runtime rewrites; the gateway re-reads
it on SIGHUP. Run: `python -m sandbox.runtime.gateway --routes FILE [--host H] [--port P]`.

Errors are JSON: 404 for an unknown Host (listing the known ones), 413 over the body limit,
502 when the isvc does not answer, 504 when it is too slow.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from sandbox.serving.limits import max_body_bytes

log = logging.getLogger("gateway")

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
HEALTH_PATH = "/__sandbox__/health"


def load_routes(path: Path) -> dict[str, str]:
    try:
        routes = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return {host.lower(): url.rstrip("/") for host, url in routes.items()}


def write_routes(path: Path, routes: dict[str, str]) -> None:
    """Atomically replace the routes file (the gateway never reads a half-written one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # private, like the run dir
    with os.fdopen(fd, "w") as f:
        json.dump(routes, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Gateway:
    def __init__(self, routes_file: Path, timeout_s: float, max_body_bytes: int):
        self.routes_file = routes_file
        self.routes = load_routes(routes_file)
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.max_body_bytes = max_body_bytes
        self.session: aiohttp.ClientSession | None = None

    def reload(self) -> None:
        self.routes = load_routes(self.routes_file)
        log.info("routes: %s", ", ".join(self.routes) or "(none)")

    async def start_session(self, _: web.Application) -> None:
        self.session = aiohttp.ClientSession(
            timeout=self.timeout,
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=60),
            auto_decompress=False,
        )

    async def close_session(self, _: web.Application) -> None:
        if self.session:
            await self.session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        host = (request.host or "").split(":")[0].lower()
        response = await self._route(request, host)
        log.info(
            '%s "%s %s" %s %.1fms',
            host,
            request.method,
            request.path_qs,
            response.status,
            (time.perf_counter() - started) * 1000,
        )
        return response

    async def _route(self, request: web.Request, host: str) -> web.StreamResponse:
        upstream = self.routes.get(host)
        if upstream is None:
            if request.path == HEALTH_PATH:
                return web.json_response({"status": "ok", "routes": self.routes})
            known = ", ".join(sorted(self.routes)) or "none (is anything up?)"
            return _error(404, f"no isvc is served for Host {host!r}; known hosts: {known}")
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            return _error(413, f"request body is larger than {self.max_body_bytes} bytes")
        try:
            body = await request.content.read(self.max_body_bytes + 1)
        except aiohttp.ClientPayloadError as e:
            return _error(400, f"cannot read the request body: {e}")
        if len(body) > self.max_body_bytes:
            return _error(413, f"request body is larger than {self.max_body_bytes} bytes")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-Host"] = request.host
        assert self.session is not None
        try:
            async with self.session.request(
                request.method, upstream + request.path_qs, data=body, headers=headers
            ) as resp:
                payload = await resp.read()
                out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
                return web.Response(status=resp.status, body=payload, headers=out_headers)
        except TimeoutError:
            return _error(504, f"{host} did not answer within {self.timeout.total}s")
        except aiohttp.ClientError as e:
            return _error(502, f"{host} is not answering ({upstream}): {e}")


def build_app(gateway: Gateway) -> web.Application:
    app = web.Application(client_max_size=gateway.max_body_bytes + 1)
    app.on_startup.append(gateway.start_session)
    app.on_cleanup.append(gateway.close_session)
    app.router.add_route("*", "/{tail:.*}", gateway.handle)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.runtime.gateway",
        description="Host-routing gateway of the sandbox (the Istio ingress of the local target).",
    )
    parser.add_argument("--routes", type=Path, required=True, help="JSON file {host: upstream URL}")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--timeout", type=float, default=60.0, help="upstream timeout, seconds")
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=max_body_bytes(),
        help="request body limit (default: MAX_BODY_BYTES, else 1 MiB, as the model servers)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s gateway %(message)s", stream=sys.stdout
    )
    gateway = Gateway(args.routes, args.timeout, args.max_body_bytes)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, gateway.reload)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        runner = web.AppRunner(build_app(gateway), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, args.host, args.port, backlog=1024).start()
        except OSError as e:
            print(f"gateway: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        log.info("listening on http://%s:%d; routes: %s", args.host, args.port, gateway.routes)
        await stop.wait()
        await runner.cleanup()

    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
