"""The committed manifests under manifests/: in sync with service.yaml, every field traced to it,
and valid against the Kubernetes 1.31 schemas and the pinned KServe CRD."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from sandbox import catalog, cli, images, schemas
from sandbox import manifests as m
from sandbox.commands import manifests as cmd

pytestmark = pytest.mark.cluster

SERVICES = catalog.load_all()

# What the kserve-inference chart puts on every Lift Wing isvc (wikimedia/
# operations-deployment-charts
# @66ce6e0 (HEAD 2026-08-21): charts/kserve-inference/templates/services.yaml with
# monitoring.enabled and main_app.queue_proxy.revision_metrics_port 9091 from its values.yaml; the
# prometheus.kserve.io annotations from
# helmfile.d/ml-services/{articletopic-outlink,llm}/values.yaml;
# labels app-wmf/chart/release from the chart (Chart.yaml version 0.4.21) and release `main`).
CHART_ANNOTATIONS = {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": "9091",
    "prometheus.kserve.io/scrape": "true",
    "prometheus.kserve.io/port": "8080",
    "prometheus.kserve.io/path": "/metrics",
}
CHART_LABELS = {
    "app-wmf": "kserve-inference",
    "chart": "kserve-inference-0.4.21",
    "release": "main",
}
# Production's autoscaling and predictor resources (same commit): articletopic-outlink/values.yaml
# (rps, target 5, 2..5 replicas; resources not set: KServe's defaults 1 CPU / 2Gi, request = limit,
# charts/kserve-resources/values.yaml kserve.inferenceservice.resources) and llm/values.yaml
# (langid: rps, target 50, 1..3 replicas, memory 2Gi, CPU default 1).
PRODUCTION = {
    "outlink-topic-model": {
        "autoscaling": ("rps", 5, 2, 5),
        "predictor": {
            "requests": {"cpu": "1", "memory": "2Gi"},
            "limits": {"cpu": "1", "memory": "2Gi"},
        },
        "env": {"MODEL_VERSION": "alloutlinks_202209"},
    },
    "langid": {
        "autoscaling": ("rps", 50, 1, 3),
        "predictor": {
            "requests": {"cpu": "1", "memory": "2Gi"},
            "limits": {"cpu": "1", "memory": "2Gi"},
        },
        "env": {"MODEL_NAME": "langid"},
    },
}


@pytest.mark.parametrize("name", sorted(PRODUCTION))
def test_service_yaml_holds_productions_autoscaling_resources_and_env(name: str) -> None:
    svc, prod = SERVICES[name], PRODUCTION[name]
    a = svc.autoscaling
    assert (a.metric, a.target, a.min_replicas, a.max_replicas) == prod["autoscaling"]
    predictor = dict(svc.component_items())["predictor"]
    assert predictor.resources.model_dump() == prod["predictor"]
    assert prod["env"].items() <= predictor.env.items()


def test_the_isvc_s3_secret_and_service_account_have_productions_names(stack_vars: dict) -> None:
    # charts/kserve-inference/values.yaml: inference.swift_s3_secret_name, serviceAccountName.
    assert stack_vars["isvc_s3_secret_name"] == "swift-s3-credentials"
    assert stack_vars["isvc_service_account"] == "kserve" == m.SERVICE_ACCOUNT


def _committed(svc: catalog.Service) -> dict:
    docs = m.load_documents(m.isvc_path(svc))
    assert len(docs) == 1
    return docs[0]


def _validate(docs: list[dict]) -> list[str]:
    try:
        return schemas.validate_documents(docs, k8s_version="1.31")
    except schemas.SchemaError as e:
        pytest.skip(f"pinned CRDs unavailable: {e}")


def test_committed_manifests_match_a_fresh_render() -> None:
    stale = [str(p.relative_to(m.REPO_ROOT)) for p in cmd.stale_files()]
    assert stale == [], f"out of sync with service.yaml: {stale}; run `ml-sandbox manifests render`"


def test_every_isvc_has_a_manifest_and_no_orphans() -> None:
    committed = {p.stem for p in m.ISVC_DIR.glob("*.yaml")}
    assert committed == set(SERVICES)


@pytest.mark.parametrize("path", sorted(m.MANIFESTS_DIR.rglob("*.yaml")), ids=lambda p: p.name)
def test_committed_manifest_is_valid(path: Path) -> None:
    docs = m.load_documents(path)
    assert docs
    assert _validate(docs) == []


def test_validation_rejects_what_kserve_would_reject() -> None:
    svc = next(iter(SERVICES.values()))
    good = _committed(svc)
    unknown_field = copy.deepcopy(good)
    unknown_field["spec"]["predictor"]["containers"][0]["imagePullPolicyy"] = "Never"
    bad_replicas = copy.deepcopy(good)
    bad_replicas["spec"]["predictor"]["minReplicas"] = "one"
    assert _validate([unknown_field]) != []
    assert _validate([bad_replicas]) != []


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_isvc_fields_trace_to_service_yaml(name: str) -> None:
    svc = SERVICES[name]
    doc = _committed(svc)
    meta = doc["metadata"]
    assert (doc["apiVersion"], doc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert (meta["name"], meta["namespace"]) == (svc.name, svc.namespace)
    assert meta["annotations"] == {
        **CHART_ANNOTATIONS,
        "sidecar.istio.io/inject": "true",
        "autoscaling.knative.dev/metric": svc.autoscaling.metric,
        "autoscaling.knative.dev/target": str(svc.autoscaling.target),
    }
    assert meta["labels"] == {**CHART_LABELS, "app.kubernetes.io/managed-by": "ml-sandbox"}
    assert set(doc["spec"]) == {c for c, _ in svc.component_items()}
    for component, spec in svc.component_items():
        pod = doc["spec"][component]
        # Sandbox difference (README): one warm pod per component at most; max as production.
        assert pod["minReplicas"] == min(svc.autoscaling.min_replicas, 1)
        assert pod["maxReplicas"] == svc.autoscaling.max_replicas
        assert pod["serviceAccountName"] == "kserve"
        assert pod["dnsConfig"] == {"options": [{"name": "ndots", "value": "2"}]}
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = pod["containers"]
        assert container["name"] == f"kserve-{component}-{svc.name}"
        assert container["image"] == f"dev.local/{images.image_name(svc, component)}:sandbox"
        # Sandbox difference (README): a quarter of production's CPU request; limits, memory as is.
        want = spec.resources.model_dump()
        want["requests"]["cpu"] = f"{m._millicpu(str(want['requests']['cpu'])) // 4}m"
        assert container["resources"] == want
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
        # No user: production's chart sets none, so the image's USER runs
        # (operations-deployment-charts@66ce6e0:charts/kserve-inference).
        assert "runAsUser" not in sc and "runAsGroup" not in sc
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        env = [(e["name"], e["value"]) for e in container["env"]]
        if component == "predictor":
            # STORAGE_URI makes KServe inject the storage-initializer, which fetches the model.
            assert env[0] == ("STORAGE_URI", svc.model.storage_uri)
            env = env[1:]
            assert container["args"][:4] == ["--model_name", svc.name, "--http_port", "8080"]
            assert container["args"][4:] == spec.args
        else:
            # KServe appends --model_name, --predictor_host and --http_port to a transformer.
            assert container.get("args", []) == spec.args
            assert "STORAGE_URI" not in dict(env)
        # WIKI_URL, where declared, is production's: the API proxy the mesh routes.
        want_env = {
            **spec.env,
            **({"WIKI_URL": m.MEDIAWIKI_API_URL} if "WIKI_URL" in spec.env else {}),
        }
        assert env == list(want_env.items())


def test_a_changed_service_renders_a_different_manifest() -> None:
    """The sync test can fail: a service.yaml edit changes what a fresh render gives."""
    svc = next(iter(SERVICES.values()))
    autoscaling = svc.autoscaling.model_copy(update={"target": svc.autoscaling.target + 1})
    changed = svc.model_copy(update={"autoscaling": autoscaling})
    assert m.render_isvc(changed) != _committed(svc)


def test_mediawiki_override_only_touches_components_that_declare_wiki_url() -> None:
    for svc in SERVICES.values():
        doc = m.render_isvc(
            svc, env_overrides={"WIKI_URL": m.REPLAY_URL}, extra_env={"X_EXTRA": "1"}
        )
        for component, spec in svc.component_items():
            env = {e["name"]: e["value"] for e in doc["spec"][component]["containers"][0]["env"]}
            assert env["X_EXTRA"] == "1"
            if "WIKI_URL" in spec.env:
                assert env["WIKI_URL"] == m.REPLAY_URL
            else:
                assert "WIKI_URL" not in env


def test_replay_manifest_serves_the_replay_server_in_cluster() -> None:
    docs = m.load_documents(m.REPLAY_MANIFEST)
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Namespace", "Deployment", "Service"}
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python3", "-m", "sandbox.mediawiki"]
    port = container["ports"][0]["containerPort"]
    assert kinds["Service"]["spec"]["ports"][0]["port"] == port
    host = f"{kinds['Service']['metadata']['name']}.{kinds['Service']['metadata']['namespace']}"
    assert f"http://{host}.svc.cluster.local:{port}" == m.REPLAY_URL


def _point_at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(m, "MANIFESTS_DIR", tmp_path)
    monkeypatch.setattr(m, "ISVC_DIR", tmp_path / "isvcs")
    monkeypatch.setattr(m, "REPLAY_MANIFEST", tmp_path / "mediawiki-replay.yaml")


def test_render_check_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _point_at(tmp_path, monkeypatch)
    assert cli.main(["manifests", "render", "--check"]) == 1  # nothing rendered yet
    assert cli.main(["manifests", "render"]) == 0
    assert cli.main(["manifests", "render", "--check"]) == 0
    first = sorted(tmp_path.rglob("*.yaml"))
    # The isvcs, the replay, and deploy's MediaWiki proxy objects per mode.
    assert len(first) == len(SERVICES) + 1 + len(m.MEDIAWIKI_MODES)
    target = tmp_path / "isvcs" / f"{next(iter(SERVICES))}.yaml"
    target.write_text(target.read_text().replace("ndots", "ndotz"))
    orphan = tmp_path / "isvcs" / "gone-isvc.yaml"
    orphan.write_text("{}\n")
    capsys.readouterr()
    assert cli.main(["manifests", "render", "--check"]) == 1
    err = capsys.readouterr().err
    assert target.name in err and orphan.name in err
    assert cli.main(["manifests", "render"]) == 0
    assert not orphan.exists()
    assert cli.main(["manifests", "render", "--check"]) == 0


def test_validate_cli(tmp_path: Path, capsys) -> None:
    good = m.isvc_path(next(iter(SERVICES.values())))
    try:
        schemas.validate_documents(m.load_documents(good))
    except schemas.SchemaError as e:
        pytest.skip(f"pinned CRDs unavailable: {e}")
    assert cli.main(["manifests", "validate", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("serviceAccountName", "serviceAccount_Name"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [unclosed\n")
    assert cli.main(["manifests", "validate", str(bad), str(broken)]) == 1
    err = capsys.readouterr().err
    assert "serviceAccount_Name" in err and "not valid YAML" in err


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_catalog_isvc_renders_production_shaped_and_validates(
    name: str, stack_vars: dict
) -> None:
    """Generic over every service.yaml the catalog lists (a new entry is covered by being
    listed): the InferenceService deploy would apply (content-hash image tags) has the chart's
    shape, lands where the playbook made room for it, and validates strictly against the
    Kubernetes 1.31 schemas and the pinned KServe CRD."""
    svc = SERVICES[name]
    refs = {c: f"{m.image_repository(svc, c)}:0123abcd" for c, _ in svc.component_items()}
    doc = m.render_isvc(svc, image_refs=refs)
    assert _validate([doc]) == []
    # Where the playbook made room: a namespace it creates, with the kserve ServiceAccount and
    # the S3 Secret, and a model in the store's bucket (production's s3://wmf-ml-models/...).
    assert svc.namespace in stack_vars["isvc_namespaces"], (
        f"{name}: namespace {svc.namespace} is not in isvc_namespaces "
        "(playbooks/group_vars/all/sandbox.yml); the playbook would not create it"
    )
    assert svc.model.storage_uri.startswith(f"s3://{stack_vars['model_store_bucket']}/")
    # The kserve-inference chart's shape (charts/kserve-inference/templates/services.yaml).
    for component, _ in svc.component_items():
        pod = doc["spec"][component]
        assert set(pod) == {
            "minReplicas",
            "maxReplicas",
            "serviceAccountName",
            "dnsConfig",
            "securityContext",
            "containers",
        }
        (container,) = pod["containers"]
        assert container["name"] == f"kserve-{component}-{name}"
        assert container["image"] == refs[component]
        env = {e["name"]: e["value"] for e in container["env"]}
        if "WIKI_URL" in env:
            assert env["WIKI_URL"] == m.MEDIAWIKI_API_URL
    assert doc["spec"]["predictor"]["containers"][0]["env"][0]["name"] == "STORAGE_URI"
