"""The layers' adapting steps run over the real release documents of the pinned versions.

`../shared/upstream/` holds offline reconstructions of the release manifests the playbook downloads
(its README.md and each folder's PROVENANCE.md say how they were made): KServe v0.17.0's
`kserve.yaml` and `kserve-cluster-resources.yaml` (byte-identical to upstream's), Knative Serving
1.21.2, net-istio 1.21.1, cert-manager and an approximation of what `istioctl install` 1.24.2
applies. They are test data, read in place and never copied into the repository; without them
these tests skip and say why.

Each release is adapted by `stack_adapt`, the one filter stack_common/adapt_release.yml calls, with
the layers' own settings (role defaults and group_vars, stack_images=wmf) and the overlays ansible
renders; one test runs the same step through ansible-playbook on a real release and requires the
same result (ansible templating a 6 MB release takes minutes on a loaded CI core). The tests check
what would be applied: production's KServe subset, a `kserve` Namespace, every workload in
stack_resources, production's registry tags, and nothing a second server-side apply would
report as changed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import PLAYBOOKS, REPO
from .test_release_adapt import adapt_releases

pytestmark = pytest.mark.cluster

UPSTREAM = REPO.parent / "shared" / "upstream"

sys.path.insert(0, str(PLAYBOOKS / "filter_plugins"))
import stack_manifests  # noqa: E402

# Production's KServe (wikimedia/operations-deployment-charts@66ce6e0, HEAD 2026-08-21):
# charts/kserve-crd-minimal/templates/*.yaml and
# charts/kserve-resources/files/kserve/resources.yaml.
PRODUCTION_KSERVE_CRDS = {
    f"{plural}.serving.kserve.io"
    for plural in [
        "clusterservingruntimes",
        "clusterstoragecontainers",
        "inferencegraphs",
        "inferenceservices",
        "servingruntimes",
        "trainedmodels",
    ]
}
PRODUCTION_KSERVE_WEBHOOKS = {
    ("MutatingWebhookConfiguration", "inferenceservice.serving.kserve.io"),
    ("ValidatingWebhookConfiguration", "clusterservingruntime.serving.kserve.io"),
    ("ValidatingWebhookConfiguration", "inferencegraph.serving.kserve.io"),
    ("ValidatingWebhookConfiguration", "inferenceservice.serving.kserve.io"),
    ("ValidatingWebhookConfiguration", "servingruntime.serving.kserve.io"),
    ("ValidatingWebhookConfiguration", "trainedmodel.serving.kserve.io"),
}
# The webhooks whose rules Knative's webhook reconciles itself (knative/serving@knative-v1.21.2
# cmd/webhook/main.go: the defaulting and validation admission controllers).
KNATIVE_RECONCILED_WEBHOOKS = {
    "webhook.serving.knative.dev",
    "validation.webhook.serving.knative.dev",
}


def _upstream(rel: str) -> Path:
    path = UPSTREAM / rel
    if not path.exists():
        pytest.skip(
            f"{path} is absent: the offline reconstructions of the pinned releases "
            "(../shared/upstream, test data) are not on this machine"
        )
    return path


def _load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def reapply_changes(doc: dict[str, Any], docs: list[dict[str, Any]]) -> list[str]:
    """What in `doc` a second server-side apply would report as changed, or fight a controller
    over: each a short reason. `docs` is the whole release (for HPAs)."""
    kind, name = doc["kind"], doc["metadata"]["name"]
    reasons = []
    if kind == "Secret" and "stringData" in doc:
        reasons.append("stringData (kubernetes/kubernetes#118519)")
    if "status" in doc:
        reasons.append("status")
    if "creationTimestamp" in doc["metadata"]:
        reasons.append("metadata.creationTimestamp")
    if kind.endswith("WebhookConfiguration"):
        for hook in doc.get("webhooks", []):
            if "caBundle" in hook.get("clientConfig", {}):
                reasons.append(f"{hook['name']}: caBundle (cert-manager's cainjector owns it)")
            if name in KNATIVE_RECONCILED_WEBHOOKS and "rules" in hook:
                reasons.append(f"{hook['name']}: rules (Knative's webhook reconciles them)")
    if kind == "CustomResourceDefinition":
        conversion = (doc["spec"].get("conversion") or {}).get("webhook") or {}
        if "caBundle" in conversion.get("clientConfig", {}):
            reasons.append("conversion caBundle")
    if kind == "Deployment" and "replicas" in doc["spec"]:
        scaled = {
            d["spec"]["scaleTargetRef"]["name"]
            for d in docs
            if d["kind"] == "HorizontalPodAutoscaler"
            and d["metadata"].get("namespace") == doc["metadata"].get("namespace")
        }
        if name in scaled:
            reasons.append("spec.replicas under an HPA")
    return [f"{kind}/{name}: {r}" for r in reasons]


def _releases(stack_vars: dict[str, Any], rendered: Path) -> list[dict[str, Any]]:
    """Each release as the layers adapt it: name, upstream file, overlays, env, drop, unset."""
    kserve_cfg = [
        str(rendered / "manifests" / "kserve" / f)
        for f in ("inferenceservice-config.yaml", "storagecontainer-patch.yaml")
    ]
    knative_cfg = [str(rendered / "manifests" / "knative" / "knative-config.yaml")]
    knative_env = {
        "knative-serving": {"KUBERNETES_MIN_VERSION": stack_vars["knative_kubernetes_min_version"]}
    }
    knative = {"env": knative_env, "unset": "knative_unset"}
    kn, ks = stack_vars["knative_serving_version"], stack_vars["kserve_version"]
    return [
        {
            "name": "cert-manager",
            "file": f"cert-manager-v{stack_vars['cert_manager_version']}/cert-manager.yaml",
        },
        {
            "name": "knative-serving-crds",
            "file": f"knative-serving-v{kn}/serving-crds.yaml",
            **knative,
        },
        {
            "name": "knative-serving-core",
            "file": f"knative-serving-v{kn}/serving-core.yaml",
            "overlays": knative_cfg,
            "drop": "knative_drop",
            **knative,
        },
        {
            "name": "knative-net-istio",
            "file": f"net-istio-v{stack_vars['net_istio_version']}/net-istio.yaml",
            **knative,
        },
        {
            "name": "kserve",
            "file": f"kserve-v{ks}/kserve.yaml",
            "overlays": kserve_cfg,
            "drop": "kserve_drop",
            "create": "kserve_namespaces_created",
        },
        {
            "name": "kserve-cluster-resources",
            "file": f"kserve-v{ks}/kserve-cluster-resources.yaml",
            "drop": "kserve_drop",
            "create": "kserve_namespaces_created",
        },
    ]


def _settings(stack_vars: dict[str, Any]) -> dict[str, Any]:
    """group_vars plus the KServe and Knative role defaults, templated as ansible would."""
    import jinja2

    raw = dict(stack_vars)
    for role in ("kserve", "knative"):
        text = (PLAYBOOKS / "roles" / role / "defaults" / "main.yml").read_text()
        raw.update(yaml.safe_load(text.replace("!unsafe ", "")))
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)

    def render(value: Any) -> Any:
        if isinstance(value, str) and "{{" in value and "IngressDomain" not in value:
            for _ in range(5):
                value = env.from_string(value).render(**raw)
            return value
        if isinstance(value, list):
            return [render(v) for v in value]
        if isinstance(value, dict):
            return {k: render(v) for k, v in value.items()}
        return value

    return {
        k: render(raw[k])
        for k in (
            "stack_resources",
            "stack_namespaces",
            "wmf_image_rules",
            "kserve_drop",
            "kserve_namespaces_created",
            "knative_unset",
            "knative_drop",
        )
    }


def _stack_adapt(
    release: dict[str, Any], settings: dict[str, Any], images: str = "wmf"
) -> dict[str, Any]:
    """What stack_common/adapt_release.yml computes for `release` (its defaults for the rest)."""
    defaults = yaml.safe_load(
        (PLAYBOOKS / "roles" / "stack_common" / "defaults" / "main.yml").read_text()
    )
    overlays = [d for f in release.get("overlays", []) for d in _load(Path(f))]
    return stack_manifests.stack_adapt(
        _load(_upstream(release["file"])),
        overlays,
        resources=settings["stack_resources"],
        env=release.get("env", {}),
        images=settings["wmf_image_rules"] if images == "wmf" else [],
        drop=settings[release["drop"]] if "drop" in release else [],
        namespaces=settings["stack_namespaces"],
        create_namespaces=settings[release["create"]] if "create" in release else [],
        unset=settings[release["unset"]] if "unset" in release else [],
        skip_kinds=[],
        external_namespaces=defaults["stack_common_external_namespaces"],
    )


@pytest.fixture(scope="module")
def adapted(rendered: Path, stack_vars: dict[str, Any]) -> dict[str, dict[str, Any]]:
    settings = _settings(stack_vars)
    out = {r["name"]: _stack_adapt(r, settings) for r in _releases(stack_vars, rendered)}
    for name, result in out.items():
        assert result["uncovered"] == [], f"{name}: the layer would stop the run"
        assert result["unknown_namespaces"] == [], f"{name}: the layer would stop the run"
    return out


def test_ansible_adapts_a_real_release_the_same_way(
    tmp_path: Path, rendered: Path, stack_vars: dict[str, Any], adapted
) -> None:
    """The playbook's own step (adapt_release.yml, run by ansible-playbook) on a real release
    gives what the tests below inspect."""
    for name in ("knative-net-istio", "kserve-cluster-resources"):
        release = next(r for r in _releases(stack_vars, rendered) if r["name"] == name)
        spec = {k: v for k, v in release.items() if k != "file"}
        spec["url"] = _upstream(release["file"]).as_uri()
        proc, out = adapt_releases(tmp_path / name, [spec], stack_images="wmf")
        assert proc.returncode == 0, proc.stdout[-4000:]
        assert out[name] == adapted[name]


def _all(adapted: dict[str, dict[str, list[dict[str, Any]]]], name: str) -> list[dict[str, Any]]:
    return adapted[name]["crds"] + adapted[name]["rest"]


def test_kserve_gets_its_namespace_first_with_productions_labels(adapted, stack_vars) -> None:
    """Defect 1: kserve.yaml has no Namespace (generate-install.sh drops it); every namespaced
    document would fail with `namespaces "kserve" not found`."""
    raw = _load(_upstream(f"kserve-v{stack_vars['kserve_version']}/kserve.yaml"))
    assert not [d for d in raw if d["kind"] == "Namespace"], "the real release has no Namespace"
    first = adapted["kserve"]["rest"][0]
    assert (first["kind"], first["metadata"]["name"]) == ("Namespace", "kserve")
    # deployment-charts helmfile.d/admin_ng/values/ml-serve.yaml `namespaces.kserve.labels`.
    assert first["metadata"]["labels"] == {
        "control-plane": "kserve-controller-manager",
        "controller-tools.k8s.io": "1.0",
        "istio-injection": "disabled",
        "webhooks.knative.dev/exclude": "true",
    }


def test_each_namespace_is_applied_by_one_release_only(adapted) -> None:
    """Two releases applying the same Namespace with different fields (same field manager) would
    take each other's labels away on every run, never changed=0."""
    owners: dict[str, list[str]] = {}
    for release, result in adapted.items():
        for d in result["rest"]:
            if d["kind"] == "Namespace":
                owners.setdefault(d["metadata"]["name"], []).append(release)
    assert owners == {
        "cert-manager": ["cert-manager"],
        "knative-serving": ["knative-serving-core"],
        "kserve": ["kserve"],
    }


