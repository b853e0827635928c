"""The gateway under faults (issue 9) and Lift Wing's URL forms (issue 8, item 5).

Each test runs the real gateway process in front of a real upstream: a small ASGI echo app on
uvicorn (the server stock kserve runs on), or a stock `kserve.ModelServer`. Clients are raw
sockets where the framing or the timing of the bytes matters.
"""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sandbox.runtime.gateway import HEALTH_PATH, write_routes
from sandbox.runtime.processes import free_port

pytestmark = pytest.mark.component

LIMIT = 1024 * 1024  # the gateway's default body limit (MAX_BODY_BYTES unset)
ECHO_HOST = "echo.ns.wikimedia.org"

# Answers every request with what it received; `/slow/<seconds>` first sleeps.
ECHO_APP = textwrap.dedent(
    """
    import asyncio, hashlib, json

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        path = scope["raw_path"].decode()
        if path.startswith("/slow/"):
            await asyncio.sleep(float(path.split("/")[2]))
        answer = json.dumps({
            "method": scope["method"],
            "raw_path": path,
            "query": scope["query_string"].decode(),
            "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer})
    """
)

# A stock kserve model: `{"fail": true}` raises (kserve answers 500 and uvicorn then closes the
# connection), anything else is echoed.
KSERVE_MODEL = textwrap.dedent(
    """
    import json
    import kserve

    class Flaky(kserve.Model):
        def __init__(self, name):
            super().__init__(name)
            self.ready = True

        async def predict(self, payload, headers=None):
            if isinstance(payload, bytes):
                payload = json.loads(payload)
            if payload.get("fail"):
                raise RuntimeError("boom")
            return {"ok": payload}

    if __name__ == "__main__":
        args, _ = kserve.model_server.parser.parse_known_args()
        kserve.ModelServer().start([Flaky(args.model_name)])
    """
)


def _wait(url: str, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            pass
        assert proc.poll() is None, f"{what} exited"
        assert time.monotonic() < deadline, f"{what} did not start"
        time.sleep(0.05)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def echo(tmp_path: Path):
    """The echo app on uvicorn; yields its URL."""
    (tmp_path / "echo_app.py").write_text(ECHO_APP)
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "echo_app:app", "--app-dir", str(tmp_path)),
            *("--port", str(port), "--log-level", "warning", "--no-access-log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait(f"http://127.0.0.1:{port}/", proc, "the echo app")
    yield f"http://127.0.0.1:{port}"
    _stop(proc)


class Gateway:
    def __init__(self, tmp_path: Path, routes: dict, *args: str):
        self.routes = tmp_path / "routes.json"
        write_routes(self.routes, routes)
        self.log = tmp_path / "gateway.log"
        self.port = free_port()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "sandbox.runtime.gateway"),
                    *("--routes", str(self.routes), "--port", str(self.port), *args),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait(f"http://127.0.0.1:{self.port}{HEALTH_PATH}", self.proc, "the gateway", 20)

    def request(self, path: str, body: bytes | None = b"{}", host: str = ECHO_HOST, method=None):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=body,
            headers={"Host": host, "Content-Type": "application/json"},
            method=method,
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.headers.get("Content-Type"), json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type"), json.loads(e.read())


@pytest.fixture
def gateway(tmp_path: Path):
    started: list[Gateway] = []

    def start(routes: dict, *args: str) -> Gateway:
        started.append(Gateway(tmp_path, routes, *args))
        return started[-1]

    yield start
    for gw in started:
        _stop(gw.proc)


def _route(url: str, isvc: str = "echo", host: str = ECHO_HOST) -> dict:
    return {host: {"url": url, "isvc": isvc}}


