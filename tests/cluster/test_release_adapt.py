"""How a layer adapts an upstream release before applying it, run by ansible for real on a
stand-in shaped like KServe v0.17.0's `kserve.yaml`: overlays merged, resources from
stack_resources, env added, the components production does not run dropped, the missing
Namespace created with production's labels, and a workload the footprint table does not know
refused. tests/cluster/test_upstream_releases.py runs the same steps over the real releases.

The stand-in has the structure of the real file (kserve/kserve@v0.17.0, built by
hack/release/generate-install.sh from config/overlays/all, which adds the llmisvc and localmodel
components to the base, then drops every Namespace document): no Namespace, the
inferenceservice-config ConfigMap, Deployment `kserve-controller-manager` with containers
`manager` and `kube-rbac-proxy`, Deployments `kserve-localmodel-controller-manager` and
`llmisvc-controller-manager` and DaemonSet `kserve-localmodelnode-agent`, each with a `manager`
container, at the images and resources the release gives them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import INVENTORY, PLAYBOOKS, VENV_BIN, run

pytestmark = pytest.mark.cluster

ADAPT = Path(__file__).parent / "playbooks" / "adapt.yml"
UPSTREAM_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "200Mi"},
    "limits": {"cpu": "100m", "memory": "300Mi"},
}


def _workload(kind: str, name: str, containers: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "kserve"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": c, "image": image}
                        | ({"resources": UPSTREAM_RESOURCES} if c == "manager" else {})
                        for c, image in containers
                    ]
                },
            },
        },
    }


def release_docs(without: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """KServe v0.17.0's kserve.yaml in miniature (module docstring), less `without`."""
    docs = [
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "inferenceservices.serving.kserve.io"},
            "spec": {"group": "serving.kserve.io"},
        },
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "llminferenceservices.serving.kserve.io"},
            "spec": {"group": "serving.kserve.io"},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "inferenceservice-config", "namespace": "kserve"},
            "data": {
                "ingress": json.dumps(
                    {"ingressDomain": "example.com", "disableIstioVirtualHost": False}
                ),
                "explainers": json.dumps({"art": {"image": "kserve/art-explainer"}}),
            },
        },
        _workload(
            "Deployment",
            "kserve-controller-manager",
            [
                ("manager", "kserve/kserve-controller:v0.17.0"),
                ("kube-rbac-proxy", "quay.io/brancz/kube-rbac-proxy:v0.18.0"),
            ],
        ),
        _workload(
            "Deployment",
            "kserve-localmodel-controller-manager",
            [("manager", "kserve/kserve-localmodel-controller:v0.17.0")],
        ),
        _workload(
            "Deployment",
            "llmisvc-controller-manager",
            [("manager", "kserve/llmisvc-controller:v0.17.0")],
        ),
        _workload(
            "DaemonSet",
            "kserve-localmodelnode-agent",
            [("manager", "kserve/kserve-localmodelnode-agent:v0.17.0")],
        ),
    ]
    return [d for d in docs if d["metadata"]["name"] not in without]


