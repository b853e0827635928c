"""An isvc as Wikimedia writes it, served by the sandbox as it is: plain kserve code on an old SDK
(0.14.1, outlink's pin) in a monorepo-like checkout outside this repository, with its own
requirements.txt, a shared-helpers package imported through the pythonpath, and a Blubber v4
file; described by a service.yaml in another folder, added with `--service-dir`.

Through the gateway, on the local and docker targets, it answers exactly what the stock server
(`python model.py` in the same venv) answers; on the local target nothing of it listens beyond
loopback.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from sandbox import venvs
from sandbox.paths import REPO_ROOT
from sandbox.runtime import state
from sandbox.runtime.processes import free_port
from tests.blubber_support import inference_services_blubber
from tests.e2e.conftest import cli, docker_answers
from tests.e2e.test_isvc_stock_server import HELPER, MODEL, call, start, stop
from tests.isvc_support import listening_addresses, non_loopback

pytestmark = pytest.mark.e2e

NAME = "echo"
NAMESPACE = "experimental"
HOST = f"{NAME}.{NAMESPACE}.wikimedia.org"
MODEL_BYTES = b"an echo needs no weights\n"

BLUBBER = inference_services_blubber(NAME, packages=["python3"])

TRAIN = f"""\
import sys
from pathlib import Path