# -- raw HTTP over a socket ----------------------------------------------------------------------


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response (Content-Length framed, as the gateway always answers)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response; got {data[:200]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def _raw(port: int, pieces: list[bytes], pause: float = 0.0) -> tuple[int, dict, bytes]:
    """Send `pieces` one by one with `pause` seconds between them, then read the answer. A
    gateway that answers early (and closes) may reset the rest of the upload: that is fine."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for i, piece in enumerate(pieces):
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            if pause and i < len(pieces) - 1:
                time.sleep(pause)
        return _read_response(sock)


def _slow_upload(body: bytes, chunked: bool, path="/v1/models/echo:predict") -> list[bytes]:
    """The request as pieces: headers, then the body in 64 KiB pieces (or two halves if small)."""
    size = 65536 if len(body) > 65536 else max(1, len(body) // 2)
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    head = f"POST {path} HTTP/1.1\r\nHost: {ECHO_HOST}\r\nContent-Type: application/json\r\n"
    if chunked:
        pieces = [(head + "Transfer-Encoding: chunked\r\n\r\n").encode()]
        pieces += [f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts]
        pieces.append(b"0\r\n\r\n")
    else:
        pieces = [(head + f"Content-Length: {len(body)}\r\n\r\n").encode(), *parts]
    return pieces


def _json_body(size: int) -> bytes:
    """Valid JSON of exactly `size` bytes."""
    return b'{"text": "' + b"a" * (size - 12) + b'"}'


# -- 1. whole bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("size", [1024, 200_000, 700_000, LIMIT], ids=lambda s: f"{s}B")
def test_whole_body_is_forwarded_when_it_arrives_slowly(gateway, echo, size, chunked):
    gw = gateway(_route(echo))
    body = _json_body(size)
    status, _, answer = _raw(gw.port, _slow_upload(body, chunked), pause=0.02)
    assert status == 200, answer
    seen = json.loads(answer)
    assert seen["length"] == size
    assert seen["sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_just_over_the_limit_is_413_json(gateway, echo, chunked):
    gw = gateway(_route(echo))
    status, headers, answer = _raw(gw.port, _slow_upload(_json_body(LIMIT + 1), chunked), 0.02)
    assert status == 413
    assert headers["content-type"].startswith("application/json")
    assert f"{LIMIT} bytes" in json.loads(answer)["error"]


# -- 2. a dead pooled connection is retried once -------------------------------------------------


@pytest.fixture
def kserve_server(tmp_path: Path):
    """A stock kserve.ModelServer (the venv's kserve) serving the model `flaky`."""
    (tmp_path / "flaky.py").write_text(KSERVE_MODEL)
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, str(tmp_path / "flaky.py"), "--model_name", "flaky"),
            *("--http_port", str(port), "--grpc_port", str(free_port())),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait(f"http://127.0.0.1:{port}/v1/models/flaky", proc, "the kserve model server", 90)
    yield f"http://127.0.0.1:{port}"
    _stop(proc)


def test_good_requests_after_a_500_get_no_502(gateway, kserve_server):
    """kserve answers 500 and uvicorn closes that connection; the gateway's pool still holds it."""
    host = "flaky.test.wikimedia.org"
    gw = gateway(_route(kserve_server, "flaky", host))

    def call(body: bytes) -> int:
        return gw.request("/v1/models/flaky:predict", body, host)[0]

    statuses = []
    with ThreadPoolExecutor(8) as pool:
        for _ in range(20):
            failing = [pool.submit(call, b'{"fail": true}') for _ in range(4)]
            assert [f.result() for f in failing] == [500] * 4
            statuses += pool.map(call, [b'{"x": 1}'] * 10)
    assert len(statuses) == 200
    assert statuses.count(502) == 0, f"{statuses.count(502)} of 200 good requests got 502"
    assert set(statuses) == {200}


def test_readiness_passes_through_from_stock_kserve(gateway, kserve_server):
    host = "flaky.test.wikimedia.org"
    gw = gateway(_route(kserve_server, "flaky", host))
    status, _, body = gw.request("/v1/models/flaky", None, host)
    assert (status, body) == (200, {"name": "flaky", "ready": True})


# -- 3. deadlines and bounded queueing -----------------------------------------------------------


def test_deadline_counts_from_arrival_not_from_getting_a_connection(gateway, echo):
    """One connection, 1.5 s answers, a 2 s budget: the ones that queue get 504 at 2 s."""
    gw = gateway(_route(echo), "--max-connections", "1", "--timeout", "2")

    def timed() -> tuple[int, float]:
        started = time.monotonic()
        status = gw.request("/slow/1.5")[0]
        return status, time.monotonic() - started

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: timed(), range(3)))
    assert sorted(s for s, _ in results) == [200, 504, 504], results
    assert all(elapsed < 2.6 for _, elapsed in results), results


def test_queue_beyond_the_pool_is_bounded_and_answers_503_json(gateway, echo):
    gw = gateway(_route(echo), "--max-connections", "1", "--max-pending", "1", "--timeout", "10")

    def timed() -> tuple[int, str, dict, float]:
        started = time.monotonic()
        status, ctype, body = gw.request("/slow/1")
        return status, ctype, body, time.monotonic() - started

    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda _: timed(), range(5)))
    statuses = sorted(r[0] for r in results)
    assert statuses == [200, 200, 503, 503, 503], results
    for status, ctype, body, elapsed in results:
        if status == 503:
            assert ctype.startswith("application/json")
            assert "--max-pending" in body["error"]
            assert elapsed < 0.9  # at once, not after waiting