def test_cert_manager_and_knative_namespaces_carry_productions_labels(adapted) -> None:
    def ns(release: str, name: str) -> dict[str, str]:
        (doc,) = [
            d
            for d in adapted[release]["rest"]
            if d["kind"] == "Namespace" and d["metadata"]["name"] == name
        ]
        assert adapted[release]["rest"][0] is not None and adapted[release]["rest"][0] == doc
        return doc["metadata"]["labels"]

    cert = ns("cert-manager", "cert-manager")
    assert cert["istio-injection"] == "disabled"
    assert cert["webhooks.knative.dev/exclude"] == "true"
    assert ns("knative-serving-core", "knative-serving")["istio-injection"] == "disabled"


def test_kserve_installs_exactly_what_production_runs(adapted) -> None:
    """Defect 2: config/overlays/all adds llmisvc and localmodel; production runs the
    kserve-crd-minimal CRDs and kserve-controller-manager only."""
    kserve = _all(adapted, "kserve")
    workloads = {
        (d["kind"], d["metadata"]["name"])
        for d in kserve
        if d["kind"] in ("Deployment", "DaemonSet")
    }
    assert workloads == {("Deployment", "kserve-controller-manager")}
    assert set(stack_manifests.stack_crd_names(kserve)) == PRODUCTION_KSERVE_CRDS
    hooks = {
        (d["kind"], d["metadata"]["name"])
        for d in kserve
        if d["kind"].endswith("WebhookConfiguration")
    }
    assert hooks == PRODUCTION_KSERVE_WEBHOOKS
    names = " ".join(d["metadata"]["name"] for d in kserve)
    assert "llmisvc" not in names and "localmodel" not in names
    kinds = {d["kind"] for d in _all(adapted, "kserve-cluster-resources")}
    assert kinds == {"ClusterServingRuntime"}, "LLMInferenceServiceConfig needs llmisvc's CRD"


