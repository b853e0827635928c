"""Model artifacts: build the sandbox models, fetch production's, and stage them for a predictor.

Production's KServe storage-initializer copies an isvc's `STORAGE_URI` into `/mnt/models` before
the predictor starts. The sandbox does the same with `stage()`, from one of three sources:

- `sandbox` (default): the isvc's training script (`model.build` in service.yaml) builds a real,
  small fastText model; its sha256 must equal `model.sha256`. Built models are cached under
  `<cache>/models/<isvc>/<sha256>-<training inputs hash>/<model.file>`, so a build happens once
  per model version and again after any edit to the training script or its data.
- `production`: Wikimedia's published model (`model.production_url`), downloaded once into
  `<cache>/models/<isvc>/production/<model.file>`.
- a storage URI: a local folder or file (a plain path or `file://`) or an `http(s)://` URL of
  the model file, staged as KServe's storage-initializer stages them (`_stage_from_uri`; other
  storage, such as `s3://` and `gs://`, is copied to a local folder first).

Every file lands atomically (written beside its destination, then renamed), so a failure never
leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from sandbox.catalog import Service
from sandbox.errors import RunError
from sandbox.hints import prog
from sandbox.paths import cache_dir, private_dir

SOURCES = ("sandbox", "production")
BUILD_TIMEOUT_S = 600
DOWNLOAD_TIMEOUT_S = 30
_CHUNK = 1 << 20


class ModelError(RunError):
    """A model could not be built, fetched or staged; the message says why and what to do."""


def _log(message: str) -> None:
    print(f"models: {message}", file=sys.stderr, flush=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _isvc_cache(service: Service) -> Path:
    return cache_dir() / "models" / service.name


def tree_sha256(folder: Path) -> str:
    """The sha256 of a model folder: of its manifest, one `<sha256>  <relative path>` line per
    file, sorted by path (what `sha256sum` prints for `find . -type f | sort`)."""
    lines = [
        f"{sha256_of(p)}  {p.relative_to(folder).as_posix()}\n"
        for p in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix())
        if p.is_file()
    ]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _hash_of(path: Path) -> str:
    return tree_sha256(path) if path.is_dir() else sha256_of(path)


def training_hash(service: Service) -> str:
    """A hash of everything in the training script's folder (the script and its data)."""
    if service.model.data is not None:
        return "data"
    folder = (service.dir / service.model.build).parent
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def model_cache_path(service: Service) -> Path:
    """Where the sandbox-built model of this isvc lives (whether or not it is built yet). The
    training inputs are part of the key: after an edit to the training script or its data the
    model is built again, and its hash checked against service.yaml, never served stale."""
    if service.model.data is not None:  # the data file is the model: nothing to build
        return service.dir / service.model.data
    key = f"{service.model.sha256}-{training_hash(service)}"
    if service.model.layout == "tree":
        return _isvc_cache(service) / key / "models"
    return _isvc_cache(service) / key / service.model.file


