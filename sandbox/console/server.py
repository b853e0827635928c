"""The console's HTTP server (aiohttp): the page's static files and a small JSON API.

| GET  /api/session                      | the per-run action token (same-origin only) |
| GET  /api/overview, /api/events        | the overview, once or as server-sent events |
| GET  /api/isvcs/{isvc}                 | service.yaml facts and samples               |
| GET  /api/isvcs/{isvc}/requests        | recent requests from the gateway's log       |
| POST /api/isvcs/{isvc}/predict         | `predict`: a sample (its checks) or a body   |
| POST /api/isvcs/{isvc}/actions         | start, restart, stop, rebuild-model (the CLI)|
| GET  /api/jobs/{id}                    | an action's output and exit code             |
| GET  /api/logs/{name}/stream, /search  | `logs [-f]` of an isvc, gateway or mediawiki |
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from sandbox import catalog
from sandbox.console import HEALTH_PATH, actions, security, view
from sandbox.errors import CatalogError, RunError, SandboxError

STATIC = Path(__file__).parent / "static"
OVERVIEW_EVERY_S = 1.5
KEEPALIVE_S = 10.0
LOG_HISTORY_LINES = 500
LOG_SEARCH_LINES = 200_000  # how far back a search reads, across rotated files
LOG_SEARCH_HITS = 1000
LINE_LIMIT = 4 * 1024 * 1024  # the longest log line read whole (a traceback, a logged body)
PLATFORM_LOGS = ("gateway", "mediawiki")

TOKEN_KEY = web.AppKey("token", str)
PORT_KEY = web.AppKey("port", int)
TARGET_KEY = web.AppKey("target", object)
JOBS_KEY = web.AppKey("jobs", actions.Jobs)
STREAMS_KEY = web.AppKey("streams", set)  # the tasks serving event streams, ended at shutdown


async def _blocking(fn, *args: Any) -> Any:
    """Run a blocking read of the sandbox in a thread; its errors become JSON answers."""
    try:
        return await asyncio.to_thread(fn, *args)
    except CatalogError as e:
        raise _json_error(404, str(e)) from None
    except SandboxError as e:
        raise _json_error(409, str(e)) from None


def _json_error(status: int, why: str) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 409: web.HTTPConflict}[status]
    return cls(text=json.dumps({"error": why}), content_type="application/json")


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def session(request: web.Request) -> web.Response:
    return web.json_response({"token": request.app[TOKEN_KEY], "port": request.app[PORT_KEY]})


async def overview(request: web.Request) -> web.Response:
    return web.json_response(await _blocking(view.overview, request.app[TARGET_KEY]))


async def _sse(request: web.Request) -> web.StreamResponse:
    task = asyncio.current_task()
    streams = request.app[STREAMS_KEY]
    streams.add(task)
    if task is not None:
        task.add_done_callback(streams.discard)
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no", **security.HEADERS}
    )
    await resp.prepare(request)
    return resp


async def _send(resp: web.StreamResponse, event: str, data: Any) -> None:
    await resp.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())


async def events(request: web.Request) -> web.StreamResponse:
    """The overview whenever it changes (checked every 1.5 s), as server-sent events."""
    resp = await _sse(request)
    last, quiet = None, 0.0
    try:
        while True:
            try:
                data = await asyncio.to_thread(view.overview, request.app[TARGET_KEY])
            except SandboxError as e:
                data = {"error": str(e)}
            data.pop("time", None)
            if data != last:
                await _send(resp, "overview", data)
                last, quiet = data, 0.0
            elif quiet >= KEEPALIVE_S:
                await resp.write(b": keepalive\n\n")
                quiet = 0.0
            await asyncio.sleep(OVERVIEW_EVERY_S)
            quiet += OVERVIEW_EVERY_S
    except ConnectionResetError:
        pass  # the page went away
    return resp


async def isvc(request: web.Request) -> web.Response:
    name = request.match_info["isvc"]
    return web.json_response(await _blocking(view.isvc_page, name, request.app[TARGET_KEY]))


async def requests_(request: web.Request) -> web.Response:
    return web.json_response(await _blocking(view.recent_requests, request.match_info["isvc"]))


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _json_error(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise _json_error(400, "the body must be a JSON object")
    return body


async def predict(request: web.Request) -> web.Response:
    body = await _json_body(request)
    sample, data = body.get("sample"), body.get("body")
    if (sample is None) == (data is None) or not isinstance(sample or data, str):
        raise _json_error(400, "give either a sample name or a body (a string)")
    name = request.match_info["isvc"]
    target = request.app[TARGET_KEY]
    return web.json_response(await _blocking(view.predict, name, sample, data, target))


async def act(request: web.Request) -> web.Response:
    body = await _json_body(request)
    action = body.get("action")
    if action not in actions.ACTIONS:
        raise _json_error(400, f"action must be one of: {', '.join(actions.ACTIONS)}")
    name = request.match_info["isvc"]
    target = request.app[TARGET_KEY] or "local"
    try:
        job = request.app[JOBS_KEY].start(action, name, str(target))
    except CatalogError as e:
        raise _json_error(404, str(e)) from None
    except RunError as e:
        raise _json_error(409, str(e)) from None
    return web.json_response(job.to_dict(), status=202)


async def job(request: web.Request) -> web.Response:
    try:
        found = request.app[JOBS_KEY].jobs[int(request.match_info["id"])]
    except (KeyError, ValueError):
        raise _json_error(404, "no such action (only the last ones are kept)") from None
    return web.json_response(found.to_dict())


def _logs_args(request: web.Request, lines: int, follow: bool) -> list[str]:
    name = request.match_info["name"]
    if name not in PLATFORM_LOGS:
        try:
            catalog.get(name)
        except CatalogError as e:
            raise _json_error(404, str(e)) from None
    args = ["logs", name, "-n", str(lines)]
    component = request.query.get("component")
    if component:
        if component not in ("predictor", "transformer"):
            raise _json_error(400, "component must be predictor or transformer")
        args += ["--component", component]
    target = request.app[TARGET_KEY]
    if target:
        args += ["--target", str(target)]
    return [*args, "-f"] if follow else args


async def _cli(args: list[str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=actions.child_env(),
        limit=LINE_LIMIT,
    )


async def log_stream(request: web.Request) -> web.StreamResponse:
    """`ml-sandbox logs NAME -f`: its history, then each new line, as server-sent events."""
    args = _logs_args(request, LOG_HISTORY_LINES, follow=True)
    resp = await _sse(request)
    proc = await _cli(args)
    assert proc.stdout is not None
    try:
        while True:
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), KEEPALIVE_S)
            except TimeoutError:
                await resp.write(b": keepalive\n\n")
                continue
            if not line:
                await _send(resp, "end", {"returncode": await proc.wait()})
                break
            await _send(resp, "line", line.decode(errors="replace").rstrip("\n"))
    except ConnectionResetError:
        pass  # the page went away
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
    return resp


async def log_search(request: web.Request) -> web.Response:
    """Lines holding the query, read by `ml-sandbox logs` across every rotated file."""
    query = request.query.get("q", "")
    if not query:
        raise _json_error(400, "give a search text: ?q=...")
    proc = await _cli(_logs_args(request, LOG_SEARCH_LINES, follow=False))
    out, _ = await proc.communicate()
    needle = query.lower()
    hits = [line for line in out.decode(errors="replace").splitlines() if needle in line.lower()]
    return web.json_response({"query": query, "count": len(hits), "lines": hits[-LOG_SEARCH_HITS:]})


async def _end_streams(app: web.Application) -> None:
    """Event streams never end by themselves: end them, so that the server stops at once."""
    for task in list(app[STREAMS_KEY]):
        task.cancel()


def make_app(port: int, target: str | None = None, token: str | None = None) -> web.Application:
    token = token or security.new_token()
    app = web.Application(middlewares=[security.guard(port, token)])
    app[TOKEN_KEY] = token
    app[PORT_KEY] = port
    app[TARGET_KEY] = target
    app[JOBS_KEY] = actions.Jobs()
    app[STREAMS_KEY] = set()
    app.on_shutdown.append(_end_streams)
    r = app.router
    r.add_get("/", index)
    r.add_get(HEALTH_PATH, health)
    r.add_get("/api/session", session)
    r.add_get("/api/overview", overview)
    r.add_get("/api/events", events)
    r.add_get("/api/isvcs/{isvc}", isvc)
    r.add_get("/api/isvcs/{isvc}/requests", requests_)
    r.add_post("/api/isvcs/{isvc}/predict", predict)
    r.add_post("/api/isvcs/{isvc}/actions", act)
    r.add_get("/api/jobs/{id}", job)
    r.add_get("/api/logs/{name}/stream", log_stream)
    r.add_get("/api/logs/{name}/search", log_search)
    r.add_static("/static/", STATIC, follow_symlinks=False)
    return app


def serve(port: int, target: str | None = None) -> None:
    """Serve the console on 127.0.0.1:`port` until interrupted."""
    app = make_app(port, target)

    def announce(_message: str) -> None:  # called by run_app once the port is bound
        print(f"• console on http://127.0.0.1:{port}/ (Ctrl-C stops it)", file=sys.stderr)

    try:
        web.run_app(
            app, host="127.0.0.1", port=port, print=announce, access_log=None, shutdown_timeout=2
        )
    except OSError as e:
        raise RunError(
            f"the console cannot listen on 127.0.0.1:{port}: {e.strerror or e}; choose another "
            "port with --port"
        ) from None
