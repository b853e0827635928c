"""The one gateway process of a sandbox, shared by the local and docker targets, and its routes.

The routes are derived from the state (every serving isvc's Host -> its entry component), written
to a file the gateway re-reads on SIGHUP; `publish()` waits until the gateway serves what was
written, so a route switch during a restart leaves no gap.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

from sandbox.errors import RunError
from sandbox.hints import prog
from sandbox.paths import run_dir
from sandbox.runtime import processes
from sandbox.runtime.gateway import HEALTH_PATH, write_routes
from sandbox.runtime.state import ServerRecord, State, logs_dir
from sandbox.runtime.targets import ComponentStatus


def routes_file():
    return run_dir() / "routes.json"


def gateway_url(st: State) -> str | None:
    return st.gateway.url if st.gateway else None


def _routes(st: State, held: dict[str, tuple[str, str]] | None = None) -> dict[str, dict]:
    """The gateway's routes: {host: {"url", "isvc"}}; `held` ({host: (isvc, reason)}) keeps a
    Host that nothing healthy serves right now (url None: the gateway answers 503 with reason)."""
    routes: dict[str, dict] = {
        h: {"url": r.url, "isvc": r.isvc} for h, r in st.routes().items() if r.url
    }
    for host, (isvc, reason) in (held or {}).items():
        routes.setdefault(host, {"url": None, "isvc": isvc, "unavailable": reason})
    return routes


def ensure_gateway(
    st: State, port: int, max_body_bytes: int | None = None, timeout_s: float = 15.0
) -> bool:
    """Start the gateway on `port` with this body limit unless it already runs so. True if it was
    started."""
    gw = st.gateway
    alive = bool(gw) and processes.alive(gw.process)
    same = gw and gw.port == port and gw.max_body_bytes == max_body_bytes
    if gw and same and alive:
        return False
    # Check the new port before stopping the old gateway: a failed move keeps the working one.
    ours = gw is not None and alive and gw.port == port
    if not ours and processes.port_in_use(port):
        raise RunError(
            f"port {port} is already in use by another program; choose the gateway port with "
            f"--port (or SANDBOX_GATEWAY_PORT). If it is a sandbox left behind, `{prog()} "
            f"status` lists it as an orphan and `{prog()} down` stops it."
        )
    if gw:
        processes.stop(gw.process)
        st.gateway = None
        st.save()
    write_routes(routes_file(), _routes(st))
    cmd = [sys.executable, "-m", "sandbox.runtime.gateway", "--routes", str(routes_file())]
    cmd += ["--port", str(port)]
    if max_body_bytes is not None:
        cmd += ["--max-body-bytes", str(max_body_bytes)]
    rec = processes.spawn_ready(
        cmd,
        logs_dir() / "gateway.log",
        f"http://127.0.0.1:{port}{HEALTH_PATH}",
        f"the gateway on port {port}",
        timeout_s,
    )
    st.gateway = ServerRecord(port, rec, max_body_bytes)
    st.save()
    print(f"• gateway listening on http://127.0.0.1:{port}", file=sys.stderr)
    return True


PUBLISH_TIMEOUT_S = 10.0


def publish(
    st: State,
    held: dict[str, tuple[str, str]] | None = None,
    timeout_s: float = PUBLISH_TIMEOUT_S,
) -> bool:
    """Make the gateway route exactly the state's serving isvcs (and `held` Hosts, answered 503
    with a reason), and wait until its health endpoint reports that it does. False when it did
    not within `timeout_s` (the gateway then still serves what it served before); True when it
    does, or when no gateway runs."""
    routes = _routes(st, held)
    write_routes(routes_file(), routes)
    gw = st.gateway
    if not (gw and processes.alive(gw.process)):
        return True
    os.killpg(gw.process.pid, signal.SIGHUP)  # the gateway runs under logpipe, in its group
    wanted = {h: r["url"] for h, r in routes.items()}
    deadline = time.monotonic() + timeout_s
    while True:
        if _served_routes(gw.port) == wanted:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def _served_routes(port: int) -> dict[str, str] | None:
    """Host -> upstream URL, as the gateway's health endpoint reports what it routes."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{HEALTH_PATH}", timeout=1) as r:
            served = json.loads(r.read())["routes"]
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return None
    return served


def stop_gateway_if_idle(st: State) -> bool:
    """Stop the gateway when no isvc is served or starting on any target. True if stopped."""
    if st.isvcs or st.starting or not st.gateway:
        return False
    processes.stop(st.gateway.process)
    st.gateway = None
    st.save()
    return True


def status(st: State) -> list[ComponentStatus]:
    gw = st.gateway
    if not gw:
        if not (st.isvcs or st.starting):
            return []
        # isvcs on record but no gateway: nothing reaches them.
        return [
            ComponentStatus(
                "-", "-", "gateway", "missing", "-", None, f"start it: {prog()} up <isvc>"
            )
        ]
    return [ComponentStatus.of_server("gateway", gw)]
