"""The docker target: both isvcs in containers on a user-defined network, behind the gateway."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from sandbox import images
from sandbox.catalog import Service
from sandbox.checks import evaluate
from sandbox.runtime import docker, state
from sandbox.runtime.docker import LABEL_SANDBOX, network_name, sandbox_id
from sandbox.runtime.lifecycle import HostTarget
from sandbox.runtime.options import MediaWiki, UpOptions
from sandbox.runtime.processes import free_port
from tests.docker.conftest import inspect

pytestmark = pytest.mark.docker


@dataclass
class Running:
    target: HostTarget
    port: int

    def post(self, service: Service, body: bytes) -> tuple[int, bytes]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{service.predict_path}",
            data=body,
            headers={"Host": service.host, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


def _sandbox_containers() -> list[str]:
    return images.docker(
        "ps", "--all", "--format", "{{.Names}}", "--filter", f"label={LABEL_SANDBOX}={sandbox_id()}"
    ).stdout.split()


def _network_exists() -> bool:
    return images.docker("network", "inspect", network_name(), check=False).returncode == 0


@pytest.fixture(scope="module")
def own_run_dir(tmp_path_factory) -> Iterator[None]:
    """A sandbox of its own (run dir, container names, network, gateway port), so the e2e suite's
    docker sandbox in the same session is never touched."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SANDBOX_RUN_DIR", str(tmp_path_factory.mktemp("docker-target-run")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def running(docker_ready, built, own_run_dir, services) -> Iterator[Running]:
    target = docker.target()
    port = free_port()
    target.up(
        list(services.values()), UpOptions(gateway_port=port, mediawiki=MediaWiki.parse("replay"))
    )
    try:
        yield Running(target, port)
    finally:
        target.down()


def test_every_sample_through_the_gateway(running, services) -> None:
    failures = {}
    for service in services.values():
        for sample in service.samples:
            status, body = running.post(service, sample.body())
            problems = evaluate(sample, status, body)
            if problems:
                failures[f"{service.name}/{sample.name}"] = problems
    assert failures == {}


def test_unknown_host_is_a_json_404(running, services) -> None:
    svc = services["langid"]
    req = urllib.request.Request(
        f"http://127.0.0.1:{running.port}{svc.predict_path}",
        data=svc.samples[0].body(),
        headers={"Host": "nope.example.org"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 404
    assert "nope.example.org" in json.loads(err.value.read())["error"]


def test_containers_run_like_pods(running, services, built) -> None:
    outlink = services["outlink-topic-model"]
    st = state.read()
    wiki_url = f"http://{st.mediawiki['docker'].container}:8080"

    def container(isvc: str, component: str) -> str:
        return st.isvcs[f"docker/{isvc}"].components[component].container

    for name, svc in services.items():
        for component, comp in svc.component_items():
            info = inspect(container(name, component))
            assert info["Config"]["Image"] == built[name][component]
            assert info["State"]["Running"]
            # Published on 127.0.0.1 only; attached to the sandbox's network.
            bindings = info["HostConfig"]["PortBindings"]["8080/tcp"]
            assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
            assert list(info["NetworkSettings"]["Networks"]) == [network_name()]
            env = dict(e.split("=", 1) for e in info["Config"]["Env"])
            for key, value in comp.env.items():
                expected = wiki_url if key == "WIKI_URL" else value
                assert env[key] == expected, (name, component, key)
            args = info["Args"][-6:] if component == "transformer" else info["Args"][-4:]
            assert args[:4] == ["--model_name", name, "--http_port", "8080"]
            mounts = {m["Destination"]: m for m in info["Mounts"]}
            if component == "predictor":
                assert mounts["/mnt/models"]["RW"] is False
            else:
                assert "/mnt/models" not in mounts
    transformer = inspect(container(outlink.name, "transformer"))
    predictor_host = f"{container(outlink.name, 'predictor')}:8080"
    assert info["HostConfig"]["LogConfig"]["Config"] == {"max-file": "3", "max-size": "10m"}
    assert transformer["Args"][-2:] == ["--predictor_host", predictor_host]


def test_status_reports_every_container(running, services) -> None:
    rows = running.target.status()
    seen = {(r.isvc, r.component) for r in rows}
    expected = {(n, c) for n, s in services.items() for c, _ in s.component_items()}
    assert expected | {("-", "mediawiki")} == seen
    assert all(r.state == "running" and r.address.startswith("127.0.0.1:") for r in rows)


def test_up_again_is_idempotent(running, services) -> None:
    before = {c: inspect(c)["Id"] for c in _sandbox_containers()}
    running.target.up(
        list(services.values()),
        UpOptions(gateway_port=running.port, mediawiki=MediaWiki.parse("replay")),
    )
    assert {c: inspect(c)["Id"] for c in _sandbox_containers()} == before


def test_logs_of_a_component_and_of_the_replay_server(running, capfd) -> None:
    assert running.target.logs("outlink-topic-model", "transformer", follow=False, lines=50) == 0
    assert running.target.logs("mediawiki", None, follow=False) == 0
    out = capfd.readouterr()
    # The replay server's request log (its start banner may be older than the lines shown).
    assert 'Host=en.wikipedia.org "WMF ML Team outlink-topic-model svc"' in out.out + out.err
    assert running.target.logs("no-such-isvc", None, follow=False) == 1
