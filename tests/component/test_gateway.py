"""The gateway process on its own: unknown Host, body limit, dead upstream, route reload."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sandbox.runtime.gateway import HEALTH_PATH, write_routes
from sandbox.runtime.processes import free_port

pytestmark = pytest.mark.component


def _request(port: int, host: str, path="/v1/models/x:predict", body=b"{}", method="POST"):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body if method == "POST" else None,
        headers={"Host": host},
        method=method,
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def gateway(tmp_path: Path):
    routes = tmp_path / "routes.json"
    dead = free_port()  # nothing listens there
    write_routes(
        routes, {"dead.llm.wikimedia.org": {"url": f"http://127.0.0.1:{dead}", "isvc": "dead"}}
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "sandbox.runtime.gateway", "--routes", str(routes)),
            *("--port", str(port), "--max-body-bytes", "1000", "--timeout", "5"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            if _request(port, "localhost", HEALTH_PATH, method="GET")[0] == 200:
                break
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
        time.sleep(0.05)
    yield port, routes, proc
    proc.terminate()
    proc.wait(10)


def test_unknown_host_is_404_listing_known_hosts(gateway):
    port, _, _ = gateway
    status, body = _request(port, "nope.example.org")
    assert status == 404
    assert "nope.example.org" in body["error"] and "dead.llm.wikimedia.org" in body["error"]


def test_body_over_limit_is_413(gateway):
    port, _, _ = gateway
    status, body = _request(port, "dead.llm.wikimedia.org", body=b"x" * 2000)
    assert status == 413
    assert "1000 bytes" in body["error"]


def test_upstream_down_is_502_and_gateway_keeps_serving(gateway):
    port, _, proc = gateway
    status, body = _request(port, "dead.llm.wikimedia.org:8080")
    assert status == 502
    assert "not answering" in body["error"]
    assert proc.poll() is None
    assert _request(port, "x", HEALTH_PATH, method="GET")[0] == 200


def test_sighup_reloads_routes(gateway):
    port, routes, proc = gateway
    write_routes(routes, {"new.ns.wikimedia.org": {"url": "http://127.0.0.1:9", "isvc": "new"}})
    os.kill(proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    want = {"new.ns.wikimedia.org": "http://127.0.0.1:9"}
    while _request(port, "x", HEALTH_PATH, method="GET")[1]["routes"] != want:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert _request(port, "dead.llm.wikimedia.org")[0] == 404


def test_binds_loopback_only(gateway):
    port, _, _ = gateway
    out = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
    lines = [line for line in out.splitlines() if f":{port} " in line]
    assert lines and all("127.0.0.1:" in line for line in lines)
