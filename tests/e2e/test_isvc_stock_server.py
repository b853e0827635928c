"""The proof for per-isvc dependencies and the launcher: a plain kserve isvc on an old SDK, written
outside this repository with its own requirements and a shared-helpers package imported through
the pythonpath, runs in its own venv (`sandbox.venvs`) under `sandbox/runtime/launch.py`.

It must answer exactly as the stock server started with `python model.py` does, listen on
loopback only, and run beside an isvc whose pins conflict with its own (numpy<2 / numpy>=2); and
kserve SDKs 0.11.2, 0.13.1, 0.14.1, 0.15.2 and 0.21.0 all serve through the launcher, unchanged.
The venvs are cached in the sandbox cache, so reruns skip the installs.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox import venvs
from sandbox.paths import REPO_ROOT
from sandbox.runtime import launch
from tests.isvc_support import free_port, listening_addresses, non_loopback, wait_http

pytestmark = pytest.mark.e2e

MODEL = '''\
"""A plain kserve isvc, as in Wikimedia's inference-services: stock ModelServer, a shared
helper from the monorepo's python/ package."""
import os

import numpy
from kserve import Model, ModelServer

from python.text_utils import normalize


class Echo(Model):
    def __init__(self, name: str):
        super().__init__(name)
        self.load()

    def load(self):
        self.ready = True

    def predict(self, payload, headers=None):
        text = payload["text"]
        return {"normalized": normalize(text), "length": len(text), "numpy": numpy.__version__}


if __name__ == "__main__":
    ModelServer(workers=1).start([Echo(os.environ.get("MODEL_NAME", "echo"))])
