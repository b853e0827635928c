"""Smoke, predict and deploy are written once over a target's ingress URL: the minikube target's
samples go through the same code as the host targets', to the Istio ingress the playbook recorded
(here a loopback HTTP server standing in for it: no cluster on this machine), with the production
Host header, retrying while the ingress answers 503 (a pod scaling from zero)."""

from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import catalog, cli
from sandbox.runtime import smoke, targets
from sandbox.runtime.minikube import facts as facts_mod
from sandbox.runtime.minikube import target as mk

pytestmark = pytest.mark.component


class Ingress(http.server.ThreadingHTTPServer):
    """Answers 503 `unready` times, then echoes what it got; records (Host, path) of each."""

    def __init__(self, unready: int) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.unready = unready
        self.seen: list[tuple[str, str]] = []


class Handler(http.server.BaseHTTPRequestHandler):
    server: Ingress

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.headers["Host"], self.path))
        status = 503 if self.server.unready > 0 else 200
        self.server.unready -= 1
        body = json.dumps({"ingress": status}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def ingress() -> Iterator[Ingress]:
    server = Ingress(unready=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def minikube(
    ingress: Ingress, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> mk.MinikubeTarget:
    home = tmp_path / "home"
    monkeypatch.setenv("SANDBOX_HOME", str(home))
    doc = {
        "provider": "minikube",
        "driver": "docker",
        "profile": "ml-sandbox",
        "context": "ml-sandbox",
        "bin_dir": str(home / "bin"),
        "ingress": {"host": "127.0.0.1", "port": ingress.server_address[1]},
        "model_store": {
            "namespace": "model-store",
            "service": "seaweedfs",
            "s3_port": 8333,
            "bucket": "wmf-ml-models",
            "region": "us-east-1",
            "credentials_file": str(home / "s3.json"),
        },
    }
    path = home / facts_mod.FACTS_RELPATH
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    target = mk.MinikubeTarget(facts=facts_mod.load_facts(), out=io.StringIO())
    monkeypatch.setattr(smoke, "SETTLE_POLL_S", 0.01)
    monkeypatch.setattr(targets, "get", lambda name: target)
    return target


def test_smoke_goes_to_the_ingress_with_the_host_and_settles(
    minikube: mk.MinikubeTarget, ingress: Ingress
) -> None:
    langid = catalog.get("langid")
    assert minikube.ingress_url() == f"http://127.0.0.1:{ingress.server_address[1]}"
    failed = smoke.run(minikube.ingress_url(), [langid], settle_s=minikube.settle_s)
    # The stand-in answers no language: every sample fails its checks, after the two 503s.
    assert failed == len(langid.samples)
    assert len(ingress.seen) == len(langid.samples) + 2
    assert set(ingress.seen) == {(langid.host, langid.predict_path)}


def test_without_settling_a_503_is_the_answer(minikube: mk.MinikubeTarget, ingress: Ingress):
    langid = catalog.get("langid")
    sample = langid.samples[0]
    status, _ = smoke.send(minikube.ingress_url(), langid, sample, timeout_s=5, settle_s=0)
    assert status == 503 and len(ingress.seen) == 1


def test_predict_target_minikube_goes_to_the_ingress(
    minikube: mk.MinikubeTarget, ingress: Ingress, capsys: pytest.CaptureFixture
) -> None:
    ingress.unready = 0
    code = cli.main(["predict", "langid", "--target", "minikube", "--data", '{"text": "x"}'])
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {"ingress": 200}
    langid = catalog.get("langid")
    assert ingress.seen == [(langid.host, langid.predict_path)]


def test_deploy_on_minikube_smokes_through_the_same_code(
    minikube: mk.MinikubeTarget, ingress: Ingress, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    """deploy = the target's up, then smoke over its ingress URL; a failed sample prints the
    target's diagnostics and exits 1."""
    ups: list[list[str]] = []
    monkeypatch.setattr(
        minikube, "up", lambda services, opts: ups.append([s.name for s in services])
    )
    monkeypatch.setattr(minikube, "diagnostics", lambda service: f"DIAGNOSTICS {service.name}")
    code = cli.main(["deploy", "langid", "--target", "minikube"])
    assert code == 1 and ups == [["langid"]]
    err = capsys.readouterr().err
    assert "DIAGNOSTICS langid" in err and "sample(s) failed their checks" in err
    assert len(ingress.seen) == len(catalog.get("langid").samples) + 2