def adapt_releases(
    tmp_path: Path, releases: list[dict[str, Any]], **evars: Any
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run tests/cluster/playbooks/adapt.yml over `releases` ({name, url, overlays?, env?, drop?,
    unset?}); the adapted documents by release name (those that got that far)."""
    out = tmp_path / "adapted"
    out.mkdir(parents=True, exist_ok=True)
    evars = {
        "adapt_releases": releases,
        "adapt_out_dir": str(out),
        "sandbox_home": str(tmp_path / "home"),
        **evars,
    }
    proc = run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            str(INVENTORY),
            str(ADAPT),
            "-e",
            json.dumps(evars),
        ],
        ANSIBLE_ROLES_PATH=str(PLAYBOOKS / "roles"),
        ANSIBLE_FILTER_PLUGINS=str(PLAYBOOKS / "filter_plugins"),
    )
    return proc, {f.stem: json.loads(f.read_text()) for f in out.glob("*.json")}


def adapt(tmp_path: Path, docs: list[dict[str, Any]], **evars: Any):
    release = tmp_path / "kserve.yaml"
    release.write_text(yaml.safe_dump_all(docs))
    spec: dict[str, Any] = {
        "name": "kserve",
        "url": release.as_uri(),
        "drop": "kserve_drop",
        "create": "kserve_namespaces_created",
    }
    for key in ("overlays", "env"):
        if f"adapt_{key}" in evars:
            spec[key] = evars.pop(f"adapt_{key}")
    proc, adapted = adapt_releases(tmp_path, [spec], **evars)
    return proc, adapted.get("kserve")


def test_release_is_adapted_with_the_rendered_overlay(
    tmp_path: Path, rendered: Path, stack_vars: dict[str, Any]
) -> None:
    overlay = rendered / "manifests" / "kserve" / "inferenceservice-config.yaml"
    proc, adapted = adapt(
        tmp_path,
        release_docs(),
        adapt_overlays=[str(overlay)],
        adapt_env={"kserve": {"EXAMPLE_FLAG": "1"}},
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    # llmisvc's CRD and workloads are dropped: production runs kserve-controller-manager only.
    assert [d["metadata"]["name"] for d in adapted["crds"]] == [
        "inferenceservices.serving.kserve.io"
    ]
    assert [(d["kind"], d["metadata"]["name"]) for d in adapted["rest"]] == [
        ("Namespace", "kserve"),
        ("ConfigMap", "inferenceservice-config"),
        ("Deployment", "kserve-controller-manager"),
    ]
    rest = {d["kind"]: d for d in adapted["rest"]}
    # The release has no Namespace document; it comes first, with production's labels.
    assert rest["Namespace"]["metadata"]["labels"] == stack_vars["stack_namespaces"]["kserve"]
    data = rest["ConfigMap"]["data"]
    ingress = json.loads(data["ingress"])
    assert ingress["ingressDomain"] == "wikimedia.org"
    assert ingress["disableIstioVirtualHost"] is False, "release keys the overlay lacks are kept"
    assert json.loads(data["explainers"]) == {"art": {"image": "kserve/art-explainer"}}
    assert json.loads(data["deploy"]) == {"defaultDeploymentMode": "Knative"}
    container, proxy = rest["Deployment"]["spec"]["template"]["spec"]["containers"]
    table = stack_vars["stack_resources"]["kserve/kserve-controller-manager"]
    assert container["resources"] == table["manager"] != UPSTREAM_RESOURCES
    assert proxy["resources"] == table["kube-rbac-proxy"]
    assert {"name": "EXAMPLE_FLAG", "value": "1"} in container["env"]
    assert container["image"] == "kserve/kserve-controller:v0.17.0"


def test_wmf_images_replace_upstream_ones(tmp_path: Path, stack_vars: dict[str, Any]) -> None:
    proc, adapted = adapt(tmp_path, release_docs(), stack_images="wmf")
    assert proc.returncode == 0, proc.stdout[-3000:]
    dep = next(d for d in adapted["rest"] if d["kind"] == "Deployment")
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    assert (
        image == f"docker-registry.wikimedia.org/kserve-controller:{stack_vars['kserve_version']}-0"
    )


def test_a_workload_missing_from_the_footprint_table_is_refused(tmp_path: Path) -> None:
    extra = _workload("Deployment", "kserve-new-controller", [("manager", "kserve/new:v0.17.0")])
    docs = [*release_docs(), extra]
    proc, adapted = adapt(tmp_path, docs)
    assert proc.returncode != 0
    assert "kserve/kserve-new-controller/manager" in proc.stdout
    assert "stack_resources" in proc.stdout
    assert adapted is None


def test_without_the_drop_list_the_release_runs_what_production_does_not(tmp_path: Path) -> None:
    """The KServe layer's drop list is what keeps llmisvc and localmodel out: without it, the
    footprint check stops the run on exactly the workloads upstream's overlay adds."""
    release = tmp_path / "kserve.yaml"
    release.write_text(yaml.safe_dump_all(release_docs()))
    proc, adapted = adapt_releases(tmp_path, [{"name": "kserve", "url": release.as_uri()}])
    assert proc.returncode != 0
    for key in [
        "kserve/kserve-localmodel-controller-manager/manager",
        "kserve/llmisvc-controller-manager/manager",
        "kserve/kserve-localmodelnode-agent/manager",
    ]:
        assert key in proc.stdout
    assert adapted == {}


def test_a_namespace_nothing_creates_is_refused(tmp_path: Path) -> None:
    docs = release_docs()
    docs[2]["metadata"]["namespace"] = "kserve-elsewhere"
    proc, _ = adapt(tmp_path, docs)
    assert proc.returncode != 0
    assert "kserve-elsewhere" in proc.stdout and "stack_namespaces" in proc.stdout
