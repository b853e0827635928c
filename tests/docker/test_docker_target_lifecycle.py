"""The docker target's life cycle: a failed `up` and `down` leave nothing behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox import images
from sandbox.errors import RunError
from sandbox.runtime import docker, state
from sandbox.runtime.docker import LABEL_SANDBOX, network_name, sandbox_id
from sandbox.runtime.options import MediaWiki, UpOptions
from sandbox.runtime.processes import free_port

pytestmark = pytest.mark.docker


def _sandbox_containers() -> list[str]:
    return images.docker(
        "ps", "--all", "--format", "{{.Names}}", "--filter", f"label={LABEL_SANDBOX}={sandbox_id()}"
    ).stdout.split()


def _network_exists() -> bool:
    return images.docker("network", "inspect", network_name(), check=False).returncode == 0


@pytest.fixture
def own_run_dir(tmp_path, monkeypatch) -> Iterator[None]:
    """A fresh sandbox per test: its own run dir, container names and network."""
    monkeypatch.setenv("SANDBOX_RUN_DIR", str(tmp_path / "run"))
    yield
    docker.target().down()


def test_a_failing_container_leaves_nothing_running(docker_ready, built, own_run_dir, services):
    target = docker.target()
    env = {"MODEL_PATH": "/mnt/models/no-such-model.bin"}
    opts = UpOptions(gateway_port=free_port(), env=env, timeout_s=30)
    with pytest.raises(RunError) as err:
        target.up([services["langid"]], opts)
    message = str(err.value)
    assert "predictor did not become ready: its container" in message
    assert "cannot be opened for loading" in message  # the container's own last log lines
    assert _sandbox_containers() == []
    assert not _network_exists()
    st = state.read()
    assert st.gateway is None and st.isvcs == {} and st.starting == {} and st.mediawiki == {}


def test_down_leaves_no_container_or_network(docker_ready, built, own_run_dir, services):
    target = docker.target()
    target.up(
        [services["langid"]],
        UpOptions(gateway_port=free_port(), mediawiki=MediaWiki.parse("replay")),
    )
    # langid does not call MediaWiki: no replay server is built or started (issue 15, defect 9).
    assert len(_sandbox_containers()) == 1 and state.read().mediawiki == {}
    assert _network_exists()
    target.down()
    assert _sandbox_containers() == []
    assert not _network_exists()
    st = state.read()
    assert st.isvcs == {} and st.routes() == {} and st.gateway is None and st.mediawiki == {}


def test_a_changed_isvc_gets_new_containers_then_the_old_ones_go(
    docker_ready, built, own_run_dir, services
):
    target = docker.target()
    port = free_port()
    target.up([services["langid"]], UpOptions(gateway_port=port))
    (old,) = _sandbox_containers()
    target.up([services["langid"]], UpOptions(gateway_port=port, env={"SANDBOX_TEST_MARK": "1"}))
    (new,) = _sandbox_containers()
    assert new != old and new.startswith(f"{sandbox_id()}-langid-predictor-")
    assert state.read().isvcs["docker/langid"].components["predictor"].container == new
