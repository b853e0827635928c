"""A request body limit for kserve's FastAPI app (kserve has none): 413 JSON past the limit."""

from __future__ import annotations

import json
import os

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def max_body_bytes() -> int:
    """MAX_BODY_BYTES from the environment (bytes), 1 MiB by default."""
    raw = os.environ.get("MAX_BODY_BYTES", "")
    try:
        return int(raw) if raw else DEFAULT_MAX_BODY_BYTES
    except ValueError:
        raise SystemExit(f"MAX_BODY_BYTES must be a number of bytes, got {raw!r}") from None


def too_large_message(limit: int) -> bytes:
    return json.dumps({"error": f"request body is larger than the limit of {limit} bytes"}).encode()


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Pure ASGI middleware: rejects by Content-Length up front, and counts streamed bodies."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    if int(value) > self.limit:
                        return await self._reject(send)
                except ValueError:
                    return await self._reject(send, status=400, message=b"bad Content-Length")
        seen = 0
        started = False

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send, status: int = 413, message: bytes | None = None):
        body = (
            too_large_message(self.limit)
            if message is None
            else json.dumps({"error": message.decode()}).encode()
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
