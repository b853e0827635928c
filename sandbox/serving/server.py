"""Start a kserve model server the way KServe starts a pod's container, with the sandbox's fixes.

Services call `run(make_model, ...)` from their `__main__`. Differences from stock
`kserve.ModelServer`, each a documented sandbox choice:
- binds `SANDBOX_HTTP_HOST` (default 127.0.0.1; the images set 0.0.0.0) instead of always 0.0.0.0;
- a request body limit (MAX_BODY_BYTES, default 1 MiB) answered with 413 JSON;
- per-request logging off: kserve's latency logging unless `--enable_latency_logging true`, the
  access log unless SANDBOX_ACCESS_LOG=1 (together they cost ~40% throughput; the gateway logs
  every request anyway); a client's mistake (400) logs one line, not a traceback;
- REST only (Lift Wing's isvcs are REST), so several servers can share a host;
- the predict routes tried first (kserve registers ~30 routes; matching costs ~10%);
- uvloop as the event loop when `--event-loop` is auto (kserve asks for it but runs asyncio's);
- errors of dependencies (`UpstreamHTTPError`) answered as JSON with their status (502/504, or
  the predictor's 4xx) instead of 500.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import warnings
from collections.abc import Callable

import kserve
from fastapi import Request
from fastapi.responses import JSONResponse
from kserve import model_server as kserve_model_server
from kserve.errors import InvalidInput
from kserve.protocol.rest.server import RESTServer

from sandbox.serving.errors import UpstreamHTTPError, error_response, upstream_error_handler
from sandbox.serving.limits import BodyLimitMiddleware, max_body_bytes

log = logging.getLogger("kserve")

FASTAPI_APP = "kserve.model_server:app"


def build_parser(description: str) -> argparse.ArgumentParser:
    """kserve's own arguments (--model_name, --http_port, --predictor_host, ...) plus ours."""
    parser = argparse.ArgumentParser(description=description, parents=[kserve_model_server.parser])
    parser.set_defaults(enable_latency_logging=False)
    parser.add_argument(
        "--http_host",
        default=os.environ.get("SANDBOX_HTTP_HOST", "127.0.0.1"),
        help="address to bind (env SANDBOX_HTTP_HOST; default 127.0.0.1, the images use 0.0.0.0)",
    )
    return parser


class SandboxRESTServer(RESTServer):
    def __init__(self, *args, host: str, body_limit: int, latency_logging: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.host = host
        if os.environ.get("SANDBOX_ACCESS_LOG", "0") != "1":
            access = logging.getLogger("uvicorn.access")
            access.handlers = []
            access.propagate = False
        self._body_limit = body_limit
        self._latency_logging = latency_logging

    def _add_middlewares(self, app) -> None:
        if self._latency_logging:
            super()._add_middlewares(app)
        app.add_middleware(BodyLimitMiddleware, limit=self._body_limit)

    def _register_endpoints(self, app) -> None:
        super()._register_endpoints(app)
        # Starlette tries routes in order and kserve registers ~30; put the hot path first.
        # No other route's pattern matches `...:predict` with POST, so behaviour is unchanged.
        hot = [r for r in app.router.routes if getattr(r, "path", "").endswith(":predict")]
        rest = [r for r in app.router.routes if r not in hot]
        app.router.routes[:] = hot + rest

    def _add_exception_handlers(self, app) -> None:
        super()._add_exception_handlers(app)
        app.add_exception_handler(InvalidInput, invalid_input_handler)
        app.add_exception_handler(UpstreamHTTPError, upstream_error_handler)


async def invalid_input_handler(_: Request, exc: Exception) -> JSONResponse:
    log.info("400: %s", exc)
    return error_response(400, str(exc))


class SandboxModelServer(kserve.ModelServer):
    def __init__(self, *, host: str, body_limit: int, **kwargs):
        super().__init__(**kwargs)
        self._host = host
        self._body_limit = body_limit

    def start(self, models: list[kserve.Model]) -> None:
        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = SandboxRESTServer(
            FASTAPI_APP,
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            host=self._host,
            body_limit=self._body_limit,
            latency_logging=self.enable_latency_logging,
            access_log_format=self.access_log_format,
            workers=1,
            grace_period=self.grace_period,
            event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
        )
        self.servers.append(self._rest_server.start())
        self.register_signal_handler()
        if self.event_loop in ("auto", "uvloop"):
            # kserve runs its servers under asyncio.run(), i.e. the stdlib loop, whatever
            # --event-loop says; uvloop (a kserve dependency) serves ~30% more requests.
            try:
                import uvloop

                uvloop.run(self._serve_with_loop_setup())
                return
            except ImportError:
                pass
        asyncio.run(self._serve_with_loop_setup())

    async def _serve_with_loop_setup(self) -> None:
        self.setup_event_loop()  # executor and exception handler, on the running loop
        await self._serve()


def _quiet_deprecations() -> None:
    """kserve 0.21 answers with FastAPI's deprecated ORJSONResponse: one warning per request."""
    try:
        from fastapi.exceptions import FastAPIDeprecationWarning
    except ImportError:
        return
    warnings.filterwarnings("ignore", category=FastAPIDeprecationWarning)


def run(
    make_model: Callable[[argparse.Namespace], kserve.Model],
    description: str,
    argv: list[str] | None = None,
) -> None:
    """Parse KServe's container args, build the model (which loads itself) and serve it."""
    args, _ = build_parser(description).parse_known_args(argv)
    _quiet_deprecations()
    try:
        model = make_model(args)
        model.load()
    except (OSError, ValueError) as e:
        # A missing or corrupt model is an operator error: say so in one line and exit non-zero.
        print(f"{args.model_name}: cannot load the model: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    if args.workers != 1:
        log.warning("the sandbox runs one worker per process; ignoring --workers %s", args.workers)
    if args.enable_grpc:
        log.warning("the sandbox serves REST only; ignoring --enable_grpc")
    SandboxModelServer(
        host=args.http_host,
        body_limit=max_body_bytes(),
        http_port=args.http_port,
        enable_grpc=False,
        enable_latency_logging=args.enable_latency_logging,
        access_log_format=args.access_log_format,
        event_loop=args.event_loop,
        timeout_keep_alive=args.timeout_keep_alive,
    ).start([model])