Path(sys.argv[1]).write_bytes({MODEL_BYTES!r})
"""


@pytest.fixture(scope="module")
def service_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("external")
    assert not root.resolve().is_relative_to(REPO_ROOT), "the isvc must live outside the repo"
    return write_external(root)


def write_external(root: Path) -> Path:
    """The checkout (`root/inference-services`) and the service folder; returns the latter."""
    code = root / "inference-services"
    model_dir = code / "src" / "models" / NAME
    model_dir.mkdir(parents=True)
    (model_dir / "model.py").write_text(MODEL)
    (model_dir / "requirements.txt").write_text("kserve==0.14.1\nnumpy<2\n")
    (code / "python").mkdir()
    (code / "python" / "__init__.py").write_text("")
    (code / "python" / "text_utils.py").write_text(HELPER)
    (code / "python" / "requirements.txt").write_text("# shared helpers: stdlib only\n")
    (code / ".pipeline" / NAME).mkdir(parents=True)
    (code / ".pipeline" / NAME / "blubber.yaml").write_text(BLUBBER)

    folder = root / "sandbox-services" / NAME
    (folder / "training").mkdir(parents=True)
    (folder / "training" / "train.py").write_text(TRAIN)
    sample = {"text": "  Hello   Lift Wing "}
    doc = {
        "name": NAME,
        "namespace": NAMESPACE,
        "description": "a plain kserve isvc on kserve 0.14.1, outside the sandbox's repo",
        "source": "../../inference-services",
        "components": {
            "predictor": {
                "entrypoint": f"src/models/{NAME}/model.py",
                "requirements": [f"src/models/{NAME}/requirements.txt"],
                "pythonpath": ["."],
                "image": {"blubber": f".pipeline/{NAME}/blubber.yaml", "variant": "production"},
                "env": {"MODEL_NAME": NAME},
                "resources": {
                    "requests": {"cpu": "250m", "memory": "512Mi"},
                    "limits": {"cpu": "1", "memory": "1Gi"},
                },
            }
        },
        "model": {
            "file": "model.bin",
            "storage_uri": f"s3://wmf-ml-models/{NAME}/20260101000000/",
            "sha256": hashlib.sha256(MODEL_BYTES).hexdigest(),
            "build": "training/train.py",
        },
        "autoscaling": {"min_replicas": 1, "max_replicas": 1, "metric": "rps", "target": 5},
        "samples": [
            {
                "name": "hello",
                "data": sample,
                "expect": {"checks": [{"path": "normalized", "equals": "hello lift wing"}]},
            }
        ],
    }
    (folder / "service.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_RUN_DIR", str(tmp_path / "run"))
    yield tmp_path / "run"
    cli("down", check=False)


REQUESTS = [
    ("POST", f"/v1/models/{NAME}:predict", json.dumps({"text": "  Hello   Lift Wing "}).encode()),
    ("GET", f"/v1/models/{NAME}", None),
    ("POST", f"/v1/models/{NAME}:predict", b"{not json"),
    ("POST", f"/v1/models/{NAME}:predict", json.dumps({"no_text": 1}).encode()),
    ("POST", "/v1/models/missing:predict", b"{}"),
    ("POST", f"/v2/models/{NAME}/infer", b"{}"),
]


def _through_gateway(port: int) -> list[tuple[int, bytes]]:
    out = []
    for method, path, body in REQUESTS:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", data=body, method=method, headers={"Host": HOST}
        )
        if body is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                out.append((r.status, r.read()))
        except urllib.error.HTTPError as e:
            out.append((e.code, e.read()))
    return out


@pytest.fixture(scope="module")
def stock_answers(service_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """What the stock server answers, started the stock way (`python model.py`)."""
    from tests.e2e.test_isvc_stock_server import Isvc

    code = (service_dir / "../../inference-services").resolve()
    reqs = code / "src" / "models" / NAME / "requirements.txt"
    isvc = Isvc(NAME, code, code / "src" / "models" / NAME / "model.py", reqs)
    venv = venvs.ensure([reqs])
    log = tmp_path_factory.mktemp("stock") / "stock.log"
    os.environ["MODEL_NAME"] = NAME
    try:
        server = start(isvc, venv, launched=False, log=log)
    finally:
        os.environ.pop("MODEL_NAME", None)
    try:
        return [call(server.base, m, p, b)[::2] for m, p, b in REQUESTS]
    finally:
        stop(server)


def test_served_as_it_is_on_the_local_target(run_dir, service_dir, stock_answers):
    port = free_port()
    deploy = cli("deploy", NAME, "--service-dir", str(service_dir), "--target", "local",
                 "--port", str(port))  # fmt: skip
    assert f"✓ {NAME}/hello" in deploy.stdout  # the sample, through the gateway
    assert _through_gateway(port) == stock_answers
    rec = state.read().isvcs[f"local/{NAME}"].components["predictor"]
    listening = listening_addresses(rec.process.pid)
    assert ("127.0.0.1", rec.port) in listening
    assert non_loopback(listening) == set(), listening
    assert "sandbox" not in cli("services", "--service-dir", str(service_dir)).stderr


@pytest.mark.docker
def test_served_as_it_is_on_the_docker_target(run_dir, service_dir, stock_answers):
    if not docker_answers():
        pytest.skip("docker target: no Docker daemon answers (`docker info` fails)")
    port = free_port()
    cli("up", NAME, "--service-dir", str(service_dir), "--target", "docker", "--port", str(port))
    assert _through_gateway(port) == stock_answers
    container = state.read().isvcs[f"docker/{NAME}"].components["predictor"].container
    user = (
        shutil.which("docker")
        and os.popen(f"docker inspect --format '{{{{.Config.User}}}}' {container}").read().strip()
    )
    assert user not in ("", "0", "root"), user  # blubber's runtime user, not root


def test_init_writes_an_isvc_that_serves_at_once(run_dir, tmp_path):
    """`ml-sandbox init` then `deploy`: every sample of the new isvc passes through the gateway,
    transformer and predictor on the stock server."""
    where = tmp_path / "mine"
    cli("init", "my-isvc", "--transformer", "--dir", str(where))
    folder = where / "my-isvc"
    assert {p.name for p in folder.iterdir()} >= {
        "service.yaml", "model.py", "transformer.py", "requirements.txt", "blubber.yaml", "training"
    }  # fmt: skip
    deploy = cli("deploy", "my-isvc", "--service-dir", str(where), "--target", "local",
                 "--port", str(free_port()))  # fmt: skip
    assert "✓ my-isvc/keywords: HTTP 200" in deploy.stdout
    assert "✓ my-isvc/empty-text: HTTP 400" in deploy.stdout
    # issue 15 defect 5: the hints name the folder; while it runs, it is known by name.
    assert f"predict <isvc> --service-dir {folder.resolve()}" in deploy.stdout
    assert "✓ my-isvc/keywords" in cli("predict", "my-isvc").stdout
    assert cli("logs", "my-isvc", "-n", "5").returncode == 0
    assert "my-isvc is up to date" in cli("up", "my-isvc").stderr
    # Its service.yaml breaks: it can still be read and stopped by name.
    (folder / "service.yaml").write_text("name: [unclosed\n")
    assert cli("logs", "my-isvc", "--component", "transformer", "-n", "5").returncode == 0
    cli("down", "my-isvc")
    assert "local/my-isvc" not in state.read().isvcs
    (folder / "service.yaml").unlink()
    again = cli("init", "my-isvc", "--dir", str(where), check=False)
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = cli("init", "My_Isvc", "--dir", str(where), check=False)
    assert bad.returncode == 2 and "not an isvc name" in bad.stderr


def test_the_gateway_serves_lift_wings_client_surfaces(run_dir, service_dir, stock_answers):
    """Both URL forms, readiness, the 404 listing the known isvcs, and the body limit (413 JSON
    from the gateway, where production's Envoy enforces it), in front of a stock isvc."""
    port = free_port()
    cli("up", NAME, "--service-dir", str(service_dir), "--port", str(port),
        "--max-body-bytes", "2000")  # fmt: skip
    _, path, body = REQUESTS[0]

    def post(url_path: str, host: str, data: bytes) -> tuple[int, bytes]:
        headers = {"Host": host, "Content-Type": "application/json"}
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}{url_path}", data=data, headers=headers
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    assert post(path, HOST, body) == stock_answers[0]
    public = f"/service/lw/inference/v1/models/{NAME}:predict"
    assert post(public, "api.wikimedia.org", body) == stock_answers[0]
    status, answer = post(path, "nope.example.org", body)
    assert status == 404 and NAME in json.loads(answer)["error"]
    status, answer = post(path, HOST, json.dumps({"text": "x" * 3000}).encode())
    assert status == 413 and "2000" in json.loads(answer)["error"]
