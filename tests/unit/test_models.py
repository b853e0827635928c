"""sandbox.models: build into the cache, fetch, and stage into a /mnt/models-like directory."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import catalog, cli, models
from sandbox.catalog import Service
from sandbox.errors import RunError
from tests.fasttext_proxy import FastTextModel

pytestmark = pytest.mark.unit

OTHER_SHA = "ab" * 32


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache for the module, so each model is built once."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SANDBOX_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def langid() -> Service:
    return catalog.get("langid")


@pytest.fixture(scope="module")
def langid_built(langid: Service) -> Path:
    return models.build(langid)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _with_model(service: Service, **changes: object) -> Service:
    return service.model_copy(update={"model": service.model.model_copy(update=changes)})


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.fixture(scope="module")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A stand-in for Wikimedia's model mirror: a static file server on 127.0.0.1."""
    root = tmp_path_factory.mktemp("mirror")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_model_error_is_a_user_facing_runtime_error() -> None:
    assert issubclass(models.ModelError, RunError)


def test_cache_path_is_keyed_by_isvc_and_sha(langid: Service, cache: Path) -> None:
    path = models.model_cache_path(langid)
    key = f"{langid.model.sha256}-{models.training_hash(langid)}"
    assert path == cache / "models" / "langid" / key / "lid201-model.bin"


def test_build_verifies_the_sha_and_caches(langid: Service, langid_built: Path) -> None:
    assert langid_built == models.model_cache_path(langid)
    assert _sha(langid_built) == langid.model.sha256
    proxy = FastTextModel(langid, langid_built)
    try:
        assert "__label__eng_Latn" in proxy.get_labels()
    finally:
        proxy.close()
    assert _leftovers(langid_built.parent) == [langid_built.name]


