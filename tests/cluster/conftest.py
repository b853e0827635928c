"""Fixtures of the cluster tier: static checks of sandbox.yml and the manifests it applies.

No Kubernetes API server runs here and nothing downloads, so these tests render, lint, validate
and run the roles that need no cluster; nothing pretends a cluster exists.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
VENV_BIN = Path(sys.executable).parent
ROLE_PLAYBOOK = Path(__file__).parent / "playbooks" / "role.yml"
INVENTORY = PLAYBOOKS / "inventory" / "hosts.yml"


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for ansible tools: the venv first on PATH, no colours."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(ANSIBLE_NOCOLOR="1", NO_COLOR="1", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0")
    env.update(extra)
    return env


def run(argv: list[str], timeout: int = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=REPO, env=tool_env(**env), capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def stack_vars() -> dict[str, Any]:
    """The stack's vars files (versions and shared settings), as plain data."""
    merged: dict[str, Any] = {}
    for f in sorted((PLAYBOOKS / "group_vars" / "all").glob("*.yml")):
        merged.update(yaml.safe_load(f.read_text()))
    # The model store's location: the model_store role's inputs, which other layers read.
    store = yaml.safe_load((PLAYBOOKS / "roles/model_store/defaults/main.yml").read_text())
    merged.update({k: v for k, v in store.items() if "{{" not in str(v)})
    return merged


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every manifest the stack renders from its templates, rendered by ansible itself."""
    home = tmp_path_factory.mktemp("render")
    proc = run(
        [str(VENV_BIN / "ansible-playbook"), "playbooks/render.yml", "-e", f"render_home={home}"]
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return home


@pytest.fixture(scope="session")
def rendered_docs(rendered: Path) -> dict[str, list[dict[str, Any]]]:
    """Rendered documents by file name (relative to <home>/manifests)."""
    out = {}
    for f in sorted((rendered / "manifests").rglob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
        out[str(f.relative_to(rendered / "manifests"))] = docs
    return out


@pytest.fixture
def pinned_crds() -> Path:
    """The pinned CRDs (../shared/crds in CI, or the cache); skip when absent: tests never
    download them."""
    from sandbox import schemas

    if schemas.missing_crds():
        pytest.skip(
            f"pinned CRDs not under {schemas.crd_dir()} (python -m sandbox.schemas fetches)"
        )
    return schemas.crd_dir()


RoleRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_role(tmp_path: Path) -> RoleRunner:
    """Run one role on this machine (tests/cluster/playbooks/role.yml) with extra vars."""

    def _run(role: str, extra: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
        import json

        evars = {"test_role": role, "sandbox_home": str(tmp_path / "home"), **(extra or {})}
        return run(
            [
                str(VENV_BIN / "ansible-playbook"),
                "-i",
                str(INVENTORY),
                str(ROLE_PLAYBOOK),
                "-e",
                json.dumps(evars),
            ],
            ANSIBLE_ROLES_PATH=str(PLAYBOOKS / "roles"),
        )

    return _run


def recap(stdout: str) -> dict[str, int]:
    """`ok=N changed=N ...` of the localhost line of the PLAY RECAP."""
    line = next(ln for ln in reversed(stdout.splitlines()) if ln.startswith("localhost"))
    return {k: int(v) for k, v in (part.split("=") for part in line.split()[2:])}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_release(tmp_path: Path, stack_vars: dict[str, Any]) -> Iterator[dict[str, Path]]:
    """Stand-ins for the tool releases (the outside world): scripts that print the pinned
    versions the way the real tools do, an istioctl tarball, and the `.sha256` files the projects
    publish beside their artifacts."""
    d = tmp_path / "release"
    (d / "istio").mkdir(parents=True)
    kubectl = d / "kubectl"
    kubectl.write_text(
        "#!/bin/sh\n"
        f'echo \'{{"clientVersion": {{"gitVersion": "v{stack_vars["kubectl_version"]}"}}}}\'\n'
    )
    minikube = d / "minikube"
    minikube.write_text(f"#!/bin/sh\necho v{stack_vars['minikube_version']}\n")
    istioctl = d / "istio" / "istioctl"
    istioctl.write_text(f"#!/bin/sh\necho 'client version: {stack_vars['istio_version']}'\n")
    for f in (kubectl, minikube, istioctl):
        f.chmod(0o755)
    tarball = d / "istioctl.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(istioctl, arcname="istioctl")
    for f in (kubectl, minikube, tarball):
        Path(f"{f}.sha256").write_text(sha256(f) + "\n")
    yield {"kubectl": kubectl, "minikube": minikube, "istioctl": tarball}
