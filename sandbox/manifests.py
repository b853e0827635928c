"""Kubernetes manifests rendered from the catalog: one InferenceService per isvc, and the replay.

The InferenceService has the shape Wikimedia's `kserve-inference` chart renders for Lift Wing
(deployment-charts charts/kserve-inference/templates/services.yaml and values.yaml, with the
ml-services values of helmfile.d/ml-services/<namespace>/values.yaml): custom containers named
`kserve-predictor-<isvc>` / `kserve-transformer-<isvc>`, `STORAGE_URI` first on the predictor
(KServe then injects its storage-initializer), `serviceAccountName: kserve`, `dnsConfig` ndots 2
and a RuntimeDefault seccomp profile on both pods, the chart's labels, Istio sidecar injection,
the Knative autoscaling annotations and the Prometheus scrape annotations. Every other value comes
from `services/<isvc>/service.yaml`, which holds production's values.

Sandbox differences, here and nowhere else (README, "Sandbox differences"):
  - `minReplicas` is at most SANDBOX_MAX_MIN_REPLICAS: production keeps two outlink pods warm
    for availability; one per component fits a laptop. `maxReplicas` is production's.
  - CPU requests are SANDBOX_CPU_REQUEST_SHARE of production's (limits unchanged): production
    gives each container 1 CPU, request = limit (KServe's default), and two isvcs at a whole
    CPU per container do not fit a 4-CPU minikube. Memory and every limit are production's.

The committed files under `manifests/` carry the stable image tag `:sandbox` so that they only
change when a service.yaml (or this renderer) changes; `deploy.sh --target minikube` renders the
same document with each image's content-hash tag (`sandbox.images.image_tag`), so an unchanged
service re-applies as a no-op and a changed one rolls a new Knative revision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from sandbox import images
from sandbox.catalog import Component, Service
from sandbox.paths import REPO_ROOT, SERVICES_DIR

MANIFESTS_DIR = REPO_ROOT / "manifests"
ISVC_DIR = MANIFESTS_DIR / "isvcs"
REPLAY_MANIFEST = MANIFESTS_DIR / "mediawiki-replay.yaml"


def mediawiki_proxy_manifest(mode: str) -> Path:
    """manifests/mediawiki-proxy-<mode>.yaml: what deploy applies for --mediawiki <mode>."""
    return MANIFESTS_DIR / f"mediawiki-proxy-{mode}.yaml"


# Knative skips tag resolution for this registry (the playbook's registries-skipping-tag-resolving),
# so images built into the minikube node deploy without a registry.
IMAGE_REGISTRY = "dev.local"
# The tag in the committed manifests; deploy replaces it with the image's content hash.
STABLE_TAG = "sandbox"
# KServe's custom containers listen here, and KServe passes it to the transformer as --http_port.
HTTP_PORT = 8080
SERVICE_ACCOUNT = "kserve"
MANAGED_BY = {"app.kubernetes.io/managed-by": "ml-sandbox"}
# The chart's labels (base.name.chart, base.name.chartid, the helmfile release `main`), pinned to
# the kserve-inference chart version the sandbox mirrors.
CHART_NAME = "kserve-inference"
CHART_VERSION = "0.4.21"
CHART_LABELS = {"app-wmf": CHART_NAME, "chart": f"{CHART_NAME}-{CHART_VERSION}", "release": "main"}
# The annotations every Lift Wing isvc carries: the chart's (monitoring enabled; Prometheus scrapes
# the queue-proxy's revision metrics on 9091) and the ml-services values' (the model server's own
# /metrics on 8080).
SCRAPE_ANNOTATIONS = {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": "9091",
    "prometheus.kserve.io/scrape": "true",
    "prometheus.kserve.io/port": str(HTTP_PORT),
    "prometheus.kserve.io/path": "/metrics",
}
# Sandbox scale-down (module docstring).
SANDBOX_MAX_MIN_REPLICAS = 1
SANDBOX_CPU_REQUEST_SHARE = 4

# MediaWiki egress, as production routes it (operations-deployment-charts@66ce6e0:
# helmfile.d/admin_ng/values/ml-serve.yaml, net_istio.mesh; rendered by
# charts/knative-serving/templates/net_istio_mesh.yaml into the knative-serving namespace). An isvc
# opens its connection to the API proxy `mw-api-int-ro.discovery.wmnet:4680` (its WIKI_URL,
# helmfile.d/ml-services/articletopic-outlink/values.yaml) and sends `Host: <lang>.wikipedia.org`.
# The sidecar's HTTP listener on 4680 routes by that Host: the ServiceEntry
# `mediawiki-api-proxied-domains` puts the wiki domains in the mesh's registry on 4680 and 80, and
# the VirtualService `mediawiki-api-vs` sends them to the ServiceEntry `mw-api-int-ro`. The
# playbook's knative role applies those two as production has them; deploy applies
# `mw-api-int-ro` and its DestinationRule `https-mw-api-int-ro` (render_mediawiki_proxy) for the
# mode it runs: its endpoint is the replay Service (--mediawiki replay, plain HTTP) or the public
# wikis' edge over TLS (--mediawiki live), standing in for production's proxy. The name resolves in
# the cluster through the playbook's CoreDNS rewrite (roles/knative/tasks/mediawiki_egress.yml).
MESH_NAMESPACE = "knative-serving"
MEDIAWIKI_API_HOST = "mw-api-int-ro.discovery.wmnet"
MEDIAWIKI_API_PORT = 4680
MEDIAWIKI_API_URL = f"http://{MEDIAWIKI_API_HOST}:{MEDIAWIKI_API_PORT}"
MEDIAWIKI_API_SE = "mw-api-int-ro"
MEDIAWIKI_API_DR = "https-mw-api-int-ro"
# --mediawiki live: the public wikis' edge serves every wiki domain on one address, so one
# endpoint takes every `Host: <lang>.wikipedia.org`; the sidecar originates TLS to it as
# production's DestinationRule does to the proxy (port 4446 there), with the SNI taken from the
# request's Host (ENABLE_AUTO_SNI, on by default: istio/istio@1.24.2 pilot/pkg/features/pilot.go).
MEDIAWIKI_LIVE_ENDPOINT = "en.wikipedia.org"
MEDIAWIKI_LIVE_TLS_PORT = 443
MEDIAWIKI_MODES = ("replay", "live")

# The in-cluster MediaWiki replay server (`python -m sandbox.mediawiki`): its own namespace, out
# of the mesh; the endpoint of `mw-api-int-ro` under --mediawiki replay.
REPLAY_NAME = "mediawiki-replay"
REPLAY_NAMESPACE = "mediawiki-replay"
REPLAY_PORT = 8080
REPLAY_HOST = f"{REPLAY_NAME}.{REPLAY_NAMESPACE}.svc.cluster.local"
REPLAY_URL = f"http://{REPLAY_HOST}:{REPLAY_PORT}"
# The replay server's own image, from images/mediawiki-replay/blubber.yaml (sandbox.images).
REPLAY_IMAGE = f"{IMAGE_REGISTRY}/{images.REPLAY_IMAGE}"

HEADER = (
    "# Generated from {source} by `ml-sandbox manifests render`; do not edit.\n"
    f"# deploy.sh --target minikube applies it with content-hash image tags for :{STABLE_TAG}.\n"
)


class _Dumper(yaml.SafeDumper):
    """Plain YAML: no anchors or aliases for dicts that happen to be shared."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def image_repository(service: Service, component: str) -> str:
    """`dev.local/<image>` (sandbox.images names the image): the image without its tag."""
    return f"{IMAGE_REGISTRY}/{images.image_name(service, component)}"