def test_every_real_workload_runs_with_the_footprint_tables_resources(adapted, stack_vars) -> None:
    table = stack_vars["stack_resources"]
    seen = set()
    for release in adapted:
        for doc in stack_manifests.stack_workloads(adapted[release]["rest"]):
            (full,) = [
                d
                for d in adapted[release]["rest"]
                if d["kind"] == doc["kind"] and d["metadata"]["name"] == doc["name"]
            ]
            key = f"{doc['namespace']}/{doc['name']}"
            for c in full["spec"]["template"]["spec"]["containers"]:
                assert c["resources"] == table[key][c["name"]], f"{key}/{c['name']}"
                seen.add(f"{key}/{c['name']}")
    istio = _load(_upstream(f"istio-{stack_vars['istio_version']}/istio.yaml"))
    assert stack_manifests.stack_uncovered(istio, table) == []
    for doc in stack_manifests.stack_workloads(istio):
        (full,) = [
            d for d in istio if d["kind"] == doc["kind"] and d["metadata"]["name"] == doc["name"]
        ]
        seen |= {
            f"{doc['namespace']}/{doc['name']}/{c['name']}"
            for c in full["spec"]["template"]["spec"]["containers"]
        }
    ours = {f"{key}/{c}" for key, containers in table.items() for c in containers}
    # Every entry of the table is a container that really runs (the model store is our own).
    assert ours - seen == {"model-store/seaweedfs/seaweedfs"}