'''

HELPER = """\
def normalize(text: str) -> str:
    return " ".join(text.split()).lower()
"""


@dataclass(frozen=True)
class Isvc:
    name: str
    root: Path  # the monorepo checkout (production's PYTHONPATH)
    entrypoint: Path
    requirements: Path


def write_monorepo(root: Path, isvcs: dict[str, str]) -> dict[str, Isvc]:
    """`src/models/<name>/{model.py,requirements.txt}` per isvc, and `python/` shared by all."""
    (root / "python").mkdir(parents=True)
    (root / "python" / "__init__.py").write_text("")
    (root / "python" / "text_utils.py").write_text(HELPER)
    (root / "python" / "requirements.txt").write_text("# shared helpers: stdlib only\n")
    out = {}
    for name, pins in isvcs.items():
        d = root / "src" / "models" / name
        d.mkdir(parents=True)
        (d / "model.py").write_text(MODEL)
        reqs = d / "requirements.txt"
        reqs.write_text(textwrap.dedent(pins) + "-r ../../../python/requirements.txt\n")
        out[name] = Isvc(name, root, d / "model.py", reqs)
    return out


@pytest.fixture(scope="module")
def monorepo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Isvc]:
    root = tmp_path_factory.mktemp("inference-services")
    assert not root.resolve().is_relative_to(REPO_ROOT), "the isvc must live outside the repo"
    return write_monorepo(
        root,
        {
            # outlink's SDK pin; kserve 0.14.1 needs numpy<2.
            "old": "kserve==0.14.1\nnumpy<2\n",
            # a newer SDK that allows numpy 2.
            "new": "kserve==0.15.2\nnumpy>=2\n",
        },
    )


@pytest.fixture(scope="module")
def venv_of(monorepo: dict[str, Isvc]) -> dict[str, Path]:
    # The default sandbox cache: built once, reused by later runs.
    return {name: venvs.ensure([isvc.requirements]) for name, isvc in monorepo.items()}


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def start(isvc: Isvc, venv: Path, *, launched: bool, log: Path) -> Server:
    http_port, grpc_port = free_port(), free_port()
    server_args = ["--http_port", str(http_port), "--grpc_port", str(grpc_port)]
    python = str(venvs.python_of(venv))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["MODEL_NAME"] = isvc.name
    if launched:
        cmd = [python, launch.__file__, "--bind", "127.0.0.1", "--pythonpath", str(isvc.root)]
        cmd += ["--", str(isvc.entrypoint), *server_args]
    else:  # the stock way: python model.py, PYTHONPATH as production's blubber sets it
        cmd = [python, str(isvc.entrypoint), *server_args]
        env["PYTHONPATH"] = str(isvc.root)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=isvc.root)
    server = Server(proc, http_port, grpc_port)
    try:
        wait_http(f"{server.base}/v1/models/{isvc.name}", timeout=120, proc=proc)
    except AssertionError as e:
        stop(server)
        raise AssertionError(f"{e}\n{log.read_text(errors='replace')[-3000:]}") from None
    return server


def stop(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture
def running(
    monorepo: dict[str, Isvc], venv_of: dict[str, Path], tmp_path: Path
) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def run(name: str, *, launched: bool = True) -> Server:
        log = tmp_path / f"{name}-{'launched' if launched else 'stock'}.log"
        servers.append(start(monorepo[name], venv_of[name], launched=launched, log=log))
        return servers[-1]

    yield run
    for s in servers:
        stop(s)


def call(
    base: str, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(base + path, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, headers, data = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        status, headers, data = e.code, dict(e.headers), e.read()
    headers.pop("date", None)
    headers.pop("Date", None)
    return status, headers, data


REQUESTS = [
    ("POST", "/v1/models/old:predict", json.dumps({"text": "  Hello   Lift Wing "}).encode()),
    ("GET", "/v1/models/old", None),
    ("POST", "/v1/models/old:predict", b"{not json"),
    ("POST", "/v1/models/old:predict", json.dumps({"no_text": 1}).encode()),
    ("POST", "/v1/models/missing:predict", b"{}"),
    ("GET", "/v2/health/ready", None),
]


def test_launched_isvc_answers_as_the_stock_server_and_listens_on_loopback_only(
    running: Callable[..., Server],
) -> None:
    launched = running("old")
    stock = running("old", launched=False)
    for method, path, body in REQUESTS:
        got = call(launched.base, method, path, body)
        want = call(stock.base, method, path, body)
        assert got == want, f"{method} {path}"
    status, _, data = call(launched.base, *REQUESTS[0][:2], REQUESTS[0][2])
    assert status == 200
    answer = json.loads(data)
    assert (answer["normalized"], answer["length"]) == ("hello lift wing", 20)

    bound = listening_addresses(launched.proc.pid)
    assert {p for _, p in bound} >= {launched.http_port, launched.grpc_port}
    assert non_loopback(bound) == set()
    # The check can fail: the stock server listens on 0.0.0.0 (REST) and :: (gRPC).
    assert {h for h, _ in non_loopback(listening_addresses(stock.proc.pid))} >= {"0.0.0.0"}


def test_conflicting_pins_run_side_by_side(running: Callable[..., Server]) -> None:
    old, new = running("old"), running("new")
    versions = {}
    for name, server in (("old", old), ("new", new)):
        body = json.dumps({"text": "x"}).encode()
        status, _, data = call(server.base, "POST", f"/v1/models/{name}:predict", body)
        assert status == 200, data
        versions[name] = json.loads(data)["numpy"]
    assert int(versions["old"].split(".")[0]) < 2
    assert int(versions["new"].split(".")[0]) >= 2
    assert old.proc.poll() is None and new.proc.poll() is None


# The oldest SDK the sandbox supports, langid's pin, and the sandbox's own (the newest here);
# 0.14.1 and 0.15.2 run above. kserve 0.11 imports pkg_resources (through ray), which
# setuptools 81+ dropped: an isvc on it pins setuptools itself, as it would in production.
SDKS = {
    "0.11.2": "kserve==0.11.2\nsetuptools<81\n",
    "0.13.1": "kserve==0.13.1\n",
    "0.21.0": "kserve==0.21.0\n",
}


@pytest.mark.parametrize("sdk", sorted(SDKS))
def test_every_sdk_serves_through_the_launcher_on_loopback(
    sdk: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    name = "sdk" + sdk.replace(".", "")
    isvc = write_monorepo(tmp_path_factory.mktemp("inference-services"), {name: SDKS[sdk]})[name]
    venv = venvs.ensure([isvc.requirements])
    server = start(isvc, venv, launched=True, log=tmp_path / "server.log")
    try:
        body = json.dumps({"text": " A  B "}).encode()
        status, _, data = call(server.base, "POST", f"/v1/models/{name}:predict", body)
        assert (status, json.loads(data)["normalized"]) == (200, "a b"), data
        bound = listening_addresses(server.proc.pid)
        assert {p for _, p in bound} >= {server.http_port, server.grpc_port}
        assert non_loopback(bound) == set()
    finally:
        stop(server)
