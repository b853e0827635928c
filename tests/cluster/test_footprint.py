"""The stack without isvcs fits in 4 CPUs / 8 GiB with room for two small isvcs.

The sum comes from `stack_resources` (the one table every layer applies to its workloads, and
that the apply step refuses to run without) plus what minikube runs in kube-system; the rendered
manifests must agree with the table. Two copies of the catalog's outlink-topic-model (predictor +
transformer, each pod with a queue-proxy and an istio-proxy sidecar) stand for "two small isvcs".
"""

from __future__ import annotations

from typing import Any

import pytest

from sandbox import catalog
from sandbox import manifests as isvc_manifests

pytestmark = pytest.mark.cluster

BUDGET_MILLICPU = 4000
BUDGET_MIB = 8 * 1024
SMALL_ISVC = "outlink-topic-model"

_MEMORY_UNITS = {
    "Ki": 1 / 1024,
    "Mi": 1,
    "Gi": 1024,
    "K": 1e3 / 2**20,
    "M": 1e6 / 2**20,
    "G": 1e9 / 2**20,
}


def millicpu(q: str | int | float) -> float:
    s = str(q)
    return float(s[:-1]) if s.endswith("m") else float(s) * 1000


def mebibytes(q: str | int | float) -> float:
    s = str(q)
    for unit, factor in _MEMORY_UNITS.items():
        if s.endswith(unit):
            return float(s[: -len(unit)]) * factor
    return float(s) / 2**20


def test_quantity_parsing() -> None:
    assert (millicpu("250m"), millicpu("1"), millicpu(2), millicpu("0.5")) == (250, 1000, 2000, 500)
    assert (mebibytes("512Mi"), mebibytes("1Gi"), mebibytes("1024Ki")) == (512, 1024, 1)


def stack_requests(stack_vars: dict[str, Any]) -> tuple[float, float]:
    cpu = mem = 0.0
    for containers in stack_vars["stack_resources"].values():
        for res in containers.values():
            cpu += millicpu(res["requests"]["cpu"])
            mem += mebibytes(res["requests"]["memory"])
    system = stack_vars["cluster_system_requests"]
    return cpu + millicpu(system["cpu"]), mem + mebibytes(system["memory"])


def isvc_requests(stack_vars: dict[str, Any], name: str) -> tuple[float, float]:
    """Requests of one isvc at one pod per component, as the cluster renders it (the sandbox's
    CPU requests, sandbox/manifests.py), each pod with its queue-proxy and istio-proxy."""
    doc = isvc_manifests.render_isvc(catalog.get(name))
    per_pod = [stack_vars["queue_proxy_resources"], stack_vars["istio_sidecar_resources"]]
    cpu = mem = 0.0
    for component in doc["spec"].values():
        for res in [component["containers"][0]["resources"], *per_pod]:
            cpu += millicpu(res["requests"]["cpu"])
            mem += mebibytes(res["requests"]["memory"])
    return cpu, mem


def test_stack_plus_two_small_isvcs_fit_the_budget(stack_vars: dict[str, Any]) -> None:
    stack_cpu, stack_mem = stack_requests(stack_vars)
    isvc_cpu, isvc_mem = isvc_requests(stack_vars, SMALL_ISVC)
    total_cpu, total_mem = stack_cpu + 2 * isvc_cpu, stack_mem + 2 * isvc_mem
    print(
        f"\nstack {stack_cpu:.0f}m / {stack_mem:.0f}Mi; {SMALL_ISVC} {isvc_cpu:.0f}m / "
        f"{isvc_mem:.0f}Mi each; total with two {total_cpu:.0f}m / {total_mem:.0f}Mi "
        f"of {BUDGET_MILLICPU}m / {BUDGET_MIB}Mi"
    )
    assert total_cpu <= BUDGET_MILLICPU
    assert total_mem <= BUDGET_MIB


def test_the_minikube_defaults_give_the_budget(stack_vars: dict[str, Any]) -> None:
    assert stack_vars["cluster_cpus"] * 1000 >= BUDGET_MILLICPU
    assert stack_vars["cluster_memory_mb"] >= BUDGET_MIB


def test_rendered_workloads_request_what_the_table_says(
    rendered_docs: dict[str, list[dict[str, Any]]], stack_vars: dict[str, Any]
) -> None:
    table = stack_vars["stack_resources"]
    seen = 0
    for docs in rendered_docs.values():
        for d in docs:
            if d["kind"] != "Deployment":
                continue
            key = f"{d['metadata']['namespace']}/{d['metadata']['name']}"
            assert key in table, f"{key} is rendered but missing from stack_resources"
            for c in d["spec"]["template"]["spec"]["containers"]:
                assert c["resources"] == table[key][c["name"]]
                seen += 1
    (iop,) = rendered_docs["istio/istio-operator.yaml"]
    comps = iop["spec"]["components"]
    assert comps["pilot"]["k8s"]["resources"] == table["istio-system/istiod"]["discovery"]
    gateway = comps["ingressGateways"][0]["k8s"]["resources"]
    assert gateway == table["istio-system/istio-ingressgateway"]["istio-proxy"]
    assert (
        iop["spec"]["values"]["global"]["proxy"]["resources"]
        == stack_vars["istio_sidecar_resources"]
    )
    assert seen >= 1


def test_the_documented_footprint_is_the_computed_one(stack_vars: dict[str, Any]) -> None:
    from .conftest import REPO

    docs = (REPO / "README.md").read_text()
    stack_cpu, stack_mem = stack_requests(stack_vars)
    isvc_cpu, isvc_mem = isvc_requests(stack_vars, SMALL_ISVC)
    assert f"**{stack_cpu:.0f}m** | **{stack_mem:.0f}Mi**" in docs
    assert f"**{stack_cpu + 2 * isvc_cpu:.0f}m** | **{stack_mem + 2 * isvc_mem:.0f}Mi**" in docs
