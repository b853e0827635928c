"""The one gateway process of a sandbox, shared by every target, and its routes file."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from sandbox.catalog import Service
from sandbox.paths import run_dir
from sandbox.runtime import processes
from sandbox.runtime.base import RuntimeError_
from sandbox.runtime.gateway import HEALTH_PATH, write_routes
from sandbox.runtime.progress import step
from sandbox.runtime.state import logs_dir


def routes_file():
    return run_dir() / "routes.json"


def gateway_url(state: dict[str, Any]) -> str | None:
    gw = state.get("gateway")
    return f"http://127.0.0.1:{gw['port']}" if gw else None


def ensure_gateway(state: dict[str, Any], port: int, timeout_s: float = 15.0) -> bool:
    """Start the gateway on `port` unless it already runs there. True if it was started."""
    gw = state.get("gateway")
    if gw and processes.alive(gw["process"]) and gw["port"] == port:
        return False
    if gw:
        processes.stop(gw["process"])
        state["gateway"] = None
    if processes.port_in_use(port):
        raise RuntimeError_(
            f"port {port} is already in use by another program; "
            "choose the gateway port with --port (or SANDBOX_GATEWAY_PORT)"
        )
    write_routes(routes_file(), _route_urls(state))
    cmd = [sys.executable, "-m", "sandbox.runtime.gateway", "--routes", str(routes_file())]
    cmd += ["--port", str(port)]
    rec = processes.spawn_ready(
        cmd,
        logs_dir() / "gateway.log",
        f"http://127.0.0.1:{port}{HEALTH_PATH}",
        f"the gateway on port {port}",
        timeout_s,
    )
    state["gateway"] = {"port": port, "process": rec.to_dict()}
    return True


def _route_urls(state: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The gateway's routes: {host: {"url", "isvc"}} (the owner is "<target>/<isvc>")."""
    return {
        host: {"url": r["url"], "isvc": r["owner"].split("/", 1)[-1]}
        for host, r in state["routes"].items()
    }


def set_route(state: dict[str, Any], host: str, url: str, owner: str) -> None:
    state["routes"][host] = {"url": url, "owner": owner}
    _publish(state)


def remove_route(state: dict[str, Any], host: str) -> None:
    if state["routes"].pop(host, None) is not None:
        _publish(state)


def _publish(state: dict[str, Any]) -> None:
    write_routes(routes_file(), _route_urls(state))
    gw = state.get("gateway")
    if gw and processes.alive(gw["process"]):
        os.kill(gw["process"]["pid"], signal.SIGHUP)
        # The gateway reloads asynchronously; wait until it routes what we wrote.
        deadline = time.monotonic() + 5
        want = sorted(state["routes"])
        while time.monotonic() < deadline:
            if _served_routes(gw["port"]) == want:
                return
            time.sleep(0.02)


def _served_routes(port: int) -> list[str] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{HEALTH_PATH}", timeout=1) as r:
            return json.loads(r.read())["routes"]
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return None


def keep_if_current(
    st: dict[str, Any],
    key: str,
    service: Service,
    fingerprint: str,
    running: Callable[[dict[str, Any]], bool],
    stop: Callable[[], None],
    unit: str = "process",
) -> bool:
    """`up`'s idempotence, for every target: True (and the route refreshed) when the isvc runs
    with this fingerprint; else stop what runs of it (changed, or crashed) and return False."""
    current = st["isvcs"].get(key)
    if current and current["fingerprint"] == fingerprint and running(current):
        set_route(st, service.host, current["url"], owner=key)
        where = "" if key.startswith("local/") else f" ({key.split('/')[0]})"
        print(f"✓ {service.name} is up to date{where}", file=sys.stderr)
        return True
    if current:
        why = "changed" if current["fingerprint"] != fingerprint else f"has a stopped {unit}"
        with step(f"restarting {service.name} ({why})"):
            stop()
    return False


def stop_gateway_if_idle(state: dict[str, Any]) -> bool:
    """Stop the gateway (and the MediaWiki replay server) when no isvc is left. True if stopped."""
    if state["isvcs"]:
        return False
    stopped = False
    for key in ("gateway", "mediawiki"):
        if state.get(key):
            processes.stop(state[key]["process"])
            state[key] = None
            stopped = True
    return stopped