def container_name(service: Service, component: str) -> str:
    """The chart's container name; KServe's defaulting webhook renames it `kserve-container`."""
    return f"kserve-{component}-{service.name}"


def _millicpu(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


def sandbox_resources(component: Component) -> dict[str, Any]:
    """service.yaml's (production's) resources with the CPU request divided by
    SANDBOX_CPU_REQUEST_SHARE, never below 10m; limits and memory unchanged."""
    res = component.resources.model_dump()
    cpu = res["requests"].get("cpu")
    if cpu is not None:
        res["requests"]["cpu"] = f"{max(10, _millicpu(str(cpu)) // SANDBOX_CPU_REQUEST_SHARE)}m"
    return res


def _container_security_context() -> dict[str, Any]:
    """What Knative's secure-pod-defaults (on in production's config-features) give a container.
    No user: production's chart sets none (operations-deployment-charts@66ce6e0:
    charts/kserve-inference), so the image's numeric USER runs, for inference-services' Blubber
    files (runs.insecurely: true) the lives user, somebody 65533 (wikimedia/blubber@v0.21.1:
    config/variant.go, userForPhase)."""
    return {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_config(service: Service) -> dict[str, Any]:
    """What the chart's `inference.<component>.config` adds to each component's pod spec."""
    return {
        "minReplicas": min(service.autoscaling.min_replicas, SANDBOX_MAX_MIN_REPLICAS),
        "maxReplicas": service.autoscaling.max_replicas,
        "serviceAccountName": SERVICE_ACCOUNT,
        "dnsConfig": {"options": [{"name": "ndots", "value": "2"}]},
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
    }


def _env(pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in pairs]


def component_args(service: Service, component: str) -> list[str]:
    """The container args. KServe appends `--model_name`, `--predictor_host` and `--http_port` to a
    custom transformer's args itself, so the transformer gets only service.yaml's extra args; it
    passes nothing to a custom predictor, so the predictor gets the same flags explicitly."""
    extra = list(dict(service.component_items())[component].args)
    if component == "predictor":
        return ["--model_name", service.name, "--http_port", str(HTTP_PORT), *extra]
    return extra


def component_env(
    service: Service, component: str, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """service.yaml's env for a component; `overrides` replace only variables it declares."""
    env = dict(dict(service.component_items())[component].env)
    for key, value in (overrides or {}).items():
        if key in env:
            env[key] = value
    return env


def render_isvc(
    service: Service,
    image_refs: Mapping[str, str] | None = None,
    env_overrides: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The InferenceService for `service`.

    `image_refs` maps a component to its full image reference (default: `:sandbox` tags);
    `env_overrides` replace env values a component declares; WIKI_URL, where declared, is
    production's MEDIAWIKI_API_URL unless overridden (`--mediawiki <url>`);
    `extra_env` is set on every component, after service.yaml's (`--env KEY=VALUE`).
    """
    spec: dict[str, Any] = {}
    # Production's WIKI_URL (the API proxy) unless the caller points it elsewhere.
    overrides = {"WIKI_URL": MEDIAWIKI_API_URL, **(env_overrides or {})}
    for name, component in service.component_items():
        image = (image_refs or {}).get(name) or f"{image_repository(service, name)}:{STABLE_TAG}"
        env = {**component_env(service, name, overrides), **(extra_env or {})}
        env_list = _env(env.items())
        if name == "predictor":
            # First, as the chart's base_env has it; its presence makes KServe add the
            # storage-initializer that downloads the model into /mnt/models.
            env_list = [{"name": "STORAGE_URI", "value": service.model.storage_uri}, *env_list]
        container: dict[str, Any] = {
            "name": container_name(service, name),
            "image": image,
            "imagePullPolicy": "IfNotPresent",
        }
        args = component_args(service, name)
        if args:
            container["args"] = args
        container["env"] = env_list
        container["resources"] = sandbox_resources(component)
        container["securityContext"] = _container_security_context()
        spec[name] = {**_pod_config(service), "containers": [container]}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": service.name,
            "namespace": service.namespace,
            "annotations": {
                **SCRAPE_ANNOTATIONS,
                "sidecar.istio.io/inject": "true",
                "autoscaling.knative.dev/metric": service.autoscaling.metric,
                "autoscaling.knative.dev/target": str(service.autoscaling.target),
            },
            "labels": {**CHART_LABELS, **MANAGED_BY},
        },
        "spec": spec,
    }


def render_replay(image: str | None = None) -> list[dict[str, Any]]:
    """Namespace, Deployment and Service of the in-cluster MediaWiki replay server."""
    labels = {"app": REPLAY_NAME, **MANAGED_BY}
    image = image or f"{REPLAY_IMAGE}:{STABLE_TAG}"
    container = {
        "name": REPLAY_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3", "-m", "sandbox.mediawiki"],
        "args": ["--host", "0.0.0.0", "--port", str(REPLAY_PORT)],
        "ports": [{"name": "http", "containerPort": REPLAY_PORT}],
        "readinessProbe": {"tcpSocket": {"port": REPLAY_PORT}, "periodSeconds": 2},
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "securityContext": _container_security_context(),
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": REPLAY_NAMESPACE, "labels": dict(MANAGED_BY)},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": REPLAY_NAME, "namespace": REPLAY_NAMESPACE, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": REPLAY_NAME}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [container],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": REPLAY_NAME, "namespace": REPLAY_NAMESPACE, "labels": labels},
            "spec": {
                "selector": {"app": REPLAY_NAME},
                "ports": [{"name": "http", "port": REPLAY_PORT, "targetPort": "http"}],
            },
        },
    ]


def _mediawiki_proxy_ports(target_port: int) -> list[dict[str, Any]]:
    """Production's two HTTP ports of `mw-api-int-ro` (4680, the one WIKI_URL names, and 80)."""
    return [
        {"name": "http-port-k8s", "number": MEDIAWIKI_API_PORT, "protocol": "HTTP",
         "targetPort": target_port},
        {"name": "http-port", "number": 80, "protocol": "HTTP", "targetPort": target_port},
    ]  # fmt: skip


def render_mediawiki_proxy(mode: str) -> list[dict[str, Any]]:
    """The ServiceEntry `mw-api-int-ro` and DestinationRule `https-mw-api-int-ro` for `mode`
    (replay | live): production's objects (ml-serve.yaml, net_istio.mesh) with the sandbox's
    endpoint in place of the proxy's DNS name."""
    if mode not in MEDIAWIKI_MODES:
        raise ValueError(f"MediaWiki mode {mode!r} is not one of {', '.join(MEDIAWIKI_MODES)}")
    meta = {"namespace": MESH_NAMESPACE, "labels": dict(MANAGED_BY)}
    if mode == "replay":
        ports = _mediawiki_proxy_ports(REPLAY_PORT)
        endpoint, tls = REPLAY_HOST, "DISABLE"
    else:
        ports = [
            *_mediawiki_proxy_ports(MEDIAWIKI_LIVE_TLS_PORT),
            {"name": "https-port", "number": MEDIAWIKI_LIVE_TLS_PORT, "protocol": "HTTPS"},
        ]
        endpoint, tls = MEDIAWIKI_LIVE_ENDPOINT, "SIMPLE"
    entry = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": MEDIAWIKI_API_SE, **meta},
        "spec": {
            "hosts": [MEDIAWIKI_API_HOST],
            "ports": ports,
            "resolution": "DNS",
            "endpoints": [{"address": endpoint}],
        },
    }
    rule = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": MEDIAWIKI_API_DR, **meta},
        "spec": {
            "host": MEDIAWIKI_API_HOST,
            "trafficPolicy": {
                # Production originates TLS on both HTTP ports; the replay speaks plain HTTP.
                "portLevelSettings": [
                    {"port": {"number": p["number"]}, "tls": {"mode": tls}}
                    for p in _mediawiki_proxy_ports(0)
                ],
                # Production's pool settings (ml-serve.yaml, destination_rules).
                "connectionPool": {
                    "tcp": {"maxConnections": 100, "connectTimeout": "30s"},
                    "http": {
                        "idleTimeout": "5s",
                        "maxRequestsPerConnection": 1000,
                        "maxRetries": 0,
                    },
                },
            },
        },
    }
    return [entry, rule]


def dump(docs: list[dict[str, Any]], source: str) -> str:
    """YAML text of `docs`, with the generated-file header."""
    body = "---\n".join(yaml.dump(d, Dumper=_Dumper, sort_keys=False, width=100) for d in docs)
    return HEADER.format(source=source) + body


def isvc_path(service: Service) -> Path:
    """manifests/isvcs/<isvc>.yaml for the isvcs of this repository; beside its service.yaml
    (`inferenceservice.yaml`) for an isvc in another folder (--service-dir)."""
    if service.dir.resolve().is_relative_to(SERVICES_DIR.resolve()):
        return ISVC_DIR / f"{service.name}.yaml"
    return service.dir / "inferenceservice.yaml"


def rendered_files(services: Iterable[Service]) -> dict[Path, str]:
    """Every committed manifest and the text a fresh render gives it."""
    files = {}
    for s in services:
        try:
            source = str((s.dir / "service.yaml").relative_to(REPO_ROOT))
        except ValueError:
            source = str(s.dir / "service.yaml")
        files[isvc_path(s)] = dump([render_isvc(s)], source)
    files[REPLAY_MANIFEST] = dump(render_replay(), "sandbox/manifests.py")
    for mode in MEDIAWIKI_MODES:
        files[mediawiki_proxy_manifest(mode)] = dump(
            render_mediawiki_proxy(mode), "sandbox/manifests.py"
        )
    return files


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]