def test_wmf_images_are_productions_tags(adapted) -> None:
    images = set()
    for release in adapted:
        for doc in adapted[release]["rest"]:
            spec = stack_manifests._pod_spec(doc)
            if spec:
                images |= {
                    c["image"] for c in spec.get("containers", []) + spec.get("initContainers", [])
                }
    registry = "docker-registry.wikimedia.org/"
    wmf = {i for i in images if i.startswith(registry)}
    # Production's tags: helmfile.d/admin_ng/knative-serving/values.yaml (Knative 1.21.2-1,
    # net-istio 1.21.1-1) and helmfile.d/admin_ng/kserve-resources/values.yaml (KServe 0.17.0-0).
    assert {i.rsplit(":", 1)[1] for i in wmf if "/knative-serving-" in i} == {"1.21.2-1"}
    assert {i.rsplit(":", 1)[1] for i in wmf if "/knative-net-istio-" in i} == {"1.21.1-1"}
    assert registry + "kserve-controller:0.17.0-0" in wmf
    gcr = {i for i in images if "knative-releases" in i or i.startswith("kserve/")}
    assert gcr == set(), f"upstream Knative/KServe images left under stack_images=wmf: {gcr}"


def test_nothing_applied_changes_on_a_second_server_side_apply(adapted, stack_vars) -> None:
    """Defect 4: what a re-apply would flag (stringData, status, creationTimestamp, fields a
    controller reconciles) is gone from every adapted document; the raw releases have some, so
    the audit can fail."""
    raw_flags = []
    for rel in [
        f"kserve-v{stack_vars['kserve_version']}/kserve.yaml",
        f"knative-serving-v{stack_vars['knative_serving_version']}/serving-core.yaml",
    ]:
        raw = _load(_upstream(rel))
        raw_flags += [r for d in raw for r in reapply_changes(d, raw)]
    assert any("status" in r for r in raw_flags) and any("rules" in r for r in raw_flags)
    flags = []
    for release in adapted:
        docs = _all(adapted, release)
        flags += [r for d in docs for r in reapply_changes(d, docs)]
    assert flags == []


