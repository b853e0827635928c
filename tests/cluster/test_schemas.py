"""sandbox.schemas: strict validation of core kinds (Kubernetes 1.31) and custom resources
(pinned CRDs), and where the pinned CRDs come from."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sandbox import schemas

pytestmark = pytest.mark.cluster


ISVC = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: outlink-topic-model
  namespace: articletopic-outlink
spec:
  predictor:
    serviceAccountName: kserve
    minReplicas: 1
    containers:
      - name: kserve-container
        image: dev.local/outlink-topic-model:latest
        env: [{name: MODEL_PATH, value: /mnt/models/model.bin}]
        resources: {requests: {cpu: 250m, memory: 512Mi}, limits: {cpu: "1", memory: 1Gi}}
"""


def test_a_valid_inference_service_has_no_errors(pinned_crds: Path) -> None:
    assert schemas.validate_documents([yaml.safe_load(ISVC)]) == []


def test_unknown_fields_are_errors_naming_kind_name_and_path(pinned_crds: Path) -> None:
    doc = yaml.safe_load(ISVC)
    doc["spec"]["predictor"]["containers"][0]["envv"] = []
    doc["spec"]["predictor"]["minReplica"] = 1
    errors = schemas.validate_documents([doc])
    assert (
        "InferenceService/outlink-topic-model: spec.predictor.containers[0]: unknown field(s) envv"
        in errors
    )
    assert any("spec.predictor" in e and "minReplica" in e for e in errors), errors


def test_wrong_types_and_unknown_kinds_are_errors(pinned_crds: Path) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"n": 1}}
    knative = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "ks"},
        "spec": {"template": {"spec": {"containers": [{"image": "x", "port": 8080}]}}},
    }
    gw = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "g"},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": "all"},
    }
    odd = {"apiVersion": "example.org/v1", "kind": "Widget", "metadata": {"name": "w"}}
    errors = schemas.validate_documents([cm, knative, gw, odd])
    assert any(e.startswith("ConfigMap/c: data.n:") for e in errors), errors
    assert any(
        e.startswith("Service/ks: spec.template.spec.containers[0]") and "port" in e for e in errors
    ), errors
    assert any(e.startswith("Gateway/g: spec.servers") for e in errors), errors
    assert any(e.startswith("Widget/w: unknown apiVersion/kind") for e in errors), errors


def test_metadata_of_custom_resources_is_checked_as_object_meta(pinned_crds: Path) -> None:
    doc = yaml.safe_load(ISVC)
    doc["metadata"]["label"] = {"a": "b"}
    assert any("metadata" in e and "label" in e for e in schemas.validate_documents([doc]))


def test_crd_sources_follow_the_versions_file() -> None:
    versions = schemas.pinned_versions()
    sources = schemas.crd_sources(versions)
    urls = [s.url for s in sources]
    assert f"/kserve/kserve/v{versions['kserve_version']}/config/crd/full/" in urls[0]
    assert any(
        f"knative/serving/knative-v{versions['knative_serving_version']}/" in u for u in urls
    )
    assert any(f"istio/istio/{versions['istio_version']}/" in u for u in urls)
    bumped = dict(versions, kserve_version="9.9.9")
    assert "kserve-v9.9.9/" in schemas.crd_sources(bumped)[0].relpath


def test_crd_dir_prefers_shared_then_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SANDBOX_CRD_DIR", raising=False)
    monkeypatch.setattr(schemas, "SHARED_CRDS", tmp_path / "no-shared")
    monkeypatch.setenv("SANDBOX_CACHE_DIR", str(tmp_path / "cache"))
    assert schemas.crd_dir() == tmp_path / "cache" / "crds"
    assert len(schemas.missing_crds()) == len(schemas.crd_sources())
    doc = yaml.safe_load(ISVC)
    with pytest.raises(schemas.SchemaError, match="manifests validate") as e:
        schemas.validate_documents([doc])
    # Offline, the message names the setting and what to put there (issue 15, defect 11).
    assert "SANDBOX_CRD_DIR" in str(e.value)
    assert "kserve-v0.17.0/serving.kserve.io_inferenceservices.yaml" in str(e.value)
    assert "../shared/crds" not in str(e.value) and str(tmp_path / "no-shared") not in str(e.value)


def test_pinned_crds_are_present_in_ci() -> None:
    if schemas.missing_crds(schemas.SHARED_CRDS):
        pytest.skip(f"{schemas.SHARED_CRDS} does not hold the pinned CRDs (not a CI checkout)")
    assert schemas.crd_dir() == schemas.SHARED_CRDS
    kinds = schemas.crd_kinds()
    assert "serving.kserve.io/v1beta1 InferenceService" in kinds
    assert "serving.knative.dev/v1 Service" in kinds
    assert "networking.istio.io/v1 ServiceEntry" in kinds


def test_command_line_reports_errors_by_file_and_exit_code(
    tmp_path: Path, pinned_crds: Path
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(ISVC)
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndataa: {}\n")
    assert schemas.main([str(good), "--no-download"]) == 0
    assert schemas.main([str(good), str(bad), str(tmp_path / "missing.yaml")]) == 1
