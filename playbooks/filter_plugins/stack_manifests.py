"""Jinja filters that adapt upstream release manifests to the sandbox before they are applied.

The layers download a project's release YAML at the pinned version, then:
  - `stack_customize` sets every workload's container resources from `stack_resources` (the one
    table of the stack's footprint), adds env vars per namespace (Knative's
    KUBERNETES_MIN_VERSION) and rewrites images (stack_images=wmf);
  - `stack_uncovered` lists workload containers missing from `stack_resources`, so a new upstream
    Deployment cannot slip into the cluster with an unknown footprint;
  - `stack_workloads` / `stack_crd_names` list what to wait for.
Applying the adapted documents in one server-side apply keeps re-runs at changed=0.
"""

from __future__ import annotations

import copy
import re
from typing import Any

_WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc.get("kind") not in _WORKLOADS:
        return None
    return doc.get("spec", {}).get("template", {}).get("spec")


def _key(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata", {})
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def stack_customize(
    docs: list[Any],
    resources: dict[str, Any],
    env: dict[str, dict[str, str]] | None = None,
    images: list[dict[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Copies of `docs` (empty documents dropped) with resources, env and images applied."""
    out = []
    for doc in docs:
        if not doc:
            continue
        doc = copy.deepcopy(doc)
        spec = _pod_spec(doc)
        if spec is not None:
            wanted = resources.get(_key(doc), {})
            ns_env = (env or {}).get(doc.get("metadata", {}).get("namespace", ""), {})
            for container in spec.get("containers", []):
                if container.get("name") in wanted:
                    container["resources"] = copy.deepcopy(wanted[container["name"]])
                if ns_env:
                    kept = [e for e in container.get("env", []) if e.get("name") not in ns_env]
                    container["env"] = kept + [
                        {"name": k, "value": str(v)} for k, v in ns_env.items()
                    ]
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                for rule in images or []:
                    container["image"] = re.sub(rule["from"], rule["to"], container["image"])
        out.append(doc)
    return out


def stack_uncovered(docs: list[Any], resources: dict[str, Any]) -> list[str]:
    """`namespace/workload/container` of every workload container not in `resources`."""
    missing = []
    for doc in docs:
        spec = _pod_spec(doc) if doc else None
        if spec is None:
            continue
        wanted = resources.get(_key(doc), {})
        missing += [
            f"{_key(doc)}/{c['name']}" for c in spec["containers"] if c["name"] not in wanted
        ]
    return missing


def stack_workloads(docs: list[Any], kinds: tuple[str, ...] = _WORKLOADS) -> list[dict[str, str]]:
    """kind, namespace and name of every workload in `docs`, to wait for."""
    return [
        {
            "kind": d["kind"],
            "namespace": d["metadata"].get("namespace", ""),
            "name": d["metadata"]["name"],
        }
        for d in docs
        if d and d.get("kind") in kinds
    ]


def stack_crd_names(docs: list[Any]) -> list[str]:
    return [
        d["metadata"]["name"] for d in docs if d and d.get("kind") == "CustomResourceDefinition"
    ]


def _merge(base: Any, overlay: Any) -> Any:
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for k, v in overlay.items():
            merged[k] = _merge(base.get(k), v) if k in base else v
        return merged
    return overlay


def stack_merge_configmaps(docs: list[Any], overlays: list[Any]) -> list[dict[str, Any]]:
    """`docs` with the data of each overlay ConfigMap merged into the release's ConfigMap of the
    same namespace/name. A key whose values are both JSON objects is deep-merged (KServe's
    inferenceservice-config); any other key is replaced. Overlays the release lacks are appended.
    """
    import json

    pending = {_key(o): o for o in overlays if o and o.get("kind") == "ConfigMap"}
    out = []
    for doc in docs:
        if not doc:
            continue
        overlay = pending.pop(_key(doc), None) if doc.get("kind") == "ConfigMap" else None
        if overlay is not None:
            doc = copy.deepcopy(doc)
            data = doc.setdefault("data", {}) or {}
            for k, v in (overlay.get("data") or {}).items():
                try:
                    base, over = json.loads(data.get(k, "")), json.loads(v)
                except ValueError:
                    data[k] = v
                    continue
                both = isinstance(base, dict) and isinstance(over, dict)
                data[k] = json.dumps(_merge(base, over), indent=2) if both else v
            doc["data"] = data
        out.append(doc)
    return out + list(pending.values())


def stack_split_crds(docs: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """{'crds': [...], 'rest': [...]}: CRDs are applied and Established before the rest."""
    crds = [d for d in docs if d and d.get("kind") == "CustomResourceDefinition"]
    rest = [d for d in docs if d and d.get("kind") != "CustomResourceDefinition"]
    return {"crds": crds, "rest": rest}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "stack_customize": stack_customize,
            "stack_uncovered": stack_uncovered,
            "stack_workloads": stack_workloads,
            "stack_crd_names": stack_crd_names,
            "stack_split_crds": stack_split_crds,
            "stack_merge_configmaps": stack_merge_configmaps,
        }
