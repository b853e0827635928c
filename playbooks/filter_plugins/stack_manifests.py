"""Jinja filters that adapt upstream release manifests to the sandbox before they are applied.

The layers download a project's release YAML at the pinned version, then:
  - `stack_customize` sets every workload's container resources from `stack_resources` (the one
    table of the stack's footprint), adds env vars per namespace (Knative's
    KUBERNETES_MIN_VERSION) and rewrites images (stack_images=wmf);
  - `stack_uncovered` lists workload containers missing from `stack_resources`, so a new upstream
    Deployment cannot slip into the cluster with an unknown footprint;
  - `stack_select` drops the documents of components production does not run (KServe's
    llmisvc and localmodel), by `Kind/namespace/name` patterns;
  - `stack_namespaces` gives every namespace the release's documents use a Namespace document
    first, with production's labels (`stack_namespaces`), and `stack_unknown_namespaces` lists
    namespaces that neither the release nor that table creates;
  - `stack_workloads` / `stack_crd_names` list what to wait for;
  - `stack_corefile_rewrite` gives CoreDNS's Corefile a rewrite of one name to a cluster Service
    (the MediaWiki API proxy's name, roles/knative/tasks/mediawiki_egress.yml).
Applying the adapted documents in one server-side apply keeps re-runs at changed=0, because
`stack_server_side_clean` first removes what the API server or a controller rewrites after an
apply: `stringData` (folded into `data`, kubernetes/kubernetes#118519), `status`, a null
`creationTimestamp`, and fields the release's own controllers reconcile (`stack_unset`).
"""

from __future__ import annotations

import base64
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


def stack_server_side_clean(docs: list[Any]) -> list[dict[str, Any]]:
    """Copies of `docs` without what an apply cannot own stably: `status`, a null
    `metadata.creationTimestamp`, and a Secret's `stringData` (moved into `data`, base64)."""
    out = []
    for doc in docs:
        if not doc:
            continue
        doc = copy.deepcopy(doc)
        doc.pop("status", None)
        meta = doc.get("metadata") or {}
        if "creationTimestamp" in meta and meta["creationTimestamp"] is None:
            del meta["creationTimestamp"]
        if doc.get("kind") == "Secret" and "stringData" in doc:
            data = dict(doc.get("data") or {})
            for k, v in (doc.pop("stringData") or {}).items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            doc["data"] = data
        out.append(doc)
    return out


def _unset(node: Any, path: list[str]) -> None:
    if not path or node is None:
        return
    head, rest = path[0], path[1:]
    if head.endswith("[]"):
        for item in node.get(head[:-2], []) if isinstance(node, dict) else []:
            _unset(item, rest)
    elif isinstance(node, dict):
        if rest:
            _unset(node.get(head), rest)
        else:
            node.pop(head, None)


def stack_unset(
    docs: list[Any], fields: list[dict[str, str]] | None = None
) -> list[dict[str, Any]]:
    """Copies of `docs` without the fields a controller of the release owns after it starts:
    each item is {match: regex over Kind/namespace/name, field: dotted path, `x[]` for each item
    of list x}, e.g. {match: '^MutatingWebhookConfiguration//', field: 'webhooks[].rules'}."""
    out = [copy.deepcopy(d) for d in docs if d]
    for item in fields or []:
        pattern = re.compile(item["match"])
        for doc in out:
            if pattern.search(_doc_id(doc)):
                _unset(doc, item["field"].split("."))
    return out


