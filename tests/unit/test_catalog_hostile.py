"""A corpus of hostile and broken service.yaml files (issue 15 defect 3; issue 16 items 7-11).

Each case is refused when the file is loaded, with a message naming the file and the key; and a
broken file anywhere on SANDBOX_SERVICES_PATH blocks only its own isvc: commands about other isvcs
work, with no traceback.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox import catalog
from sandbox.catalog import CatalogError
from sandbox.cli import main

pytestmark = pytest.mark.unit

LANGID = catalog.SERVICES_DIR / "langid"


def _copy(tmp_path: Path, name: str = "hostile") -> Path:
    """langid's service folder as `name`, its code reached through `source`."""
    dst = tmp_path / "svc" / name
    dst.mkdir(parents=True)
    shutil.copytree(LANGID / "training", dst / "training")
    doc = yaml.safe_load((LANGID / "service.yaml").read_text())
    doc.update(name=name, source=str(LANGID))
    doc["model"]["build"] = "training/train.py"
    (dst / "service.yaml").write_text(yaml.safe_dump(doc))
    return dst / "service.yaml"


def _predictor(**fields: Any) -> Callable[[dict], None]:
    return lambda d: d["components"]["predictor"].update(fields)


def _resources(cpu: Any = "1", memory: Any = "2Gi") -> Callable[[dict], None]:
    res = {"cpu": cpu, "memory": memory}
    return _predictor(resources={"requests": res, "limits": res})


def _model_build(value: str) -> Callable[[dict], None]:
    return lambda d: d["model"].update(build=value)


# (case, change to the parsed document, words the error must hold)
EDITS: list[tuple[str, Callable[[dict], None], list[str]]] = [
    ("cpu-250mm", _resources(cpu="250mm"), ["resources.requests.cpu", "250mm"]),
    ("cpu-words", _resources(cpu="one"), ["resources.requests.cpu"]),
    ("memory-bad", _resources(memory="2 GB"), ["resources.requests.memory", "2 GB"]),
    ("env-key-with-equals", _predictor(env={"BAD=KEY": "x"}), ["env", "BAD=KEY"]),
    ("env-key-with-space", _predictor(env={"model path": "x"}), ["env", "model path"]),
    ("env-key-empty", _predictor(env={"": "x"}), ["env"]),
    (
        "entrypoint-dotdot",
        _predictor(entrypoint="../../../../etc/passwd"),
        ["components.predictor.entrypoint", "outside source"],
    ),
    (
        "entrypoint-absolute",
        _predictor(entrypoint="/etc/passwd"),
        ["components.predictor.entrypoint", "outside source"],
    ),
    (
        "requirements-absolute",
        _predictor(requirements=["/etc/hostname"]),
        ["components.predictor.requirements", "outside source"],
    ),
    (
        "pythonpath-root",
        _predictor(pythonpath=["/"]),
        ["components.predictor.pythonpath", "outside source"],
    ),
    (
        "blubber-outside",
        _predictor(image={"blubber": "/etc/hostname"}),
        ["components.predictor.image.blubber", "outside source"],
    ),
    ("model-build-outside", _model_build("/etc/hostname"), ["model.build", "outside"]),
    ("model-build-dotdot", _model_build("../../../etc/hostname"), ["model.build", "outside"]),
]


@pytest.mark.parametrize(("change", "words"), [c[1:] for c in EDITS], ids=[c[0] for c in EDITS])
def test_hostile_fields_are_refused_naming_file_and_key(
    tmp_path: Path, change: Callable[[dict], None], words: list[str]
) -> None:
    path = _copy(tmp_path)
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(CatalogError) as e:
        catalog.load_file(path)
    msg = str(e.value)
    assert str(path) in msg
    for w in words:
        assert w in msg


CORPUS = Path(__file__).parent / "hostile"


def _corpus() -> list[tuple[str, bytes, list[str]]]:
    """tests/unit/hostile/*.yaml, each opening with `# expect: WORDS` (what the error says)."""
    cases = []
    for f in sorted(CORPUS.glob("*.yaml")):
        raw = f.read_bytes()
        first = raw.split(b"\n", 1)[0].decode()
        assert first.startswith("# expect: "), f
        cases.append((f.stem, raw, [first.removeprefix("# expect: ")]))
    return cases


# (case, raw bytes of the file, words the error must hold)
RAW: list[tuple[str, bytes, list[str]]] = [
    *_corpus(),
    ("huge-file", b"description: " + b"x" * (3 << 20) + b"\n", ["too large"]),
]


@pytest.mark.parametrize(("raw", "words"), [c[1:] for c in RAW], ids=[c[0] for c in RAW])
def test_hostile_files_are_refused(tmp_path: Path, raw: bytes, words: list[str]) -> None:
    path = _copy(tmp_path)
    path.write_bytes(raw)
    with pytest.raises(CatalogError) as e:
        catalog.load_file(path)
    assert str(path) in str(e.value)
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize(("raw", "words"), [c[1:] for c in RAW], ids=[c[0] for c in RAW])
def test_a_hostile_file_blocks_only_its_own_isvc(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    raw: bytes,
    words: list[str],
) -> None:
    path = _copy(tmp_path)
    path.write_bytes(raw)
    monkeypatch.setenv(catalog.SERVICES_PATH_ENV, str(path.parent.parent))
    monkeypatch.setenv("SANDBOX_RUN_DIR", str(tmp_path / "run"))
    assert catalog.get("langid").name == "langid"
    # Commands about other isvcs: no traceback, the broken one named where it matters.
    assert main(["services"]) == 2  # the broken file is reported; the others are listed
    out = capsys.readouterr()
    assert "langid" in out.out and str(path) in out.err
    assert main(["down", "langid"]) == 0
    assert main(["logs", "langid", "-n", "1"]) == 1  # nothing started, said plainly
    assert main(["predict", "hostile"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(path) in err


def test_dangling_symlink_in_an_isvc_folder_is_skipped_in_the_code_hash(tmp_path: Path) -> None:
    from sandbox.runtime import local

    path = _copy(tmp_path)
    before = local.code_hash(catalog.load_file(path))
    os.symlink("user@host.1234:1700000000", path.parent / ".#model.py")  # Emacs's lock file
    assert local.code_hash(catalog.load_file(path)) == before