def production_cache_path(service: Service) -> Path:
    """Where `fetch()` keeps production's model of this isvc."""
    return _isvc_cache(service) / "production" / service.model.file


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def build(service: Service, force: bool = False) -> Path:
    """Build the isvc's sandbox model (or reuse the cached one) and return its path.

    The training script runs with this Python into a temporary file; the result must hash to
    `model.sha256` of service.yaml before it is moved into the cache.
    """
    target = model_cache_path(service)
    expected = service.model.sha256
    if service.model.data is not None:
        return _checked_data(service, target)
    if target.exists() and not force:
        if _hash_of(target) == expected:
            return target
        _log(f"{service.name}: cached {target} does not match its sha256; rebuilding")
        shutil.rmtree(target) if target.is_dir() else target.unlink()

    script = service.dir / service.model.build
    if not script.is_file():
        raise ModelError(f"{service.name}: training script {script} does not exist")
    python = _builder_python(service)
    private_dir(target.parent)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        tree = service.model.layout == "tree"
        output = work / ("models" if tree else service.model.file)
        if tree:
            output.mkdir()
        _log(
            f"{service.name}: building {service.model.file} with {script.relative_to(service.dir)}"
        )
        started = time.monotonic()
        try:
            proc = subprocess.run(
                [python, str(script), *service.model.build_args, str(output)],
                cwd=script.parent,
                env={**os.environ, "PYTHONHASHSEED": "0"},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=BUILD_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ModelError(
                f"{service.name}: {script} did not finish within {BUILD_TIMEOUT_S} s"
            ) from None
        if proc.stdout.strip():
            print(proc.stdout.rstrip(), file=sys.stderr)
        if proc.returncode != 0:
            raise ModelError(
                f"{service.name}: {script} failed with exit code {proc.returncode}:\n"
                f"{_tail(proc.stdout)}"
            )
        made = output / service.model.file if tree else output
        if not made.exists():
            raise ModelError(f"{service.name}: {script} exited 0 but wrote no {made.name}")
        got = _hash_of(output)
        if got != expected:
            raise ModelError(
                f"{service.name}: the model built by {script.relative_to(service.dir.parent)} "
                f"has sha256 {got}, but service.yaml model.sha256 is {expected}. "
                "If you changed the training script or its data on purpose, put the new hash "
                f"into {service.dir / 'service.yaml'}; otherwise the build is not deterministic."
            )
        for p in [output, *output.rglob("*")] if tree else [output]:
            os.chmod(p, 0o700 if p.is_dir() else 0o600)  # the cache is private
        if target.is_dir():  # a folder model built again (--force): the old one goes aside first
            os.replace(target, work / "previous")
        os.replace(output, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = sum(p.stat().st_size for p in target.rglob("*")) if tree else target.stat().st_size
    _log(f"{service.name}: built {target} ({size // 1024} KiB, {time.monotonic() - started:.1f} s)")
    return target


def _checked_data(service: Service, path: Path) -> Path:
    """A data file that is the model as it is: checked against model.sha256."""
    got = sha256_of(path)
    if got != service.model.sha256:
        raise ModelError(
            f"{service.name}: {path} has sha256 {got}, but service.yaml model.sha256 is "
            f"{service.model.sha256}: put the new hash into {service.dir / 'service.yaml'}"
        )
    return path


def _builder_python(service: Service) -> str:
    """The sandbox's Python, or (model.build_in: isvc) the predictor's own venv's."""
    if service.model.build_in == "sandbox":
        return sys.executable
    from sandbox import environments, venvs

    predictor = service.components.predictor
    return str(venvs.python_of(environments.venv_for(service, predictor)))


def _download(url: str, dest: Path) -> str:
    """Stream `url` into `dest` (which must not be the final path); return its sha256."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0)
        done, last_report = 0, 0.0
        with dest.open("wb") as out:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                now = time.monotonic()
                if now - last_report >= 2 or (total and done == total):
                    last_report = now
                    share = f" ({100 * done // total}%)" if total else ""
                    _log(f"  {done // _CHUNK} MiB{share}")
    if total and done != total:
        raise ModelError(f"download of {url} stopped after {done} of {total} bytes")
    return digest.hexdigest()


def fetch(service: Service, force: bool = False) -> Path:
    """Download production's model of the isvc (`model.production_url`) into the cache."""
    url = service.model.production_url
    if not url:
        raise ModelError(
            f"{service.name}: service.yaml has no model.production_url; only the sandbox model "
            f"exists ({prog()} models build)"
        )
    target = production_cache_path(service)
    expected = service.model.production_sha256
    if target.is_file() and not force:
        if expected is None or sha256_of(target) == expected:
            return target
        _log(f"{service.name}: cached {target} does not match production_sha256; downloading")

    private_dir(target.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _log(f"{service.name}: downloading {url}")
        try:
            got = _download(url, tmp)
        except urllib.error.HTTPError as e:
            raise ModelError(f"{service.name}: {url} answered HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ModelError(
                f"{service.name}: cannot download {url}: {reason}. Production models need network "
                f"access; offline, use the sandbox model ({prog()} models build)."
            ) from None
        if expected and got != expected:
            raise ModelError(
                f"{service.name}: downloaded {url} has sha256 {got}, "
                f"but service.yaml model.production_sha256 is {expected}"
            )
        if not expected:
            _log(f"{service.name}: sha256 {got} (service.yaml has no production_sha256 to check)")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _log(f"{service.name}: fetched {target}")
    return target


def _place(src: Path, dest: Path, private: bool = True) -> None:
    """Atomically make `dest` a copy of `src`: private (0600; a hard link to the private cache
    file when they share a file system), or readable by a container's user (0644; a copy, so
    that the cache file stays 0600)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.unlink()
        try:
            if not private:
                raise OSError("a copy, not a link")
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o600 if private else 0o644)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _find(directory: Path, name: str) -> Path | None:
    direct = directory / name
    if direct.exists():
        return direct
    return next(iter(sorted(directory.rglob(name))), None)


def _stage_from_uri(service: Service, uri: str, dest: Path, private: bool = True) -> Path:
    """Stage the model file from a storage URI, with the semantics of KServe's storage-initializer
    (kserve/kserve@v0.21.0:python/storage/kserve_storage/kserve_storage.py, `Storage.download`)
    for the kinds the sandbox supports: a folder or file (a plain path or `file://`), where the
    model file is found by name, and an `http(s)://` URL of the file itself."""
    scheme = urllib.parse.urlsplit(uri).scheme
    if scheme in ("http", "https"):
        name = Path(urllib.parse.urlsplit(uri).path).name
        if name != service.model.file:
            raise ModelError(
                f"{service.name}: {uri} names {name or 'no file'}, not the model file "
                f"{service.model.file}; give the URL of {service.model.file}"
            )
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _log(f"{service.name}: downloading {uri}")
            try:
                _download(uri, tmp)
            except urllib.error.HTTPError as e:
                raise ModelError(
                    f"{service.name}: {uri} answered HTTP {e.code} {e.reason}"
                ) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                reason = getattr(e, "reason", e)
                raise ModelError(f"{service.name}: cannot download {uri}: {reason}") from None
            _place(tmp, dest, private)
        finally:
            tmp.unlink(missing_ok=True)
        return dest
    if scheme not in ("", "file"):
        raise ModelError(
            f"{service.name}: --model-source {uri}: the sandbox stages a local path, a file:// "
            "URI or an http(s):// URL of the model file; copy a model from other storage "
            f"({scheme}://) to a local folder first, and give that folder"
        )
    path = Path(urllib.parse.unquote(urllib.parse.urlsplit(uri).path) if scheme else uri)
    path = path.expanduser()
    if not path.exists():
        raise ModelError(f"{service.name}: --model-source {uri}: {path} does not exist")
    found = path if path.is_file() else _find(path, service.model.file)
    if found is None:
        present = sorted(p.name for p in path.rglob("*") if p.is_file()) or ["nothing"]
        raise ModelError(
            f"{service.name}: {uri} holds no {service.model.file} "
            f"(found: {', '.join(present)}); give the folder that contains it, "
            "as a STORAGE_URI does"
        )
    _log(f"{service.name}: copying {found}")
    _place(found.resolve(), dest, private)  # a real file (containers mount it), never a link
    return dest


def _copy_tree(src: Path, dest: Path, private: bool = True) -> None:
    """Make `dest` hold `src`'s files (hard links where possible), atomically per file."""
    for path in sorted(src.rglob("*")):
        if path.is_file():
            out = dest / path.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            _place(path.resolve(), out, private)


def _stage_tree(service: Service, models_dir: Path, source: str, private: bool = True) -> Path:
    """A model that is a folder (an HF model directory, several files): all of /mnt/models."""
    if source == "sandbox":
        _copy_tree(build(service), models_dir, private)
    elif source == "production":
        raise ModelError(
            f"{service.name}: production's model is a folder ({service.model.storage_uri}); "
            "give its local copy or URI: --model-source PATH"
        )
    else:
        path = Path(source.removeprefix("file://")).expanduser()
        if not path.is_dir():
            raise ModelError(
                f"{service.name}: --model-source {source}: the model is a folder (as production's "
                f"{service.model.storage_uri}); give a local folder that holds "
                f"{service.model.file}"
            )
        _copy_tree(path, models_dir, private)
        if not (models_dir / service.model.file).exists():
            raise ModelError(
                f"{service.name}: {source} holds no {service.model.file}: give the folder that "
                "production's STORAGE_URI names"
            )
    _log(f"{service.name}: staged {models_dir} ({source})")
    return models_dir / service.model.file


def stage(
    service: Service, models_dir: Path, source: str = "sandbox", private: bool = True
) -> Path:
    """Fill `models_dir` (what KServe mounts at /mnt/models) with the isvc's model file.

    `source` is `sandbox`, `production` or a storage URI. Returns the staged file. The folder
    and the file are private (0700/0600), unless `private` is False: a container's user (not
    this one) reads a docker mount, so the folder and file are then 0755/0644 (their parents
    stay private).
    """
    models_dir = Path(models_dir)
    private_dir(models_dir.parent)
    models_dir.mkdir(exist_ok=True)
    os.chmod(models_dir, 0o700 if private else 0o755)
    dest = models_dir / service.model.file
    if service.model.layout == "tree":
        return _stage_tree(service, models_dir, source, private)
    if source in SOURCES:
        src = build(service) if source == "sandbox" else fetch(service)
        same = dest.is_file() and sha256_of(dest) == sha256_of(src)
        if same and dest.stat().st_mode & 0o777 == (0o600 if private else 0o644):
            return dest
        _place(src, dest, private)
    else:
        _stage_from_uri(service, source, dest, private)
    _log(f"{service.name}: staged {dest} ({source})")
    return dest
