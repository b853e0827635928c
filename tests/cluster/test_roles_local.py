"""Roles that need no cluster, run for real on this machine (connection local): the tool
install's checksum and idempotence logic against stand-in release artifacts (file:// URLs),
preflight's refusals, and the per-sandbox S3 credentials."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    INVENTORY,
    PLAYBOOKS,
    REPO,
    ROLE_PLAYBOOK,
    VENV_BIN,
    RoleRunner,
    recap,
    run,
    sha256,
)

pytestmark = pytest.mark.cluster


def tool_vars(release: dict[str, Path], **extra: Any) -> dict[str, Any]:
    return {
        "tools_kubectl_url": release["kubectl"].as_uri(),
        "tools_minikube_url": release["minikube"].as_uri(),
        "tools_istioctl_url": release["istioctl"].as_uri(),
        **extra,
    }


def test_tools_install_verified_and_a_second_run_changes_nothing(
    run_role: RoleRunner, fake_release: dict[str, Path], tmp_path: Path
) -> None:
    # kubectl and istioctl: the published .sha256 beside the artifact; minikube: a pinned sum.
    pinned = {
        "kubectl": {"amd64": "", "arm64": ""},
        "istioctl": {"amd64": "", "arm64": ""},
        "minikube": {a: sha256(fake_release["minikube"]) for a in ("amd64", "arm64")},
    }
    evars = tool_vars(fake_release, tools_checksums=pinned)
    first = run_role("tools", evars)
    assert first.returncode == 0, first.stdout[-3000:]
    assert recap(first.stdout)["changed"] > 0
    bin_dir = tmp_path / "home" / "bin"
    for tool in ("kubectl", "minikube", "istioctl"):
        assert os.access(bin_dir / tool, os.X_OK), tool
    second = run_role("tools", evars)
    assert second.returncode == 0, second.stdout[-3000:]
    assert recap(second.stdout)["changed"] == 0, second.stdout[-3000:]


def test_a_tampered_artifact_is_refused_and_nothing_is_installed(
    run_role: RoleRunner, fake_release: dict[str, Path], tmp_path: Path
) -> None:
    Path(f"{fake_release['kubectl']}.sha256").write_text("0" * 64 + "\n")
    proc = run_role("tools", tool_vars(fake_release, tools_names=["kubectl"]))
    assert proc.returncode != 0
    assert "checksum" in proc.stdout.lower()
    assert not (tmp_path / "home" / "bin" / "kubectl").exists()


def test_a_tool_reporting_another_version_is_refused(
    run_role: RoleRunner, fake_release: dict[str, Path]
) -> None:
    proc = run_role(
        "tools", tool_vars(fake_release, tools_names=["minikube"], minikube_version="9.9.9")
    )
    assert proc.returncode != 0
    assert "not the pinned" in proc.stdout and "9.9.9" in proc.stdout


def test_preflight_refuses_a_host_below_the_minimum_with_a_clear_message(
    run_role: RoleRunner,
) -> None:
    need = (os.cpu_count() or 1) + 1
    proc = run_role("preflight", {"preflight_min_cpus": need})
    assert proc.returncode != 0
    assert f"the sandbox needs at least {need}" in proc.stdout


def test_preflight_refuses_unknown_settings(run_role: RoleRunner) -> None:
    proc = run_role("preflight", {"cluster_provider": "kind"})
    assert proc.returncode != 0
    assert "expected cluster_provider minikube|existing" in proc.stdout


def test_preflight_passes_for_an_existing_cluster_on_this_host(run_role: RoleRunner) -> None:
    proc = run_role("preflight", {"cluster_provider": "existing"})
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_s3_credentials_are_generated_once_and_kept_0600(
    run_role: RoleRunner, tmp_path: Path
) -> None:
    first = run_role("s3_credentials")
    assert first.returncode == 0, first.stdout[-3000:]
    creds_file = tmp_path / "home" / "state" / "s3-credentials.json"
    assert creds_file.stat().st_mode & 0o777 == 0o600
    creds = json.loads(creds_file.read_text())
    assert len(creds["secret_key"]) == 40 and creds["access_key"].startswith("sandbox")
    assert creds["secret_key"] not in first.stdout, "credentials must not be logged"
    second = run_role("s3_credentials")
    assert recap(second.stdout)["changed"] == 0
    assert json.loads(creds_file.read_text()) == creds


def test_preflight_refuses_the_none_driver_with_the_reason(run_role: RoleRunner) -> None:
    """Defect 3: minikube v1.37.0's none driver needs conntrack, crictl, cri-dockerd and the CNI
    plugins (cmd/minikube/cmd/start.go, pkg/minikube/reason/reason.go) and publishes nothing on
    the host; the sandbox supports the docker driver only."""
    proc = run_role("preflight", {"minikube_driver": "none"})
    assert proc.returncode != 0
    assert "minikube_driver docker" in proc.stdout
    for doc in [REPO / "README.md", REPO / "docs" / "minikube.md", REPO / "scripts" / "e2e.sh"]:
        assert "minikube_driver=none" not in doc.read_text(), doc


def test_verify_records_the_cluster_facts_this_run_used(
    run_role: RoleRunner, tmp_path: Path
) -> None:
    """cluster.json: the one source of the cluster's facts for the CLI, with -e overrides."""
    proc = run_role(
        "verify",
        {"test_tasks_from": "state", "ingress_host_port": 9090, "isvc_namespaces": ["llm"]},
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    state = tmp_path / "home" / "state" / "cluster.json"
    assert state.stat().st_mode & 0o777 == 0o600
    facts = json.loads(state.read_text())
    assert set(facts) == {
        "provider",
        "driver",
        "profile",
        "context",
        "bin_dir",
        "ingress",
        "model_store",
        "isvc_s3_secret_name",
        "isvc_service_account",
        "isvc_namespaces",
    }
    assert facts["ingress"] == {"host": "127.0.0.1", "port": 9090}
    assert facts["isvc_namespaces"] == ["llm"]
    assert (facts["provider"], facts["driver"], facts["profile"], facts["context"]) == (
        "minikube",
        "docker",
        "ml-sandbox",
        "ml-sandbox",
    )
    assert facts["bin_dir"] == str(tmp_path / "home" / "bin")
    assert facts["model_store"] == {
        "namespace": "model-store",
        "service": "seaweedfs",
        "s3_port": 8333,
        "bucket": "wmf-ml-models",
        "region": "us-east-1",
        "credentials_file": str(tmp_path / "home" / "state" / "s3-credentials.json"),
    }
    assert (facts["isvc_s3_secret_name"], facts["isvc_service_account"]) == (
        "swift-s3-credentials",
        "kserve",
    )


def test_verify_records_the_current_context_of_an_existing_cluster(
    run_role: RoleRunner, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\ncurrent-context: team-cluster\n")
    proc = run_role(
        "verify",
        {
            "test_tasks_from": "state",
            "cluster_provider": "existing",
            "sandbox_kubeconfig": str(kubeconfig),
        },
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    facts = json.loads((tmp_path / "home" / "state" / "cluster.json").read_text())
    assert (facts["provider"], facts["context"]) == ("existing", "team-cluster")


def test_verify_records_the_loopback_when_the_ingress_binds_every_address(
    run_role: RoleRunner, tmp_path: Path
) -> None:
    # The Vagrant VM publishes the ingress on 0.0.0.0; clients inside it use 127.0.0.1.
    proc = run_role("verify", {"test_tasks_from": "state", "ingress_host_address": "0.0.0.0"})
    assert proc.returncode == 0, proc.stdout[-3000:]
    facts = json.loads((tmp_path / "home" / "state" / "cluster.json").read_text())
    assert facts["ingress"] == {"host": "127.0.0.1", "port": 8080}


def test_the_model_store_role_creates_the_store_and_uploads_nothing() -> None:
    """One uploader: deploy.sh --target minikube uploads each isvc's model; the playbook only
    creates the store and its bucket."""
    role = REPO / "playbooks" / "roles" / "model_store"
    tasks = "".join(f.read_text() for f in (role / "tasks").glob("*.yml"))
    assert (
        not (role / "tasks" / "seed.yml").exists()
        and not (role / "tasks" / "seed_one.yml").exists()
    )
    assert "s3.bucket.create" in tasks
    assert "k8s_cp" not in tasks and "filer.copy" not in tasks and "models path" not in tasks
    assert "model_store_seed" not in (role / "meta" / "argument_specs.yml").read_text()


def _run_preflight(
    home: Path, sandbox_home: Path, **extra: Any
) -> subprocess.CompletedProcess[str]:
    """preflight as sandbox.yml runs it, with HOME at `home` (where minikube keeps its
    profiles), the CPU minimum at 1 (this machine has 2) and no Docker checks."""
    evars = {
        "test_role": "preflight",
        "sandbox_home": str(sandbox_home),
        "preflight_check_runtime": False,
        "preflight_min_cpus": 1,
        **extra,
    }
    return run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(INVENTORY), str(ROLE_PLAYBOOK),
         "-e", json.dumps(evars)],
        ANSIBLE_ROLES_PATH=str(PLAYBOOKS / "roles"),
        HOME=str(home),
    )  # fmt: skip


def _host_memory_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_preflight_passes_a_second_run_that_has_used_the_disk(tmp_path: Path) -> None:
    """A re-run does not ask for a first run's free disk: the first run's images and volumes
    are what used it. Simulated: a disk minimum no host meets, before and after the minikube
    profile exists (as the first run's `minikube start` leaves it)."""
    home = tmp_path / "user"
    home.mkdir()
    first = _run_preflight(home, tmp_path / "sb", preflight_min_disk_gb=10**6)
    assert first.returncode != 0
    assert "the sandbox needs at least 1000000 GiB" in first.stdout
    profile = home / ".minikube" / "profiles" / "ml-sandbox" / "config.json"
    profile.parent.mkdir(parents=True)
    profile.write_text("{}\n")
    second = _run_preflight(home, tmp_path / "sb", preflight_min_disk_gb=10**6)
    assert second.returncode == 0, second.stdout[-3000:]
    assert "which only a first run needs" in second.stdout
    # Another profile's cluster is no re-run of this one.
    other = _run_preflight(home, tmp_path / "sb", preflight_min_disk_gb=10**6,
                           minikube_profile="another")  # fmt: skip
    assert other.returncode != 0


def test_preflight_compares_memory_with_what_minikube_is_asked_for(tmp_path: Path) -> None:
    """minikube v1.37.0 exits RSRC_OVER_ALLOC_MEM when --memory exceeds the host's memory
    (cmd/minikube/cmd/start.go, validateRequestedMemorySize): preflight refuses that host first,
    and passes the same host when minikube is asked for less."""
    home = tmp_path / "user"
    home.mkdir()
    over = _host_memory_mib() + 512
    proc = _run_preflight(home, tmp_path / "sb", cluster_memory_mb=over, preflight_min_disk_gb=1)
    assert proc.returncode != 0
    assert f"minikube will be asked for {over} MiB" in proc.stdout
    assert "RSRC_OVER_ALLOC_MEM" in proc.stdout and "cluster_memory_mb" in proc.stdout
    fits = _run_preflight(home, tmp_path / "sb", cluster_memory_mb=1024, preflight_min_disk_gb=1)
    assert fits.returncode == 0, fits.stdout[-3000:]