def test_slow_body_is_408_json_at_the_deadline(gateway, echo):
    gw = gateway(_route(echo), "--timeout", "1")
    head = f"POST /v1/models/echo:predict HTTP/1.1\r\nHost: {ECHO_HOST}\r\n"
    head += "Content-Length: 10\r\n\r\n"
    started = time.monotonic()
    status, headers, _ = _raw(gw.port, [head.encode(), b"{}"])  # 8 bytes never come
    assert status == 408 and headers["content-type"].startswith("application/json")
    assert time.monotonic() - started < 2


# -- 4. malformed HTTP gets JSON -----------------------------------------------------------------

BAD_REQUESTS = {
    "bad content-length": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n",
    "negative content-length": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
    "content-length and transfer-encoding": (
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n"
    ),
    "two content-lengths": (
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    ),
    "8 KB host": b"GET / HTTP/1.1\r\nHost: " + b"h" * 8200 + b"\r\n\r\n",
    "1000 headers": b"GET / HTTP/1.1\r\nHost: h\r\n"
    + b"".join(b"X-H%d: v\r\n" % i for i in range(1000))
    + b"\r\n",
    "missing host": b"GET /v1/models/echo HTTP/1.1\r\n\r\n",
    "bad request line": b"GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n",
    "bad chunk size": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "header without colon": b"GET / HTTP/1.1\r\nHost: h\r\nNoColonHere\r\n\r\n",
}


@pytest.mark.parametrize("raw", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_malformed_http_gets_a_4xx_json_error(gateway, echo, raw):
    gw = gateway(_route(echo))
    status, headers, answer = _raw(gw.port, [raw])
    assert 400 <= status < 500, answer
    assert headers["content-type"].startswith("application/json"), answer
    assert json.loads(answer)["error"]
    assert gw.proc.poll() is None
    assert gw.request("/v1/models/echo:predict")[0] == 200  # still serving


def test_oversized_headers_are_431(gateway, echo):
    gw = gateway(_route(echo))
    status, _, answer = _raw(gw.port, [BAD_REQUESTS["8 KB host"]])
    assert status == 431, answer


# -- 5. bounded log lines ------------------------------------------------------------------------


def test_log_lines_stay_short_for_huge_paths_and_bad_requests(gateway, echo):
    gw = gateway(_route(echo))
    long_path = "/v1/models/echo:predict?q=" + "x" * 7000
    assert gw.request(long_path)[0] == 200
    assert gw.request(long_path, host="unknown.example.org")[0] == 404
    _raw(gw.port, [BAD_REQUESTS["8 KB host"]])
    _raw(gw.port, [BAD_REQUESTS["bad content-length"]])
    time.sleep(0.3)  # the log is written after the answer
    lines = gw.log.read_text().splitlines()
    assert sum("…[+" in line for line in lines) >= 2, lines  # the marker of a cut path
    assert max(len(line) for line in lines) < 1200, max(lines, key=len)[:300]
    assert not any("Traceback" in line for line in lines)


# -- 6. Lift Wing's URL forms --------------------------------------------------------------------


def test_internal_form_forwards_with_the_isvc_host(gateway, echo):
    gw = gateway(_route(echo))
    status, _, seen = gw.request("/v1/models/echo:predict", b'{"a": 1}')
    assert status == 200
    assert seen["raw_path"] == "/v1/models/echo:predict"
    assert seen["headers"]["host"] == ECHO_HOST
    assert seen["length"] == 8


def test_public_api_gateway_form_is_rewritten_for_any_host(gateway, echo):
    gw = gateway(_route(echo))
    status, _, seen = gw.request(
        "/service/lw/inference/v1/models/echo:predict?debug=1", b"{}", host="api.wikimedia.org"
    )
    assert status == 200
    assert seen["raw_path"] == "/v1/models/echo:predict"
    assert seen["query"] == "debug=1"
    assert seen["headers"]["host"] == ECHO_HOST
    assert seen["method"] == "POST"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/echo",
        "/v1/models/echo:predict",
        "/v2/models/echo/infer",
        "/v2/models/echo/ready",
        "/v1/models/a%2Fb:predict?x=1%202&y=%C3%A9",
    ],
)
def test_protocol_paths_pass_through_untouched(gateway, echo, path):
    gw = gateway(_route(echo))
    method = "GET" if path.endswith(("echo", "ready")) else "POST"
    status, _, seen = gw.request(path, None if method == "GET" else b"{}", method=method)
    assert status == 200
    assert seen["method"] == method
    assert seen["raw_path"] + ("?" + seen["query"] if seen["query"] else "") == path


