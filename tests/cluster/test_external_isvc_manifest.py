"""The minikube path of an isvc that lives outside the repo, checked without a cluster: its
InferenceService renders with the image its Blubber file builds (a content-hash tag under
dev.local, as deploy applies it) and validates strictly against Kubernetes and the pinned CRDs."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox import catalog, images, manifests, schemas
from tests.e2e.test_external_isvc import NAME, write_external

pytestmark = pytest.mark.cluster


def test_external_isvc_renders_a_valid_inferenceservice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pinned_crds: Path
) -> None:
    folder = write_external(tmp_path)
    monkeypatch.setenv(catalog.SERVICES_PATH_ENV, str(folder))
    svc = catalog.get(NAME)
    ref = images.image_tag(svc, "predictor", registry=manifests.IMAGE_REGISTRY)
    assert ref.startswith(f"{manifests.IMAGE_REGISTRY}/{images.image_name(svc, 'predictor')}:")
    doc = manifests.render_isvc(svc, image_refs={"predictor": ref})
    assert doc["spec"]["predictor"]["containers"][0]["image"] == ref
    assert schemas.validate_documents([doc]) == []
    # A change to the code its Blubber file copies is a new image, so a new revision.
    (tmp_path / "inference-services" / "python" / "text_utils.py").write_text("# changed\n")
    assert images.image_tag(svc, "predictor", registry=manifests.IMAGE_REGISTRY) != ref


def test_render_writes_an_external_isvcs_manifest_beside_its_service_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_external(tmp_path)
    monkeypatch.setenv(catalog.SERVICES_PATH_ENV, str(folder))
    svc = catalog.get(NAME)
    files = manifests.rendered_files(catalog.load_all().values())
    assert manifests.isvc_path(svc) == folder.resolve() / "inferenceservice.yaml"
    assert manifests.isvc_path(svc) in files
    assert all(
        p.parent == manifests.ISVC_DIR for p in files if p.name != "inferenceservice.yaml"
        and p.parent != manifests.MANIFESTS_DIR
    )  # fmt: skip
