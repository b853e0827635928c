"""sandbox/runtime/launch.py: runs a script as `python script.py` would, every wildcard bind moved
to loopback (plain sockets, asyncio, and gRPC's C core through the real grpcio)."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from sandbox.runtime import launch
from tests.isvc_support import listening_addresses, non_loopback

pytestmark = pytest.mark.unit

LAUNCH = Path(launch.__file__)


def launched(
    script: Path, *args: str, pythonpath: list[Path] = (), bind: str = "127.0.0.1", **kw
) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(LAUNCH), "--bind", bind]
    for d in pythonpath:
        cmd += ["--pythonpath", str(d)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.Popen(
        [*cmd, "--", str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
        env=env,
        cwd=script.parent.parent,
        **kw,
    )


# -- the address rewriting ---------------------------------------------------------------------
def test_wildcards_become_loopback() -> None:
    a = launch.Addresses("127.0.0.1")
    assert a.socket_address(launch.socket.AF_INET, ("0.0.0.0", 80)) == ("127.0.0.1", 80)
    assert a.socket_address(launch.socket.AF_INET, ("", 80)) == ("127.0.0.1", 80)
    assert a.socket_address(launch.socket.AF_INET6, ("::", 80, 0, 0)) == ("::1", 80, 0, 0)
    assert a.socket_address(launch.socket.AF_INET, ("10.1.2.3", 80)) == ("10.1.2.3", 80)
    assert a.socket_address(launch.socket.AF_UNIX, "/tmp/x.sock") == "/tmp/x.sock"
    assert a.grpc_address("[::]:8081") == "127.0.0.1:8081"
    assert a.grpc_address("0.0.0.0:8081") == "127.0.0.1:8081"
    assert a.grpc_address(":8081") == "127.0.0.1:8081"
    assert a.grpc_address("ipv6:[::]:8081") == "ipv6:[::1]:8081"
    assert a.grpc_address("localhost:8081") == "localhost:8081"
    assert a.grpc_address("unix:/tmp/g.sock") == "unix:/tmp/g.sock"
    with pytest.raises(ValueError, match="loopback"):
        launch.Addresses("0.0.0.0")


# -- running a script --------------------------------------------------------------------------
PROBE = """\
import json, os, sys
import helpers.greeting
print(json.dumps({
    "name": __name__,
    "file": __file__,
    "argv": sys.argv,
    "path": [p for p in sys.path if "site-packages" not in p and "lib/python" not in p],
    "helper": helpers.greeting.WORD,
    "env_pythonpath": os.environ.get("PYTHONPATH"),
    "launcher_importable": any(
        os.path.isfile(os.path.join(p, "launch.py")) for p in sys.path if p
    ),
}))
"""


def test_runs_the_script_as_python_would(tmp_path: Path) -> None:
    app = tmp_path / "src" / "model.py"
    app.parent.mkdir()
    app.write_text(PROBE)
    shared = tmp_path / "shared"
    (shared / "helpers").mkdir(parents=True)
    (shared / "helpers" / "__init__.py").write_text("")
    (shared / "helpers" / "greeting.py").write_text("WORD = 'hello'\n")
    # What Python itself does, for comparison.
    direct = subprocess.run(
        [sys.executable, str(app), "--http_port", "1"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(shared)},
        cwd=tmp_path,
        check=True,
    )
    proc = launched(app, "--http_port", "1", pythonpath=[shared])
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out) == json.loads(direct.stdout)
    got = json.loads(out)
    assert got["name"] == "__main__" and got["helper"] == "hello"
    assert got["path"][:2] == [str(app.parent), str(shared)]
    assert got["launcher_importable"] is False


BINDER = """\
import asyncio, socket, sys

plain = socket.socket(socket.AF_INET)
plain.bind(("0.0.0.0", 0))
plain.listen()
six = socket.socket(socket.AF_INET6)
six.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
six.bind(("::", 0))
six.listen()

async def main():
    # What uvicorn does with host="0.0.0.0"; host=None binds every family's wildcard.
    a = await asyncio.get_running_loop().create_server(asyncio.Protocol, "0.0.0.0", 0)
    b = await asyncio.get_running_loop().create_server(asyncio.Protocol, None, 0)
    servers = [a, b]
    if "--grpc" in sys.argv:
        import grpc
        from concurrent import futures
        g = grpc.aio.server()
        g.add_insecure_port("[::]:0")  # what kserve's GRPCServer does
        await g.start()
        s = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        s.add_insecure_port("0.0.0.0:0")
        s.start()
    print("ready", flush=True)
    sys.stdin.readline()

