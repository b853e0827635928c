"""How a layer adapts an upstream release before applying it, run by ansible for real on a
stand-in release shaped like KServe's (CRD, namespace, inferenceservice-config, controller):
overlays merged, resources from stack_resources, env added, and a workload the footprint table
does not know refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import INVENTORY, PLAYBOOKS, VENV_BIN, run

pytestmark = pytest.mark.cluster

ADAPT = Path(__file__).parent / "playbooks" / "adapt.yml"


def release_docs(extra_deployment: str | None = None) -> list[dict[str, Any]]:
    def controller(name: str) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": "kserve"},
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": [
                            {
                                "name": "manager",
                                "image": "kserve/kserve-controller:upstream",
                                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
                            }
                        ]
                    },
                },
            },
        }

    docs = [
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "inferenceservices.serving.kserve.io"},
            "spec": {"group": "serving.kserve.io"},
        },
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kserve"}},
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
        controller("kserve-controller-manager"),
    ]
    if extra_deployment:
        docs.append(controller(extra_deployment))
    return docs


def adapt(tmp_path: Path, docs: list[dict[str, Any]], **evars: Any):
    release = tmp_path / "kserve.yaml"
    release.write_text(yaml.safe_dump_all(docs))
    out = tmp_path / "adapted.json"
    evars = {
        "adapt_url": release.as_uri(),
        "adapt_out": str(out),
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
    return proc, (json.loads(out.read_text()) if out.exists() else None)


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
    assert [d["kind"] for d in adapted["crds"]] == ["CustomResourceDefinition"]
    rest = {d["kind"]: d for d in adapted["rest"]}
    data = rest["ConfigMap"]["data"]
    ingress = json.loads(data["ingress"])
    assert ingress["ingressDomain"] == "wikimedia.org"
    assert ingress["disableIstioVirtualHost"] is False, "release keys the overlay lacks are kept"
    assert json.loads(data["explainers"]) == {"art": {"image": "kserve/art-explainer"}}
    assert json.loads(data["deploy"]) == {"defaultDeploymentMode": "Knative"}
    (container,) = rest["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert (
        container["resources"]
        == stack_vars["stack_resources"]["kserve/kserve-controller-manager"]["manager"]
    )
    assert {"name": "EXAMPLE_FLAG", "value": "1"} in container["env"]
    assert container["image"] == "kserve/kserve-controller:upstream"


def test_wmf_images_replace_upstream_ones(tmp_path: Path, stack_vars: dict[str, Any]) -> None:
    proc, adapted = adapt(tmp_path, release_docs(), stack_images="wmf")
    assert proc.returncode == 0, proc.stdout[-3000:]
    dep = next(d for d in adapted["rest"] if d["kind"] == "Deployment")
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    assert (
        image == f"docker-registry.wikimedia.org/kserve-controller:{stack_vars['kserve_version']}-0"
    )


def test_a_workload_missing_from_the_footprint_table_is_refused(tmp_path: Path) -> None:
    proc, adapted = adapt(tmp_path, release_docs(extra_deployment="llmisvc-controller-manager"))
    assert proc.returncode != 0
    assert "kserve/llmisvc-controller-manager/manager" in proc.stdout
    assert "stack_resources" in proc.stdout
    assert adapted is None
