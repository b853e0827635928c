"""Strict schema validation of Kubernetes manifests, offline.

Core kinds validate against the Kubernetes JSON schemas shipped by the `kubernetes-validate`
package (its `-local-strict` set: unknown fields are errors). Custom resources (KServe, Knative
Serving, Istio) validate against the upstream CRDs of the versions pinned in the ONE versions
file, `playbooks/group_vars/all/versions.yml`: from `../shared/crds/` when present (CI), else
from a download cache filled by `ensure_crds()` (`ml-sandbox manifests validate` and
`python -m sandbox.schemas` fill it on a machine with internet).

    errors = validate_documents(list(yaml.safe_load_all(text)))
    # -> ["InferenceService/outlink-topic-model: spec.predictor.foo: unknown field", ...]
"""

from __future__ import annotations

import copy
import json
import os
import re
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

from sandbox.paths import REPO_ROOT, cache_dir

VERSIONS_FILE = REPO_ROOT / "playbooks" / "group_vars" / "all" / "versions.yml"
SHARED_CRDS = REPO_ROOT.parent / "shared" / "crds"
_K8S_BASE = "https://kubernetes.io/api/"
_OBJECT_META = "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_DOWNLOAD_TIMEOUT_S = 60
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SchemaError(Exception):
    """Schemas or CRDs are missing or unreadable; the message says what and how to fix it."""


@dataclass(frozen=True)
class CrdSource:
    """One upstream CRD file: where it is cached (relative to crd_dir()) and where it comes from."""

    relpath: str
    url: str