def test_the_stacks_own_documents_render_the_same_twice_and_re_apply_clean(
    rendered: Path, rendered_docs: dict[str, list[dict[str, Any]]]
) -> None:
    """Rendering again (same sandbox, same credentials) gives byte-identical documents, and none
    carries what a server-side apply would report as changed."""
    from .conftest import VENV_BIN, run

    before = {f: f.read_bytes() for f in sorted((rendered / "manifests").rglob("*.yaml"))}
    proc = run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "playbooks/render.yml",
            "-e",
            f"render_home={rendered}",
        ]
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    after = {f: f.read_bytes() for f in sorted((rendered / "manifests").rglob("*.yaml"))}
    assert after == before
    docs = [d for f, ds in rendered_docs.items() if f != "istio/istio-operator.yaml" for d in ds]
    assert [r for d in docs for r in reapply_changes(d, docs)] == []


def _storage_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (csc,) = [d for d in docs if d["kind"] == "ClusterStorageContainer"]
    assert csc["metadata"]["name"] == "default"
    return csc["spec"]["container"]


def test_the_storage_container_kserve_injects_is_patched_as_production(adapted) -> None:
    """KServe injects the ClusterStorageContainer `default`, merged over the ConfigMap's
    storageInitializer (kserve/kserve@v0.17.0 pkg/webhook/admission/pod/
    storage_initializer_injector.go), so production patches it (operations-deployment-charts@
    66ce6e0: charts/kserve-resources/files/common/storagecontainer-patch.yaml, values.yaml
    kserve.storage); the sandbox's patch lands on the real release's document."""
    container = _storage_container(_all(adapted, "kserve"))
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "100Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    # The release's own fields survive the merge; stack_images=upstream keeps its image.
    assert container["image"] == "kserve/storage-initializer:v0.17.0"
    assert container["name"] == "storage-initializer"


def test_wmf_images_reach_the_storage_container(tmp_path: Path, stack_vars: dict[str, Any]) -> None:
    """stack_images=wmf: the image KServe injects is Wikimedia's build at production's tag
    (helmfile.d/admin_ng/kserve-resources/values.yaml, kserve.storage.tag 0.17.0-0)."""
    from .conftest import VENV_BIN, run

    home = tmp_path / "wmf"
    proc = run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "playbooks/render.yml",
            "-e",
            f"render_home={home}",
            "-e",
            "stack_images=wmf",
        ]
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    kserve = next(r for r in _releases(stack_vars, home) if r["name"] == "kserve")
    result = _stack_adapt(kserve, _settings(stack_vars))
    container = _storage_container(result["crds"] + result["rest"])
    want = "docker-registry.wikimedia.org/kserve-storage-initializer:0.17.0-0"
    assert container["image"] == want
    # ...and the ConfigMap's storageInitializer names the same image.
    (cm,) = [d for d in result["rest"] if d["metadata"]["name"] == "inferenceservice-config"]
    assert json.loads(cm["data"]["storageInitializer"])["image"] == want


def test_a_patch_for_a_document_the_release_lacks_is_an_error() -> None:
    patch = {"kind": "ClusterStorageContainer", "metadata": {"name": "other"}, "spec": {}}
    with pytest.raises(ValueError, match="ClusterStorageContainer/other"):
        stack_manifests.stack_patch_documents([], [patch])


def test_knative_runs_without_its_hpas_as_production(adapted) -> None:
    """Production's chart renders the activator's and webhook's HPAs only with core.enable_hpa,
    false for ml-serve (operations-deployment-charts@66ce6e0: charts/knative-serving/values.yaml,
    templates/core.yaml); the real release has both, the sandbox applies neither."""
    raw = _load(_upstream("knative-serving-v1.21.2/serving-core.yaml"))
    hpas = {d["metadata"]["name"] for d in raw if d["kind"] == "HorizontalPodAutoscaler"}
    assert hpas == {"activator", "webhook"}
    for name in adapted:
        assert not [d for d in _all(adapted, name) if d["kind"] == "HorizontalPodAutoscaler"]