asyncio.run(main())
"""


@pytest.mark.parametrize("with_grpc", [False, True], ids=["sockets", "sockets+grpc"])
def test_nothing_listens_on_a_wildcard(tmp_path: Path, with_grpc: bool) -> None:
    app = tmp_path / "app" / "server.py"
    app.parent.mkdir()
    app.write_text(BINDER)
    args = ["--grpc"] if with_grpc else []
    proc = launched(app, *args)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        addresses = listening_addresses(proc.pid)
    finally:
        proc.communicate(input="\n", timeout=30)
    expected = 6 if with_grpc else 4  # the two plain ones, two from create_server(None) at least
    assert len(addresses) >= expected, addresses
    assert non_loopback(addresses) == set()
    assert {h for h, _ in addresses} <= {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def test_without_the_launcher_the_same_script_binds_wildcards(tmp_path: Path) -> None:
    """The check above can fail: run directly, the script listens on 0.0.0.0 and ::."""
    app = tmp_path / "app" / "server.py"
    app.parent.mkdir()
    app.write_text(BINDER)
    proc = subprocess.Popen(
        [sys.executable, str(app)], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        addresses = listening_addresses(proc.pid)
    finally:
        proc.communicate(input="\n", timeout=30)
    assert {h for h, _ in non_loopback(addresses)} >= {"0.0.0.0", "::"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["model.py"], "missing `-- ENTRYPOINT.py"),
        (["--"], "missing ENTRYPOINT.py after --"),
        (["--", "nowhere.py"], "entrypoint nowhere.py does not exist"),
        (["--bind", "localhost", "--", "x.py"], "is not an IP address"),
        (["--route", "*.wikipedia.org=127.0.0.1:9", "--", "x.py"], "expected PATTERN:PORT="),
        (["--route", "*.wikipedia.org:80=localhost:9", "--", "x.py"], "with an IP address"),
        (["--route", "*.wikipedia.org:80=127.0.0.1:99999", "--", "x.py"], "--route"),
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(LAUNCH), *argv], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_non_loopback_bind_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "x.py"
    script.write_text("print('ran')\n")
    proc = subprocess.run(
        [sys.executable, str(LAUNCH), "--bind", "0.0.0.0", "--", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "--bind must be a loopback address" in proc.stderr
    assert "ran" not in proc.stdout


ROUTED = """\
import socket, sys, urllib.request
print(urllib.request.urlopen("http://en.wikipedia.org/w/api.php?x=1", timeout=10).read().decode())
print(socket.getaddrinfo("www.wikidata.org", 80, type=socket.SOCK_STREAM)[0][4])
print(socket.getaddrinfo("127.0.0.1", 443, type=socket.SOCK_STREAM)[0][4])
"""


def test_route_connects_a_name_to_another_address_with_its_own_host(tmp_path: Path) -> None:
    """--route is the pod's mesh for names the isvc reaches by itself (article-country's
    http://en.wikipedia.org): the connection goes to the route's address, the Host stays the
    name; names and ports no rule matches resolve as always."""

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"{self.headers['Host']} {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.HTTPServer(("127.0.0.1", 0), Echo)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    script = tmp_path / "pkg" / "routed.py"
    script.parent.mkdir()
    script.write_text(ROUTED)
    cmd = [sys.executable, str(LAUNCH), "--route", f"*.wikipedia.org:80=127.0.0.1:{port}"]
    cmd += ["--route", "www.wikidata.org:80=127.0.0.2:8080", "--", str(script)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "en.wikipedia.org /w/api.php?x=1"
    assert lines[1] == "('127.0.0.2', 8080)"
    assert lines[2] == "('127.0.0.1', 443)"


def test_launcher_is_stdlib_only() -> None:
    """It runs in the isvc's venv, where neither the sandbox nor its dependencies exist."""
    source = textwrap.dedent(LAUNCH.read_text())
    imported = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imported - {"__future__"} <= set(sys.stdlib_module_names)