def pinned_versions(path: Path = VERSIONS_FILE) -> dict[str, Any]:
    """The versions vars file, as a dict (it holds plain values, no Jinja)."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SchemaError(f"cannot read the versions file {path}: {e}") from None
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: expected a mapping")
    return data


def crd_sources(versions: dict[str, Any] | None = None) -> list[CrdSource]:
    """The CRD files of the pinned KServe, Knative Serving and Istio releases, with their URLs."""
    v = versions or pinned_versions()
    kserve, knative, istio = v["kserve_version"], v["knative_serving_version"], v["istio_version"]
    gh = "https://raw.githubusercontent.com"
    sources = [
        CrdSource(
            f"kserve-v{kserve}/serving.kserve.io_{name}.yaml",
            f"{gh}/kserve/kserve/v{kserve}/config/crd/full/serving.kserve.io_{name}.yaml",
        )
        for name in (
            "inferenceservices",
            "servingruntimes",
            "clusterservingruntimes",
            "inferencegraphs",
            "trainedmodels",
        )
    ]
    sources += [
        CrdSource(
            f"knative-serving-v{knative}/{name}.yaml",
            f"{gh}/knative/serving/knative-v{knative}/config/core/300-resources/{name}.yaml",
        )
        for name in ("service", "configuration", "revision", "route", "domain-mapping")
    ]
    sources.append(
        CrdSource(
            f"istio-{istio}/crd-all.gen.yaml",
            f"{gh}/istio/istio/{istio}/manifests/charts/base/files/crd-all.gen.yaml",
        )
    )
    return sources


def crd_cache_dir() -> Path:
    return cache_dir() / "crds"


def crd_dir() -> Path:
    """Where the pinned CRDs are read from: SANDBOX_CRD_DIR, ../shared/crds, or the cache."""
    if env := os.environ.get("SANDBOX_CRD_DIR"):
        return Path(env)
    sources = crd_sources()
    if all((SHARED_CRDS / s.relpath).is_file() for s in sources):
        return SHARED_CRDS
    return crd_cache_dir()


def missing_crds(directory: Path | None = None) -> list[CrdSource]:
    d = directory or crd_dir()
    return [s for s in crd_sources() if not (d / s.relpath).is_file()]


def missing_crds_message() -> str:
    """What is missing, and the setting and layout that supply it offline."""
    missing = missing_crds()
    files = "\n".join(f"  {s.relpath}  (from {s.url})" for s in missing)
    return (
        f"the pinned CRDs are not available offline: {len(missing)} file(s) missing from "
        f"{crd_dir()}. Either run `ml-sandbox manifests validate` once on a machine with "
        f"internet (it downloads them into {crd_cache_dir()}), or set SANDBOX_CRD_DIR to a "
        "folder that holds these files, in these subfolders (the upstream CRDs of the versions "
        f"in {VERSIONS_FILE.relative_to(REPO_ROOT)}):\n{files}"
    )


def ensure_crds(directory: Path | None = None) -> Path:
    """Download the pinned CRDs that are missing into `directory` (default: crd_dir())."""
    d = directory or crd_dir()
    for src in missing_crds(d):
        target = d / src.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with urllib.request.urlopen(src.url, timeout=_DOWNLOAD_TIMEOUT_S) as resp:
                body = resp.read()
        except OSError as e:
            raise SchemaError(f"cannot download {src.url}: {e}") from None
        try:
            docs = [x for x in yaml.safe_load_all(body) if x]
        except yaml.YAMLError as e:
            raise SchemaError(f"{src.url} is not YAML: {e}") from None
        if not any(x.get("kind") == "CustomResourceDefinition" for x in docs):
            raise SchemaError(f"{src.url} holds no CustomResourceDefinition")
        tmp = target.with_suffix(".part")
        tmp.write_bytes(body)
        tmp.replace(target)
    return d


# --- Kubernetes core schemas -------------------------------------------------------------


def _k8s_schema_dir(k8s_version: str) -> Path:
    import kubernetes_validate  # the package only ships data we read; imported lazily

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    d = root / f"v{k8s_version.lstrip('v')}.0-local-strict"
    if not d.is_dir():
        known = sorted(p.name for p in root.iterdir() if p.name.endswith("-local-strict"))
        raise SchemaError(f"no Kubernetes {k8s_version} schemas; kubernetes-validate has {known}")
    return d


@cache
def _k8s_registry(k8s_version: str) -> Registry:
    d = _k8s_schema_dir(k8s_version)
    defs = json.loads((d / "_definitions.json").read_text())
    return Resource.from_contents(defs) @ Registry()


@cache
def _k8s_schema(k8s_version: str, api_version: str, kind: str) -> dict[str, Any] | None:
    # apps/v1 -> apps-v1; rbac.authorization.k8s.io/v1 -> rbac-v1; v1 -> v1
    suffix = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    f = _k8s_schema_dir(k8s_version) / f"{kind.lower()}-{suffix}.json"
    if not f.is_file():
        return None
    schema = json.loads(f.read_text())
    schema["$id"] = _K8S_BASE + f.name
    return schema


# --- CRD schemas ---------------------------------------------------------------------------


def _strict(node: Any) -> Any:
    """An OpenAPI v3 structural schema as a strict JSON schema: unknown fields are errors."""
    if isinstance(node, list):
        return [_strict(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.pop("anyOf", None)
        out["type"] = ["integer", "string"]
    preserve = out.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    if "properties" in out:
        out["properties"] = {k: _strict(v) for k, v in node["properties"].items()}
    return out


@dataclass(frozen=True)
class _Crd:
    kind: str
    api_version: str
    namespaced: bool
    schema: dict[str, Any]


@cache
def _crd_index(directory: str) -> dict[tuple[str, str], _Crd]:
    index: dict[tuple[str, str], _Crd] = {}
    for f in sorted(Path(directory).rglob("*.yaml")):
        for doc in yaml.load_all(f.read_text(), Loader=_Loader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            kind = spec["names"]["kind"]
            for ver in spec.get("versions", []):
                if not ver.get("served", True):
                    continue
                raw = ver.get("schema", {}).get("openAPIV3Schema") or {"type": "object"}
                schema = _strict(copy.deepcopy(raw))
                props = schema.setdefault("properties", {})
                api_version = f"{spec['group']}/{ver['name']}"
                props["apiVersion"] = {"type": "string", "enum": [api_version]}
                props["kind"] = {"type": "string", "enum": [kind]}
                props["metadata"] = {"$ref": _OBJECT_META}
                schema["additionalProperties"] = False
                schema["$id"] = _K8S_BASE + f"crd/{kind.lower()}-{api_version.replace('/', '-')}"
                namespaced = spec.get("scope", "Namespaced") == "Namespaced"
                index[(api_version, kind)] = _Crd(kind, api_version, namespaced, schema)
    return index


def crd_kinds() -> list[str]:
    """`group/version Kind` of every custom resource the pinned CRDs define."""
    return sorted(f"{a} {k}" for a, k in _crd_index(str(crd_dir())))


# --- Validation -----------------------------------------------------------------------------


def _where(path: Any) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(root)"


def _message(err: jsonschema.ValidationError) -> str:
    if err.validator == "additionalProperties" and err.validator_value is False:
        allowed = set(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - allowed) if isinstance(err.instance, dict) else []
        if extra:
            return f"unknown field(s) {', '.join(extra)}"
    if err.validator in ("oneOf", "anyOf") and err.context:
        return min(err.context, key=lambda e: len(list(e.path))).message
    return err.message


def validate_document(doc: Any, k8s_version: str = "1.31") -> list[str]:
    """Errors of one manifest, each naming `Kind/name` and the path of the offending field."""
    if not isinstance(doc, dict):
        return [f"manifest is a {type(doc).__name__}, not a mapping"]
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    label = f"{kind or '<no kind>'}/{meta.get('name') or '<no name>'}"
    if not isinstance(kind, str) or not isinstance(api_version, str):
        return [f"{label}: apiVersion and kind are required strings"]
    if not meta.get("name") and not meta.get("generateName"):
        return [f"{label}: metadata.name is required"]
    schema = _k8s_schema(k8s_version, api_version, kind)
    if schema is None:
        crd = _crd_index(str(crd_dir())).get((api_version, kind))
        if crd is None:
            return [
                f"{label}: unknown apiVersion/kind {api_version} {kind} (not in Kubernetes "
                f"{k8s_version} nor in the pinned CRDs under {crd_dir()})"
            ]
        schema = crd.schema
    validator = jsonschema.Draft202012Validator(schema, registry=_k8s_registry(k8s_version))
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{label}: {_where(e.absolute_path)}: {_message(e)}" for e in errors]


def validate_documents(docs: list[dict[str, Any]], k8s_version: str = "1.31") -> list[str]:
    """Errors of every manifest in `docs` (empty list = all valid). Empty documents are skipped.

    Raises SchemaError when a custom resource is given and the pinned CRDs are not available
    (`ml-sandbox manifests validate` downloads them on a machine with internet).
    """
    errors: list[str] = []
    for doc in docs:
        if doc is None:
            continue
        if (
            isinstance(doc, dict)
            and _k8s_schema(k8s_version, str(doc.get("apiVersion")), str(doc.get("kind"))) is None
            and missing_crds()
        ):
            raise SchemaError(missing_crds_message())
        errors.extend(validate_document(doc, k8s_version))
    return errors


# --- Command line -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """`python -m sandbox.schemas FILE...`: validate manifest files; downloads missing CRDs."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m sandbox.schemas",
        description="Validate Kubernetes manifests strictly (Kubernetes schemas, pinned CRDs).",
    )
    parser.add_argument("files", nargs="+", type=Path, help="YAML manifest files")
    parser.add_argument("--k8s-version", default="1.31", help="Kubernetes minor (default 1.31)")
    parser.add_argument(
        "--no-download", action="store_true", help="fail instead of downloading missing CRDs"
    )
    args = parser.parse_args(argv)
    try:
        if missing_crds() and not args.no_download:
            print(f"downloading the pinned CRDs into {crd_dir()}", file=sys.stderr)
            ensure_crds()
        errors = []
        for f in args.files:
            try:
                docs = [d for d in yaml.safe_load_all(f.read_text()) if d is not None]
            except (OSError, yaml.YAMLError) as e:
                errors.append(f"{f}: cannot read: {e}")
                continue
            errors += [f"{f}: {e}" for e in validate_documents(docs, args.k8s_version)]
    except SchemaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for e in errors:
        print(e)
    print(f"{len(args.files)} file(s), {len(errors)} error(s)", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
