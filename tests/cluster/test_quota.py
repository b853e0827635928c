"""Every isvc namespace's LimitRange and ResourceQuota admit what the catalog deploys there, at
its worst: each isvc at maxReplicas plus one rollout surge pod per component (a new revision or
a scale-up), each pod as Kubernetes counts it for a quota: its containers (the isvc container,
Knative's queue-proxy, Istio's istio-proxy) or its largest init container (istio-init, with the
proxy's resources, and KServe's storage-initializer on the predictor), whichever is larger.

Sizes come from what is applied: the InferenceService as rendered (sandbox/manifests.py), the
queue-proxy and sidecar resources the Knative and Istio layers set, the storage-initializer's from
the KServe layer's inferenceservice-config, and the rendered LimitRange/ResourceQuota.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest

from sandbox import catalog
from sandbox import manifests as isvc_manifests

from .test_footprint import mebibytes, millicpu

pytestmark = pytest.mark.cluster

SURGE = 1


def _res(cpu: str, memory: str) -> dict[str, float]:
    return {"cpu": millicpu(cpu), "memory": mebibytes(memory)}


def _pair(resources: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {
        kind: _res(resources[kind]["cpu"], resources[kind]["memory"])
        for kind in ("requests", "limits")
    }


def _pods(rendered_docs: dict, stack_vars: dict) -> dict[str, list[dict[str, Any]]]:
    """namespace -> [{name, containers, inits, count}] for every catalog isvc component."""
    (cm,) = rendered_docs["kserve/inferenceservice-config.yaml"]
    si = json.loads(cm["data"]["storageInitializer"])
    storage = {
        "requests": _res(si["cpuRequest"], si["memoryRequest"]),
        "limits": _res(si["cpuLimit"], si["memoryLimit"]),
    }
    queue = _pair(stack_vars["queue_proxy_resources"])
    (iop,) = rendered_docs["istio/istio-operator.yaml"]
    proxy = _pair(iop["spec"]["values"]["global"]["proxy"]["resources"])
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for svc in catalog.load_all().values():
        doc = isvc_manifests.render_isvc(svc)
        for component, spec in doc["spec"].items():
            (container,) = spec["containers"]
            inits = [proxy] + ([storage] if component == "predictor" else [])
            out[doc["metadata"]["namespace"]].append(
                {
                    "name": f"{svc.name}/{component}",
                    "containers": [_pair(container["resources"]), queue, proxy],
                    "inits": inits,
                    "count": spec["maxReplicas"] + SURGE,
                }
            )
    return out


def _pod_total(pod: dict[str, Any], kind: str, resource: str) -> float:
    summed = sum(c[kind][resource] for c in pod["containers"])
    return max([summed] + [i[kind][resource] for i in pod["inits"]])


def _find(docs: list[dict], kind: str, namespace: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["namespace"] == namespace)


def test_every_namespace_admits_its_isvcs_at_max_replicas_plus_a_surge(
    rendered_docs: dict, stack_vars: dict
) -> None:
    """Defect 5: at `limits.cpu: "8"`, two outlink pods (container 1 + queue-proxy 1 +
    istio-proxy 1 CPU each) used 6, so a third pod, from a new revision or a scale-up, was
    rejected and a changed isvc never became Ready."""
    docs = rendered_docs["namespaces/namespaces.yaml"]
    pods = _pods(rendered_docs, stack_vars)
    assert set(pods) <= set(stack_vars["isvc_namespaces"])
    for ns, components in pods.items():
        hard = _find(docs, "ResourceQuota", ns)["spec"]["hard"]
        count = sum(p["count"] for p in components)
        assert int(hard["pods"]) >= count, ns
        for kind in ("requests", "limits"):
            cpu = sum(_pod_total(p, kind, "cpu") * p["count"] for p in components)
            mem = sum(_pod_total(p, kind, "memory") * p["count"] for p in components)
            print(f"\n{ns}: {count} pods, {kind} {cpu:.0f}m / {mem:.0f}Mi of {hard}")
            assert millicpu(hard[f"{kind}.cpu"]) >= cpu, f"{ns} {kind}.cpu"
            assert mebibytes(hard[f"{kind}.memory"]) >= mem, f"{ns} {kind}.memory"


def test_every_container_fits_the_limit_range(rendered_docs: dict, stack_vars: dict) -> None:
    docs = rendered_docs["namespaces/namespaces.yaml"]
    for ns, components in _pods(rendered_docs, stack_vars).items():
        (limits,) = _find(docs, "LimitRange", ns)["spec"]["limits"]
        assert limits["type"] == "Container"
        biggest = _res(limits["max"]["cpu"], limits["max"]["memory"])
        for pod in components:
            for c in pod["containers"] + pod["inits"]:
                for resource in ("cpu", "memory"):
                    assert c["limits"][resource] <= biggest[resource], (ns, pod["name"], c)


def test_the_check_counts_the_surge_and_the_sidecars(rendered_docs: dict, stack_vars: dict) -> None:
    """The sum would reject the quota the sandbox had before (limits.cpu 8, pods 20)."""
    pods = _pods(rendered_docs, stack_vars)["articletopic-outlink"]
    cpu = sum(_pod_total(p, "limits", "cpu") * p["count"] for p in pods)
    assert cpu > millicpu("8")
    predictor = next(p for p in pods if p["name"].endswith("/predictor"))
    assert _pod_total(predictor, "limits", "cpu") == millicpu("1") + millicpu("1") + millicpu("2")
