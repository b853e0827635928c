"""One e2e suite for every target: each test gets a `sandbox` running both isvcs on a target.

Targets: local always; docker when a Docker daemon answers; minikube only when selected
(`--target minikube` or SANDBOX_E2E_TARGET) and its kube context answers. MediaWiki is the replay
server on every target (hermetic).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest

from sandbox import catalog
from sandbox.catalog import Service
from sandbox.runtime import state
from sandbox.runtime.processes import free_port


def docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def selected_targets(config: pytest.Config) -> list[str]:
    chosen = config.getoption("--target") or [
        t for t in os.environ.get("SANDBOX_E2E_TARGET", "").split(",") if t
    ]
    return chosen or ["local", "docker"]


# Each target's tests carry that target's marker, so `-m "not docker"` leaves the docker tier out.
TARGET_MARKS = {"docker": [pytest.mark.docker], "minikube": [pytest.mark.minikube]}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sandbox" in metafunc.fixturenames:
        params = [
            pytest.param(t, marks=TARGET_MARKS.get(t, []), id=t)
            for t in selected_targets(metafunc.config)
        ]
        metafunc.parametrize("sandbox", params, indirect=True)


def cli(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox", *args], capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"ml-sandbox {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@dataclass
class Response:
    status: int
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Sandbox:
    target: str
    base_url: str  # the gateway (local, docker) or the Istio ingress (minikube)
    mediawiki_url: str | None  # the replay server's control URL, reachable from the tests

    def post(self, service: Service, body: bytes, host: str | None = None) -> Response:
        req = urllib.request.Request(
            self.base_url + service.predict_path,
            data=body,
            headers={"Host": host or service.host, "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return Response(r.status, r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, e.read())

    def set_fault(self, **fault) -> None:
        if self.mediawiki_url is None:
            pytest.skip(f"the replay server is not reachable from the tests on {self.target}")
        req = urllib.request.Request(
            f"{self.mediawiki_url}/__replay__/fault",
            data=json.dumps(fault).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200


@pytest.fixture(scope="session")
def sandbox(request: pytest.FixtureRequest):
    target = request.param
    if target == "docker" and not docker_answers():
        pytest.skip("docker target: no Docker daemon answers (`docker info` fails)")
    if target == "minikube":
        from sandbox.runtime import minikube

        if not minikube.context_answers():
            pytest.skip("minikube target: the ml-sandbox kube context does not answer")
        # scripts/e2e.sh deploys with `deploy.sh --all --target minikube --mediawiki replay`.
        yield Sandbox("minikube", minikube.ingress_url(), None)
        return
    port = free_port()
    cli("up", "--all", "--target", target, "--mediawiki", "replay", "--port", str(port))
    try:
        mw = state.read().mediawiki.get(target)
        yield Sandbox(target, f"http://127.0.0.1:{port}", mw.url if mw else None)
    finally:
        cli("down", "--target", target, check=False)


@pytest.fixture(scope="session")
def services() -> dict[str, Service]:
    return catalog.load_all()
