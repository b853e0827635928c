"""What keeps the console, a web page on loopback, from being used by another site.

- The server binds 127.0.0.1 only.
- Every request must name the console itself in its `Host` header (127.0.0.1:PORT or
  localhost:PORT): a page on a foreign name that was re-pointed at 127.0.0.1 (DNS rebinding) is
  refused, so no other site can read the console even through the browser.
- A request the browser marks as coming from another site (`Sec-Fetch-Site: cross-site` or
  `same-site`, or an `Origin` that is not the console's) is refused.
- Every action is a POST with a JSON body and the header `X-Console-Token`, a random token made
  for this run of the server, which the page reads from the server (same-origin only). A form
  post from another site can set neither.
- Every answer forbids framing, sniffing, referrers, and scripts or connections other than the
  console's own (Content-Security-Policy), so nothing an isvc answers or logs can run as code;
  the page also writes all data as text.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

TOKEN_HEADER = "X-Console-Token"
SAFE_METHODS = ("GET", "HEAD")
SAME_ORIGIN = ("same-origin", "none")
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _refuse(status: int, why: str) -> web.Response:
    return web.json_response({"error": why}, status=status, headers=HEADERS)


def guard(port: int, token: str):
    """The middleware that enforces the rules above for a console on 127.0.0.1:`port`."""
    hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
    origins = {f"http://{h}" for h in hosts}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        if host.lower() not in hosts:
            return _refuse(
                403,
                f"Host {host[:100]!r} is not this console's; open http://127.0.0.1:{port}/",
            )
        fetch_site = request.headers.get("Sec-Fetch-Site")
        if fetch_site is not None and fetch_site not in SAME_ORIGIN:
            return _refuse(403, f"cross-site request refused (Sec-Fetch-Site: {fetch_site[:40]})")
        origin = request.headers.get("Origin")
        if origin is not None and origin not in origins:
            return _refuse(403, f"request from another origin refused ({origin[:100]})")
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(TOKEN_HEADER, "")
            if not hmac.compare_digest(sent.encode(), token.encode()):
                return _refuse(403, f"missing or wrong {TOKEN_HEADER}: reload the console")
            if request.content_type != "application/json":
                return _refuse(415, "actions take a JSON body (Content-Type: application/json)")
        try:
            response = await handler(request)
        except web.HTTPException as e:
            e.headers.update(HEADERS)
            raise
        if not response.prepared:
            response.headers.update(HEADERS)
        return response

    return middleware