def test_cached_build_is_not_rebuilt(
    langid: Service, langid_built: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inode = langid_built.stat().st_ino
    assert models.build(langid) == langid_built
    assert langid_built.stat().st_ino == inode
    assert "building" not in capsys.readouterr().err


def test_corrupt_cache_is_rebuilt(langid: Service, langid_built: Path) -> None:
    langid_built.write_bytes(b"not a model")
    assert _sha(models.build(langid)) == langid.model.sha256


def test_sha_mismatch_is_a_clear_error_and_caches_nothing(langid: Service) -> None:
    wrong = _with_model(langid, sha256=OTHER_SHA)
    with pytest.raises(models.ModelError) as err:
        models.build(wrong)
    message = str(err.value)
    assert OTHER_SHA in message and langid.model.sha256 in message
    assert "service.yaml" in message
    assert _leftovers(models.model_cache_path(wrong).parent) == []


def test_failing_training_script_is_a_clear_error(langid: Service, tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("import sys\nprint('no data here')\nsys.exit(3)\n")
    broken = _with_model(langid, sha256=OTHER_SHA).model_copy(update={"dir": tmp_path})
    broken = _with_model(broken, build="train.py", build_in="sandbox")
    with pytest.raises(models.ModelError, match=r"exit code 3[\s\S]*no data here"):
        models.build(broken)


def test_stage_sandbox_fills_the_directory_idempotently(
    langid: Service, langid_built: Path, tmp_path: Path
) -> None:
    models_dir = tmp_path / "mnt" / "models"
    staged = models.stage(langid, models_dir)
    assert staged == models_dir / "lid201-model.bin"
    assert staged.is_file() and not staged.is_symlink()
    assert _sha(staged) == langid.model.sha256
    inode = staged.stat().st_ino
    assert models.stage(langid, models_dir) == staged
    assert staged.stat().st_ino == inode
    assert _leftovers(models_dir) == ["lid201-model.bin"]


def test_stage_sha_mismatch_leaves_nothing_half_written(langid: Service, tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    with pytest.raises(models.ModelError, match="sha256"):
        models.stage(_with_model(langid, sha256=OTHER_SHA), models_dir)
    assert _leftovers(models_dir) == []


@pytest.mark.parametrize("form", ["file-uri", "plain-path"])
def test_stage_uri_finds_the_model_file_in_a_folder(
    langid: Service, langid_built: Path, tmp_path: Path, form: str
) -> None:
    folder = tmp_path / "bucket" / "langid" / "20231011160342"
    folder.mkdir(parents=True)
    (folder / "lid201-model.bin").write_bytes(langid_built.read_bytes())
    uri = f"file://{folder}" if form == "file-uri" else str(folder)
    models_dir = tmp_path / "models"
    staged = models.stage(langid, models_dir, source=uri)
    assert staged.is_file() and not staged.is_symlink()
    assert _sha(staged) == langid.model.sha256
    assert _leftovers(models_dir) == ["lid201-model.bin"]


def test_stage_uri_without_the_model_file_is_a_clear_error(langid: Service, tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "other.bin").write_bytes(b"x")
    models_dir = tmp_path / "models"
    with pytest.raises(models.ModelError, match=r"no lid201-model.bin \(found: other.bin\)"):
        models.stage(langid, models_dir, source=f"file://{folder}")
    assert _leftovers(models_dir) == []


@pytest.mark.parametrize("uri", ["nonsense://bucket/model", "s3://wmf-ml-models/langid/"])
def test_stage_unsupported_uri_is_a_clear_error(langid: Service, tmp_path: Path, uri: str) -> None:
    with pytest.raises(models.ModelError, match="copy a model from other storage") as err:
        models.stage(langid, tmp_path / "models", source=uri)
    assert uri in str(err.value)
    assert _leftovers(tmp_path / "models") == []


def test_stage_missing_path_says_it_does_not_exist(langid: Service, tmp_path: Path) -> None:
    with pytest.raises(models.ModelError, match="does not exist"):
        models.stage(langid, tmp_path / "models", source=str(tmp_path / "no" / "such" / "file"))
    assert _leftovers(tmp_path / "models") == []


def test_stage_https_uri_of_another_file_is_a_clear_error(
    langid: Service, tmp_path: Path, http_root: tuple[str, Path]
) -> None:
    base, _ = http_root
    with pytest.raises(models.ModelError, match=r"not the model file lid201-model\.bin"):
        models.stage(langid, tmp_path / "models", source=f"{base}/other.bin")


def test_stage_https_uri_downloads_the_model_file(
    langid: Service, langid_built: Path, tmp_path: Path, http_root: tuple[str, Path]
) -> None:
    base, root = http_root
    (root / "lid201-model.bin").write_bytes(langid_built.read_bytes())
    staged = models.stage(langid, tmp_path / "models", source=f"{base}/lid201-model.bin")
    assert _sha(staged) == langid.model.sha256


def test_fetch_offline_is_a_clear_error(langid: Service) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/wmf-ml-models/langid/lid201-model.bin"
    service = _with_model(langid, production_url=url)
    with pytest.raises(models.ModelError, match="cannot download") as err:
        models.fetch(service)
    assert url in str(err.value)
    assert not models.production_cache_path(service).exists()
    assert _leftovers(models.production_cache_path(service).parent) == []


def test_fetch_without_production_url_is_a_clear_error(langid: Service) -> None:
    with pytest.raises(models.ModelError, match="production_url"):
        models.fetch(_with_model(langid, production_url=None))


def test_fetch_downloads_verifies_and_stages(
    langid: Service, tmp_path: Path, http_root: tuple[str, Path]
) -> None:
    base, root = http_root
    payload = os.urandom(3 << 20)
    (root / "prod.bin").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    service = _with_model(langid, production_url=f"{base}/prod.bin", production_sha256=digest)
    fetched = models.fetch(service, force=True)
    assert fetched == models.production_cache_path(service)
    assert fetched.read_bytes() == payload
    staged = models.stage(service, tmp_path / "models", source="production")
    assert _sha(staged) == digest


def test_fetch_sha_mismatch_keeps_nothing(langid: Service, http_root: tuple[str, Path]) -> None:
    base, root = http_root
    (root / "tampered.bin").write_bytes(b"tampered")
    service = _with_model(
        langid, production_url=f"{base}/tampered.bin", production_sha256=OTHER_SHA
    )
    target = models.production_cache_path(service)
    target.unlink(missing_ok=True)
    with pytest.raises(models.ModelError, match=OTHER_SHA):
        models.fetch(service)
    assert not target.exists()
    assert _leftovers(target.parent) == []


def test_fetch_http_error_names_the_status(langid: Service, http_root: tuple[str, Path]) -> None:
    base, _ = http_root
    with pytest.raises(models.ModelError, match="HTTP 404"):
        models.fetch(_with_model(langid, production_url=f"{base}/missing.bin"), force=True)


def test_cli_build_and_path(langid_built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["models", "build", "langid"]) == 0
    assert str(langid_built) in capsys.readouterr().out
    assert cli.main(["models", "path", "langid"]) == 0
    assert capsys.readouterr().out.strip() == str(langid_built)


def test_cli_errors_are_messages_not_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["models", "stage", "langid", str(tmp_path), "--source", "nonsense://x"]) == 1
    err = capsys.readouterr().err
    assert "ml-sandbox: error:" in err and "Traceback" not in err
    assert cli.main(["models", "build", "no-such-isvc"]) == 2
    assert "unknown isvc" in capsys.readouterr().err


def test_an_edited_training_script_is_built_again_not_served_stale(
    langid: Service, langid_built: Path, tmp_path: Path
) -> None:
    """Finding 2 of the new-user run: an edit to training/ used to be ignored silently."""
    import shutil

    copy = tmp_path / "langid"
    shutil.copytree(langid.dir, copy)
    edited = langid.model_copy(update={"dir": copy})
    assert models.model_cache_path(edited) == models.model_cache_path(langid)
    script = copy / langid.model.build
    script.write_text(script.read_text() + "\n# an edit\n")
    assert models.model_cache_path(edited) != models.model_cache_path(langid)
    # The edit changes nothing the model is made of: the rebuild matches service.yaml again.
    assert _sha(models.build(edited)) == langid.model.sha256
