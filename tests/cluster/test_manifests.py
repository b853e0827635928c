"""Every manifest the playbook applies, rendered from its templates with the default variables,
validates strictly against the Kubernetes 1.31 schemas and the CRDs of the pinned versions, and
carries the production configuration it claims to mirror."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox import schemas

from .conftest import REPO

pytestmark = pytest.mark.cluster

# Rendered files that istioctl reads rather than the API server.
ISTIOCTL_INPUTS = {"istio/istio-operator.yaml"}
# Partial documents deep-merged over a release's own before it is applied (stack_adapt); the
# merged result is checked on the real release (test_upstream_releases.py).
RELEASE_PATCHES = {"kserve/storagecontainer-patch.yaml"}


def _applied(rendered_docs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    skip = ISTIOCTL_INPUTS | RELEASE_PATCHES
    return [d for f, docs in rendered_docs.items() if f not in skip for d in docs]


def _find(docs: list[dict[str, Any]], kind: str, name: str, namespace: str | None = None) -> dict:
    for d in docs:
        meta = d["metadata"]
        if (
            d["kind"] == kind
            and meta["name"] == name
            and namespace in (None, meta.get("namespace"))
        ):
            return d
    raise AssertionError(f"no {kind} {namespace}/{name} rendered")


def test_every_template_is_rendered(rendered: Path) -> None:
    templates = sorted((REPO / "playbooks" / "roles").glob("*/templates/*.j2"))
    assert templates
    out = {p.name for p in (rendered / "manifests").rglob("*.yaml")}
    for t in templates:
        assert t.name.removesuffix(".j2") in out, f"{t} is not rendered by playbooks/render.yml"


def test_rendered_manifests_validate_strictly(
    rendered_docs: dict[str, list[dict]], pinned_crds: Path
) -> None:
    docs = _applied(rendered_docs)
    kinds = {d["kind"] for d in docs}
    assert {
        "Namespace",
        "Secret",
        "ServiceAccount",
        "LimitRange",
        "ResourceQuota",
        "ConfigMap",
        "Deployment",
        "Service",
        "PersistentVolumeClaim",
        "ServiceEntry",
    } <= kinds
    assert schemas.validate_documents(docs, k8s_version="1.31") == []


def test_validation_catches_a_typo_in_a_rendered_manifest(
    rendered_docs: dict, pinned_crds: Path
) -> None:
    docs = _applied(rendered_docs)
    seaweed = json.loads(json.dumps(_find(docs, "Deployment", "seaweedfs")))
    seaweed["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    entry = json.loads(json.dumps(_find(docs, "ServiceEntry", "mediawiki-api-proxied-domains")))
    entry["spec"]["resolution"] = "SOMETIMES"
    errors = schemas.validate_documents([seaweed, entry])
    assert any("Deployment/seaweedfs" in e and "resource" in e for e in errors), errors
    assert any(
        "ServiceEntry/mediawiki-api-proxied-domains" in e and "resolution" in e for e in errors
    ), errors


def test_isvc_namespaces_mirror_production(rendered_docs: dict, stack_vars: dict) -> None:
    docs = rendered_docs["namespaces/namespaces.yaml"]
    for ns in [
        "articletopic-outlink",
        "llm",
        "revertrisk",
        "revscoring-editquality-goodfaith",
        "experimental",
    ]:
        assert _find(docs, "Namespace", ns)["metadata"]["labels"]["istio-injection"] == "enabled"
        sa = _find(docs, "ServiceAccount", "kserve", ns)
        secret = _find(docs, "Secret", sa["secrets"][0]["name"], ns)
        notes = secret["metadata"]["annotations"]
        assert notes["serving.kserve.io/s3-usehttps"] == "0"
        assert notes["serving.kserve.io/s3-region"] == stack_vars["model_store_region"]
        endpoint = notes["serving.kserve.io/s3-endpoint"]
        assert endpoint.startswith(f"{stack_vars['model_store_service']}.")
        assert secret["metadata"]["name"] == "swift-s3-credentials"  # the chart's name
        assert "stringData" not in secret, "stringData re-applies as changed on every run"
        assert len(base64.b64decode(secret["data"]["AWS_SECRET_ACCESS_KEY"])) >= 32
        _find(docs, "LimitRange", "sandbox-defaults", ns)
        _find(docs, "ResourceQuota", "sandbox-quota", ns)


def test_credentials_are_generated_per_sandbox_and_kept_private(rendered: Path) -> None:
    creds_file = rendered / "state" / "s3-credentials.json"
    assert creds_file.stat().st_mode & 0o777 == 0o600
    creds = json.loads(creds_file.read_text())
    for rel in ["namespaces/namespaces.yaml", "model-store/model-store.yaml"]:
        f = rendered / "manifests" / rel
        assert f.stat().st_mode & 0o077 == 0, f"{rel} holds credentials but is readable by others"
        secrets = [d for d in yaml.safe_load_all(f.read_text()) if d and d["kind"] == "Secret"]
        values = [base64.b64decode(v).decode() for s in secrets for v in s["data"].values()]
        assert any(creds["secret_key"] in v for v in values)
    tracked = [p for p in REPO.rglob("*.y*ml") if ".venv" not in p.parts]
    assert not any(creds["secret_key"] in p.read_text(errors="ignore") for p in tracked)


def test_knative_configuration_mirrors_production(rendered_docs: dict) -> None:
    docs = rendered_docs["knative/knative-config.yaml"]
    assert "wikimedia.org" in _find(docs, "ConfigMap", "config-domain")["data"]
    features = _find(docs, "ConfigMap", "config-features")["data"]
    for flag in [
        "kubernetes.podspec-securitycontext",
        "secure-pod-defaults",
        "kubernetes.podspec-nodeselector",
        "kubernetes.podspec-affinity",
        "kubernetes.podspec-tolerations",
        "kubernetes.podspec-volumes-emptydir",
        "kubernetes.podspec-dnsconfig",
        # helmfile.d/admin_ng/values/ml-serve-{eqiad,codfw}/knative-serving-values.yaml
        "autodetect-http2",
    ]:
        assert features[flag] == "enabled", flag
    autoscaler = _find(docs, "ConfigMap", "config-autoscaler")["data"]
    assert autoscaler == {
        "scale-down-delay": "15m",
        "target-burst-capacity": "0",
        "container-concurrency-target-percentage": "85",
    }
    gc = _find(docs, "ConfigMap", "config-gc")["data"]
    assert gc["max-non-active-revisions"] == gc["min-non-active-revisions"] == "0"
    # Not set: Knative's default already skips kind.local, ko.local and dev.local
    # (knative/serving@knative-v1.21.2:pkg/deployment/config.go), and production does not set it.
    assert (
        "registries-skipping-tag-resolving"
        not in _find(docs, "ConfigMap", "config-deployment")["data"]
    )
    # ml-serve.yaml core.config_observability / core.config_logging (deployment-charts).
    observability = _find(docs, "ConfigMap", "config-observability")["data"]
    assert observability["logging.enable-request-log"] == "false"
    assert observability["logging.enable-probe-request-log"] == "false"
    logging = _find(docs, "ConfigMap", "config-logging")["data"]
    assert json.loads(logging["zap-logger-config"]) == {"level": "error"}


def test_kserve_configuration_mirrors_production(rendered_docs: dict) -> None:
    data = _find(
        rendered_docs["kserve/inferenceservice-config.yaml"], "ConfigMap", "inferenceservice-config"
    )["data"]
    ingress = json.loads(data["ingress"])
    assert ingress["ingressGateway"] == "knative-serving/knative-ingress-gateway"
    assert ingress["localGateway"] == "knative-serving/knative-local-gateway"
    assert ingress["localGatewayService"] == "knative-local-gateway.istio-system.svc.cluster.local"
    assert ingress["ingressDomain"] == "wikimedia.org"
    assert ingress["domainTemplate"] == "{{ .Name }}-{{ .Namespace }}.{{ .IngressDomain }}"
    assert (ingress["urlScheme"], ingress["ingressClassName"]) == ("http", "istio")
    assert json.loads(data["storageInitializer"]) == {
        "cpuRequest": "100m",
        "memoryRequest": "100Mi",
        "cpuLimit": "1",
        "memoryLimit": "1Gi",
    }
    s3 = json.loads(data["credentials"])["s3"]
    assert s3["s3Endpoint"] == "" and s3["s3Region"] == ""
    assert json.loads(data["deploy"]) == {"defaultDeploymentMode": "Knative"}


def test_istio_operator_mirrors_production(rendered_docs: dict, stack_vars: dict) -> None:
    (iop,) = rendered_docs["istio/istio-operator.yaml"]
    assert iop["kind"] == "IstioOperator"
    spec = iop["spec"]
    assert spec["meshConfig"]["outboundTrafficPolicy"]["mode"] == "REGISTRY_ONLY"
    assert spec["meshConfig"]["accessLogFile"] == "/dev/stdout"
    # custom_deploy.d/istio/ml-serve/config.yaml (deployment-charts).
    assert spec["meshConfig"]["accessLogEncoding"] == "JSON"
    # No sidecar resources in production's IstioOperator: Istio 1.24.2's defaults
    # (istio/istio@1.24.2:manifests/charts/istio-control/istio-discovery/values.yaml).
    assert spec["values"]["global"]["proxy"]["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    }
    (gateway,) = spec["components"]["ingressGateways"]
    service = gateway["k8s"]["service"]
    assert service["type"] == "NodePort"
    http = next(p for p in service["ports"] if p["port"] == 80)
    assert http["nodePort"] == stack_vars["ingress_node_port"]
    grpc = next(p for p in service["ports"] if p["name"] == "grpc")
    assert (grpc["port"], grpc["targetPort"], grpc["nodePort"]) == (50051, 50051, 30051)
    # Egress is production's: no ServiceEntry of the sandbox's own opens the wikis on 443.
    entries = [d for d in _applied(rendered_docs) if d["kind"] == "ServiceEntry"]
    assert {e["metadata"]["name"] for e in entries} == {"mediawiki-api-proxied-domains"}


def test_versions_live_only_in_the_versions_file(stack_vars: dict) -> None:
    """One source of truth: no role, template or play hard-codes a pinned version."""
    pins = {k: str(v) for k, v in stack_vars.items() if k.endswith("_version")}
    files = [
        p
        for p in (REPO / "playbooks").rglob("*")
        if p.is_file()
        and p.suffix in {".yml", ".j2", ".py"}
        and "group_vars" not in p.parts
        and "molecule" not in p.parts
    ]
    files += [REPO / "sandbox.yml", REPO / "Vagrantfile"]
    for f in files:
        text = f.read_text()
        for key, pin in pins.items():
            if len(pin) >= 4:
                assert not re.search(rf"(?<![\d.]){re.escape(pin)}(?![\d])", text), (
                    f"{f.relative_to(REPO)} hard-codes {key}={pin}; read it from versions.yml"
                )


def test_wmf_images_render_valid_manifests_pointing_at_wikimedias_registry(
    tmp_path: Path, stack_vars: dict, pinned_crds: Path
) -> None:
    from .conftest import VENV_BIN, run

    proc = run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "playbooks/render.yml",
            "-e",
            f"render_home={tmp_path}",
            "-e",
            "stack_images=wmf",
        ]
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    out = tmp_path / "manifests"
    (iop,) = yaml.safe_load_all((out / "istio" / "istio-operator.yaml").read_text())
    assert iop["spec"]["hub"] == f"{stack_vars['wmf_registry']}/istio"
    # Production's tags (deployment-charts custom_deploy.d/istio/ml-serve/config.yaml: 1.24.2-1;
    # helmfile.d/admin_ng/kserve-resources/values.yaml: storage 0.17.0-0).
    assert iop["spec"]["tag"] == "1.24.2-1"
    (cm,) = yaml.safe_load_all((out / "kserve" / "inferenceservice-config.yaml").read_text())
    image = json.loads(cm["data"]["storageInitializer"])["image"]
    assert image == f"{stack_vars['wmf_registry']}/kserve-storage-initializer:0.17.0-0"
    # The queue-proxy is not a container of the release: config-deployment names its image
    # (production: charts/knative-serving/values.yaml core.queue_proxy, knative-serving-queue).
    knative = list(yaml.safe_load_all((out / "knative" / "knative-config.yaml").read_text()))
    deployment = next(d for d in knative if d and d["metadata"]["name"] == "config-deployment")
    queue = deployment["data"]["queue-sidecar-image"]
    assert queue == f"{stack_vars['wmf_registry']}/knative-serving-queue:1.21.2-1"
    assert schemas.validate_documents([cm]) == []


def test_system_namespaces_carry_productions_labels(rendered_docs: dict) -> None:
    """kube-system and istio-system, which no release creates, get production's labels
    (operations-deployment-charts@66ce6e0: helmfile.d/admin_ng/values/ml-serve.yaml,
    `namespaces`)."""
    docs = rendered_docs["namespaces/namespaces.yaml"]
    assert _find(docs, "Namespace", "kube-system")["metadata"]["labels"] == {
        "istio-injection": "disabled",
        "webhooks.knative.dev/exclude": "true",
    }
    assert _find(docs, "Namespace", "istio-system")["metadata"]["labels"] == {
        "istio-injection": "disabled"
    }