def _doc_id(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata", {})
    return f"{doc.get('kind', '')}/{meta.get('namespace', '')}/{meta.get('name', '')}"


def stack_select(docs: list[Any], drop: list[str] | None = None) -> list[dict[str, Any]]:
    """`docs` without empty documents and those whose `Kind/namespace/name` matches a `drop`
    regular expression (re.search)."""
    patterns = [re.compile(p) for p in drop or []]
    return [d for d in docs if d and not any(p.search(_doc_id(d)) for p in patterns)]


def _used_namespaces(docs: list[dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for d in docs:
        ns = d.get("metadata", {}).get("namespace")
        if ns and ns not in seen:
            seen.append(ns)
    return seen


def stack_namespaces(
    docs: list[Any],
    labels: dict[str, dict[str, str]] | None = None,
    create: list[str] | None = None,
) -> list[dict[str, Any]]:
    """`docs` with their Namespace documents first, each carrying its `labels` on top of the
    release's own, plus a Namespace document for each namespace in `create` that the documents use
    but do not declare (KServe's, which its release leaves out). Only the release that owns a
    namespace may create it: two releases applying the same Namespace with different fields would
    take each other's fields away on every run."""
    labels = labels or {}
    docs = [d for d in docs if d]
    declared = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Namespace"}
    used = [ns for ns in _used_namespaces(docs) if ns in (create or [])]
    wanted = [ns for ns in [*declared, *used] if ns in labels or ns in (create or [])]
    head = []
    for ns in dict.fromkeys(wanted):
        doc = copy.deepcopy(declared.get(ns)) or {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns},
        }
        meta = doc.setdefault("metadata", {})
        meta["labels"] = {**(meta.get("labels") or {}), **labels.get(ns, {})}
        head.append(doc)
    rest = [
        d for d in docs if not (d.get("kind") == "Namespace" and d["metadata"]["name"] in wanted)
    ]
    return head + rest


def stack_unknown_namespaces(docs: list[Any], known: list[str] | None = None) -> list[str]:
    """Namespaces the documents use that neither declare a Namespace nor are in `known` (for
    namespaces made elsewhere, e.g. by istioctl): applying them would fail with `not found`."""
    docs = [d for d in docs if d]
    declared = {d["metadata"]["name"] for d in docs if d.get("kind") == "Namespace"}
    return [ns for ns in _used_namespaces(docs) if ns not in declared and ns not in (known or [])]


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


def stack_patch_documents(docs: list[Any], patches: list[Any]) -> list[dict[str, Any]]:
    """`docs` with each patch (any kind but ConfigMap) deep-merged over the release's document of
    the same kind and name, as production's charts patch KServe's files (deployment-charts
    charts/kserve-resources/templates/_common.tpl, renderPatchedResource: maps merge, anything
    else is replaced). A patch the release has no document for is an error: it would silently
    patch nothing."""
    pending = {(p["kind"], p["metadata"]["name"]): p for p in patches if p}
    out = []
    for doc in docs:
        patch = pending.pop((doc.get("kind"), doc.get("metadata", {}).get("name")), None)
        if patch is not None:
            body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind", "metadata")}
            doc = _merge(copy.deepcopy(doc), body)
        out.append(doc)
    if pending:
        names = ", ".join(f"{k}/{n}" for k, n in pending)
        raise ValueError(f"patches for documents the release does not have: {names}")
    return out


def stack_split_crds(docs: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """{'crds': [...], 'rest': [...]}: CRDs are applied and Established before the rest."""
    crds = [d for d in docs if d and d.get("kind") == "CustomResourceDefinition"]
    rest = [d for d in docs if d and d.get("kind") != "CustomResourceDefinition"]
    return {"crds": crds, "rest": rest}


def stack_adapt(
    docs: list[Any],
    overlays: list[Any] | None = None,
    *,
    resources: dict[str, Any],
    env: dict[str, dict[str, str]] | None = None,
    images: list[dict[str, str]] | None = None,
    drop: list[str] | None = None,
    namespaces: dict[str, dict[str, str]] | None = None,
    create_namespaces: list[str] | None = None,
    unset: list[dict[str, str]] | None = None,
    skip_kinds: list[str] | None = None,
    external_namespaces: list[str] | None = None,
) -> dict[str, Any]:
    """The whole adaptation of one release, in the order the layers need it (one filter call, so
    a 6 MB release is templated once): drop what production does not run, Namespaces first with
    production's labels, nothing a re-apply would flag, the config overlays, resources, env and
    images. Returns {crds, rest, uncovered, unknown_namespaces}; the caller refuses the last two
    when not empty."""
    kept = [d for d in docs if d and d.get("kind") not in (skip_kinds or [])]
    kept = stack_select(kept, drop)
    kept = stack_namespaces(kept, namespaces, create_namespaces)
    kept = stack_unset(stack_server_side_clean(kept), unset)
    kept = stack_merge_configmaps(
        kept, [o for o in overlays or [] if o and o.get("kind") == "ConfigMap"]
    )
    kept = stack_patch_documents(
        kept, [o for o in overlays or [] if o and o.get("kind") != "ConfigMap"]
    )
    kept = stack_customize(kept, resources, env, images)
    split = stack_split_crds(kept)
    known = list(namespaces or {}) + list(external_namespaces or [])
    return {
        **split,
        "uncovered": stack_uncovered(split["rest"], resources),
        "unknown_namespaces": stack_unknown_namespaces(split["rest"], known),
    }


COREFILE_MARK = "# ml-sandbox rewrite: "


def _regex_name(name: str) -> str:
    return name.replace(".", "\\.")


def stack_corefile_rewrite(corefile: str, name: str, target: str) -> str:
    """`corefile` with one rewrite of `name` to `target` (both FQDNs without the trailing dot)
    at the top of its `.:53` server block, replacing the one an earlier run added for `name`.

    The request-and-answer form (CoreDNS plugin/rewrite, "Response Rewrites"): the question is
    rewritten to `target` and the answer's name back to `name`, so the client's resolver accepts
    it. Idempotent: the same input gives the same output."""
    mark = f"{COREFILE_MARK}{name}"
    lines = corefile.splitlines()
    out: list[str] = []
    skip = 0
    for line in lines:  # drop the block an earlier run wrote (the mark line and 4 after it)
        if line.strip() == mark:
            skip = 5
        if skip:
            skip -= 1
            continue
        out.append(line)
    try:
        start = next(i for i, ln in enumerate(out) if re.match(r"^\s*\.:53\s*\{\s*$", ln))
    except StopIteration:
        raise ValueError("the Corefile has no `.:53 {` server block") from None
    indent = re.match(r"^(\s*)", out[start]).group(1) + "    "
    block = [
        f"{indent}{mark}",
        f"{indent}rewrite stop {{",
        f"{indent}    name regex ^{_regex_name(name)}\\.$ {target}.",
        f"{indent}    answer name ^{_regex_name(target)}\\.$ {name}.",
        f"{indent}}}",
    ]
    out[start + 1 : start + 1] = block
    return "\n".join(out) + ("\n" if corefile.endswith("\n") else "")


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "stack_customize": stack_customize,
            "stack_uncovered": stack_uncovered,
            "stack_select": stack_select,
            "stack_server_side_clean": stack_server_side_clean,
            "stack_unset": stack_unset,
            "stack_namespaces": stack_namespaces,
            "stack_unknown_namespaces": stack_unknown_namespaces,
            "stack_workloads": stack_workloads,
            "stack_crd_names": stack_crd_names,
            "stack_split_crds": stack_split_crds,
            "stack_adapt": stack_adapt,
            "stack_merge_configmaps": stack_merge_configmaps,
            "stack_corefile_rewrite": stack_corefile_rewrite,
            "stack_patch_documents": stack_patch_documents,
        }
