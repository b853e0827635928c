"""Errors a model server maps to HTTP responses other than kserve's 400/500."""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import JSONResponse

log = logging.getLogger("kserve")


class UpstreamHTTPError(Exception):
    """A dependency (MediaWiki, the predictor) failed; the client gets `http_status` with a message.

    4xx statuses are the client's mistake passed through (e.g. the predictor rejected the input);
    502 means the dependency failed, 504 that it did not answer in time.
    """

    http_status = 502

    def __init__(self, message: str, http_status: int | None = None):
        super().__init__(message)
        if http_status is not None:
            self.http_status = http_status


class UpstreamTimeout(UpstreamHTTPError):
    http_status = 504


async def upstream_error_handler(_: Request, exc: Exception) -> JSONResponse:
    status = getattr(exc, "http_status", 502)
    log.warning("%s: %s", status, exc)
    return JSONResponse(status_code=status, content={"error": str(exc)})


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})
