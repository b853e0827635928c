"""The service catalog: the real service.yaml files load, and mistakes name the file and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from sandbox import catalog
from sandbox.catalog import CatalogError

pytestmark = pytest.mark.unit


def test_real_catalog_loads_both_isvcs():
    services = catalog.load_all()
    assert {"outlink-topic-model", "langid"} <= set(services)
    outlink = services["outlink-topic-model"]
    assert outlink.host == "outlink-topic-model.articletopic-outlink.wikimedia.org"
    assert outlink.entry_component == "transformer"
    assert [n for n, _ in outlink.component_items()] == ["predictor", "transformer"]
    langid = services["langid"]
    assert langid.host == "langid.llm.wikimedia.org"
    assert langid.entry_component == "predictor"
    assert langid.predict_path == "/v1/models/langid:predict"


@pytest.fixture
def catalog_copy(tmp_path: Path) -> Path:
    """A copy of the langid service to break in different ways."""
    src = catalog.SERVICES_DIR / "langid"
    dst = tmp_path / "services" / "langid"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst / "service.yaml"


def _edit(path: Path, change) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc))


def test_typo_names_file_and_key(catalog_copy: Path):
    _edit(catalog_copy, lambda d: d["autoscaling"].update(max_replica=3))
    with pytest.raises(CatalogError) as e:
        catalog.load_all(catalog_copy.parent.parent)
    assert str(catalog_copy) in str(e.value)
    assert "autoscaling.max_replica" in str(e.value)
    assert "unknown key" in str(e.value)


def test_missing_key_and_bad_values(catalog_copy: Path):
    def change(d):
        del d["namespace"]
        d["model"]["sha256"] = "not-a-hash"

    _edit(catalog_copy, change)
    with pytest.raises(CatalogError) as e:
        catalog.load_file(catalog_copy)
    msg = str(e.value)
    assert "namespace: Field required" in msg
    assert "model.sha256" in msg


def test_name_must_match_folder(catalog_copy: Path):
    _edit(catalog_copy, lambda d: d.update(name="other"))
    with pytest.raises(CatalogError, match="must match its folder"):
        catalog.load_file(catalog_copy)


def test_entrypoint_must_exist(catalog_copy: Path):
    _edit(catalog_copy, lambda d: d["components"]["predictor"].update(entrypoint="nope.py"))
    with pytest.raises(CatalogError, match=r"components.predictor.entrypoint: nope.py"):
        catalog.load_file(catalog_copy)


def test_duplicate_samples_and_bodies(catalog_copy: Path):
    def change(d):
        d["samples"].append(dict(d["samples"][0]))
        d["samples"].append({"name": "both", "data": {}, "raw": "{}"})

    _edit(catalog_copy, change)
    with pytest.raises(CatalogError) as e:
        catalog.load_file(catalog_copy)
    assert "exactly one of 'data' or 'raw'" in str(e.value)


def test_invalid_yaml(catalog_copy: Path):
    catalog_copy.write_text("name: [unclosed\n")
    with pytest.raises(CatalogError, match="not valid YAML"):
        catalog.load_file(catalog_copy)


def test_unknown_isvc_lists_known():
    with pytest.raises(CatalogError) as e:
        catalog.get("nope")
    assert "langid" in str(e.value) and "outlink-topic-model" in str(e.value)


def test_resolve_path():
    doc = {"prediction": {"results": [{"topic": "A"}]}}
    assert catalog.resolve_path(doc, "prediction.results.0.topic") == "A"
    with pytest.raises(KeyError):
        catalog.resolve_path(doc, "prediction.missing")
