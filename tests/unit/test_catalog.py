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
    with pytest.raises(
        CatalogError, match=r"components\.predictor\.entrypoint: .*/nope\.py is not a file"
    ):
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


def _external(root: Path, name: str = "my-isvc", **component: object) -> Path:
    """An isvc whose code lives in a monorepo-like checkout outside its service folder."""
    code = root / "checkout"
    (code / "src" / "models" / name).mkdir(parents=True, exist_ok=True)
    (code / "python").mkdir(exist_ok=True)
    (code / "src" / "models" / name / "model.py").write_text("print('hi')\n")
    (code / "src" / "models" / name / "requirements.txt").write_text("kserve==0.14.1\n")
    (code / ".pipeline" / name).mkdir(parents=True, exist_ok=True)
    (code / ".pipeline" / name / "blubber.yaml").write_text("version: v4\n")
    folder = root / "services" / name
    (folder / "training").mkdir(parents=True, exist_ok=True)
    (folder / "training" / "train.py").write_text("")
    langid = yaml.safe_load((catalog.SERVICES_DIR / "langid" / "service.yaml").read_text())
    predictor = {
        "entrypoint": f"src/models/{name}/model.py",
        "requirements": [f"src/models/{name}/requirements.txt"],
        "pythonpath": ["."],
        "image": {"blubber": f".pipeline/{name}/blubber.yaml", "variant": "production"},
        "resources": langid["components"]["predictor"]["resources"],
        **component,
    }
    doc = {
        **langid,
        "name": name,
        "source": "../../checkout",
        "components": {"predictor": predictor},
    }
    (folder / "service.yaml").write_text(yaml.safe_dump(doc))
    return folder


def test_an_isvc_can_live_outside_the_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = _external(tmp_path)
    monkeypatch.setenv(catalog.SERVICES_PATH_ENV, str(folder))
    svc = catalog.get("my-isvc")
    assert svc.source_dir == (tmp_path / "checkout").resolve()
    predictor = svc.components.predictor
    assert predictor.requirements == ["src/models/my-isvc/requirements.txt"]
    assert predictor.image and predictor.image.variant == "production"
    assert {"langid", "outlink-topic-model", "my-isvc"} <= set(catalog.load_all())
    # A folder of service folders works too.
    monkeypatch.setenv(catalog.SERVICES_PATH_ENV, str(folder.parent))
    assert catalog.get("my-isvc").dir == folder.resolve()


def test_requirements_default_to_the_file_beside_the_entrypoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    folder = _external(tmp_path)
    doc = yaml.safe_load((folder / "service.yaml").read_text())
    del doc["components"]["predictor"]["requirements"]
    (folder / "service.yaml").write_text(yaml.safe_dump(doc))
    svc = catalog.load_file(folder / "service.yaml")
    assert svc.components.predictor.requirements == ["src/models/my-isvc/requirements.txt"]
    # Without that file either: an error naming the key, the file looked for, and the fix.
    (tmp_path / "checkout/src/models/my-isvc/requirements.txt").unlink()
    with pytest.raises(CatalogError) as err:
        catalog.load_file(folder / "service.yaml")
    message = str(err.value)
    assert "components.predictor.requirements: not given" in message
    assert "src/models/my-isvc/requirements.txt beside the entrypoint" in message
    assert "requirements: [requirements.txt]" in message


def test_external_paths_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = _external(tmp_path, requirements=["src/models/my-isvc/nope.txt"])
    with pytest.raises(CatalogError, match=r"components\.predictor\.requirements: .*nope\.txt"):
        catalog.load_file(folder / "service.yaml")
    folder = _external(tmp_path, pythonpath=["missing-dir"])
    with pytest.raises(CatalogError, match=r"components\.predictor\.pythonpath: .*missing-dir"):
        catalog.load_file(folder / "service.yaml")


def test_a_broken_file_blocks_only_its_own_isvc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = _external(tmp_path)
    _edit(folder / "service.yaml", lambda d: d.update(namespce="typo"))
    monkeypatch.setenv(catalog.SERVICES_PATH_ENV, str(folder))
    assert catalog.get("langid").name == "langid"  # other isvcs are unaffected
    with pytest.raises(CatalogError, match=r"service\.yaml.*\n  namespce: unknown key"):
        catalog.get("my-isvc")
    with pytest.raises(CatalogError, match="namespce"):
        catalog.load_all()  # a command about every isvc needs every file


def test_your_isvc_shadows_the_reference_isvc_of_the_same_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    mine = tmp_path / "mine" / "langid"
    shutil.copytree(catalog.SERVICES_DIR / "langid", mine)
    monkeypatch.setenv(catalog.SERVICES_PATH_ENV, str(mine))
    assert catalog.get("langid").dir == mine.resolve()
    assert catalog.Catalog().shadowed == {
        "langid": catalog.SERVICES_DIR / "langid" / "service.yaml"
    }


def test_the_same_isvc_twice_in_one_folder_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    for where in ("a", "b"):
        shutil.copytree(catalog.SERVICES_DIR / "langid", tmp_path / "both" / where / "langid")
    folder = tmp_path / "both"
    monkeypatch.setenv(catalog.SERVICES_PATH_ENV, f"{folder / 'a'}:{folder / 'b'}")
    assert catalog.get("langid").dir == (folder / "a" / "langid").resolve()  # earlier wins
    (tmp_path / "flat").mkdir()
    shutil.copytree(catalog.SERVICES_DIR / "langid", tmp_path / "flat" / "langid")
    (tmp_path / "flat" / "langid2").mkdir()
    shutil.copy(catalog.SERVICES_DIR / "langid" / "service.yaml", tmp_path / "flat" / "langid2")
    monkeypatch.setenv(catalog.SERVICES_PATH_ENV, str(tmp_path / "flat"))
    with pytest.raises(CatalogError, match="must match its folder"):
        catalog.get("langid2")