@pytest.mark.parametrize(
    "path,host",
    [
        ("/service/lw/inference/v1/models/nope:predict", "api.wikimedia.org"),
        ("/service/lw/inference/v1/models/echo", "api.wikimedia.org"),
        ("/v1/models/nope:predict", "nope.ns.wikimedia.org"),
    ],
)
def test_unknown_isvc_or_host_is_404_json_listing_the_known_ones(gateway, echo, path, host):
    gw = gateway(_route(echo))
    status, ctype, body = gw.request(path, b"{}", host=host)
    assert status == 404 and ctype.startswith("application/json")
    assert "echo" in body["error"] and ECHO_HOST in body["error"]


def test_head_is_answered_without_waiting_for_a_body(gateway, echo):
    """uvicorn answers HEAD with the Content-Length a GET would have, and no body."""
    gw = gateway(_route(echo), "--timeout", "3")
    req = urllib.request.Request(
        f"http://127.0.0.1:{gw.port}/v1/models/echo", headers={"Host": ECHO_HOST}, method="HEAD"
    )
    started = time.monotonic()
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200 and r.read() == b""
    assert time.monotonic() - started < 2
    assert gw.request("/v1/models/echo:predict")[0] == 200  # and the pool is still sound


def test_an_answer_delimited_by_closing_the_connection_is_forwarded(gateway):
    """An HTTP/1.0-style upstream: no Content-Length, the body ends when it closes."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                conn.sendall(b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"old": 1}')

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        gw = gateway(_route(f"http://127.0.0.1:{port}"))
        assert gw.request("/v1/models/echo:predict") == (200, "application/json", {"old": 1})
        assert gw.request("/v1/models/echo:predict")[2] == {"old": 1}
    finally:
        server.close()


# -- issue 16: slow headers, Host ports, absolute-form targets, a held route ----------------------


@pytest.mark.parametrize("trickle", [False, True], ids=["stalled", "one-byte-at-a-time"])
def test_slow_headers_get_408_json_at_the_headers_timeout(gateway, echo, trickle):
    """Envoy's request_headers_timeout: from the first byte until the headers are complete
    (envoyproxy/envoy source/common/http/conn_manager_impl.cc onRequestHeaderTimeout: 408)."""
    gw = gateway(_route(echo), "--timeout", "30", "--request-headers-timeout", "1")
    head = f"POST /v1/models/echo:predict HTTP/1.1\r\nHost: {ECHO_HOST}\r\nX-Slow: ".encode()
    pieces = [head, *(b"a" for _ in range(30))] if trickle else [head]
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        for piece in pieces:
            try:
                sock.sendall(piece)
            except OSError:
                break
            time.sleep(0.1)
        status, headers, body = _read_response(sock)
    assert status == 408, body
    assert headers["content-type"].startswith("application/json")
    assert "--request-headers-timeout" in json.loads(body)["error"]
    assert time.monotonic() - started < 3.5  # 1 s (+ the trickle loop's last sleeps), not 30
    assert gw.request("/v1/models/echo:predict")[0] == 200


def test_slow_headers_are_also_bounded_by_the_request_timeout(gateway, echo):
    """--timeout counts from a request's first byte: headers past it are 408 too, even with the
    headers timeout off (0, Envoy's default)."""
    gw = gateway(_route(echo), "--timeout", "1", "--request-headers-timeout", "0")
    head = f"POST /v1/models/echo:predict HTTP/1.1\r\nHost: {ECHO_HOST}\r\nX-Slow: ".encode()
    started = time.monotonic()
    status, _, body = _raw(gw.port, [head])
    assert status == 408, body
    assert "--timeout" in json.loads(body)["error"]
    assert time.monotonic() - started < 3


def test_headers_that_arrive_in_time_are_not_cut_off(gateway, echo):
    gw = gateway(_route(echo), "--request-headers-timeout", "1")
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        for _ in range(3):  # keep-alive: each request gets its own header budget
            sock.sendall(f"GET /v1/models/echo HTTP/1.1\r\nHost: {ECHO_HOST}\r\n\r\n".encode())
            assert _read_response(sock)[0] == 200
            time.sleep(0.6)


def test_the_headers_timeout_flag_is_checked(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox.runtime.gateway", "--routes", str(tmp_path / "r.json"),
         "--request-headers-timeout", "-1"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--request-headers-timeout" in proc.stderr


@pytest.mark.parametrize(
    "host",
    [f"{ECHO_HOST}:abc", f"{ECHO_HOST}:99999", f"{ECHO_HOST}:-1", f"{ECHO_HOST}:\u00b2",
     f"{ECHO_HOST}:80:80", f"{ECHO_HOST}:123456", f"user@{ECHO_HOST}", f"{ECHO_HOST}/x"],
)  # fmt: skip
def test_a_host_with_a_bad_port_is_400_json(gateway, echo, host):
    gw = gateway(_route(echo))
    raw = f"GET /v1/models/echo HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    status, headers, body = _raw(gw.port, [raw])
    assert status == 400, body
    assert headers["content-type"].startswith("application/json")
    assert "Host" in json.loads(body)["error"]


@pytest.mark.parametrize(
    "host", [ECHO_HOST, f"{ECHO_HOST}:8080", f"{ECHO_HOST}:", ECHO_HOST.upper()]
)
def test_a_host_with_a_good_port_or_none_is_routed(gateway, echo, host):
    gw = gateway(_route(echo))
    assert gw.request("/v1/models/echo:predict", host=host)[0] == 200


def test_an_absolute_form_target_is_routed_by_its_authority(gateway, echo):
    """RFC 9112 §3.2.2: the target's authority names the origin; the Host header is ignored."""
    gw = gateway(_route(echo))
    target = f"http://{ECHO_HOST}:8080/v1/models/echo:predict?x=1"
    raw = (
        f"POST {target} HTTP/1.1\r\nHost: nothing.ns.wikimedia.org\r\nContent-Length: 2\r\n\r\n{{}}"
    )
    status, _, body = _raw(gw.port, [raw.encode()])
    assert status == 200, body
    echoed = json.loads(body)
    assert echoed["raw_path"] == "/v1/models/echo:predict"
    assert echoed["query"] == "x=1"
    assert echoed["headers"]["host"] == ECHO_HOST
    assert echoed["headers"]["x-forwarded-host"] == f"{ECHO_HOST}:8080"
    # ...and not by the Host header: an authority naming no isvc is 404 even with a good Host.
    raw = (
        f"GET http://nothing.ns.wikimedia.org/v1/models/echo HTTP/1.1\r\nHost: {ECHO_HOST}\r\n\r\n"
    )
    status, _, body = _raw(gw.port, [raw.encode()])
    assert status == 404, body
    assert "nothing.ns.wikimedia.org" in json.loads(body)["error"]


@pytest.mark.parametrize(
    "target", ["ftp://echo.ns.wikimedia.org/v1/models/echo", "http:///v1/models/echo",
               f"http://{ECHO_HOST}:99999/v1/models/echo"],
)  # fmt: skip
def test_a_bad_absolute_form_target_is_400_json(gateway, echo, target):
    gw = gateway(_route(echo))
    status, headers, body = _raw(
        gw.port, [f"GET {target} HTTP/1.1\r\nHost: {ECHO_HOST}\r\n\r\n".encode()]
    )
    assert status == 400, body
    assert headers["content-type"].startswith("application/json")


def test_a_held_route_is_503_json_with_its_reason_never_404(gateway, echo):
    """While an isvc is replaced after a crash, its Host stays known (issue 16, item 12)."""
    reason = "its previous version crashed and a new one is starting"
    gw = gateway({ECHO_HOST: {"url": None, "isvc": "echo", "unavailable": reason}})
    public = "/service/lw/inference/v1/models/echo:predict"
    for path, host in [("/v1/models/echo:predict", ECHO_HOST), (public, "api.wikimedia.org")]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{gw.port}{path}", data=b"{}", headers={"Host": host}
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=10)
        assert info.value.code == 503
        assert info.value.headers["Retry-After"] == "1"
        assert reason in json.loads(info.value.read())["error"]
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.port}{HEALTH_PATH}", timeout=5) as r:
        assert json.loads(r.read())["routes"] == {ECHO_HOST: None}
    # The route comes back: served again.
    write_routes(gw.routes, _route(echo))
    gw.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while gw.request("/v1/models/echo:predict")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
