"""Static checks of the image definitions: the replay image's Blubber file, the build context rules,
content-hash tags."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest

from sandbox import catalog, images
from sandbox.paths import REPO_ROOT

pytestmark = pytest.mark.unit


def _replay_dockerfile() -> str:
    return images.replay_recipe().translation().dockerfile


def test_the_replay_image_is_built_like_an_isvc(monkeypatch: pytest.MonkeyPatch) -> None:
    """From its own Blubber file, on the local base, as production's user, the CA a secret."""
    text = _replay_dockerfile()
    assert re.findall(r"^FROM (\S+) AS (\S+)", text, re.M) == [
        (images.DEFAULT_BASE_IMAGE, "build"),
        (images.DEFAULT_BASE_IMAGE, "production"),
    ]
    final = text.split("\nFROM ")[-1]
    assert "\nUSER $LIVES_UID\n" in final and "ARG LIVES_UID=65533" in final
    assert '"sandbox.mediawiki"' in final
    assert "--mount=type=secret,id=ca" in text
    assert not re.search(r"^(COPY|ADD) .*\bca\b", text, re.M | re.I)
    isvc = images.component_recipe(catalog.get("langid"), "predictor")
    assert type(isvc) is type(images.replay_recipe())


def test_dockerignore_mirrors_the_staged_context_rules() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    for name in images.IGNORED_DIRS - {".ruff_cache", ".mypy_cache"}:
        assert f"**/{name}" in lines
    for suffix in images.IGNORED_SUFFIXES:
        assert f"**/*{suffix}" in lines
    # Everything the replay image copies from the repository root is let through.
    for src in images.replay_recipe().translation().local_sources:
        assert f"!{src}" in lines or f"!{Path(src).parent}/" in lines, src


def test_the_replay_servers_pins_are_the_sandboxs_own() -> None:
    """images/mediawiki-replay/requirements.txt pins what pyproject.toml pins (one version of
    each library runs the replay server, on the host and in its image)."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pinned = {r.split("==")[0].lower(): r for r in project["dependencies"]}
    reqs = (REPO_ROOT / "images/mediawiki-replay/requirements.txt").read_text().splitlines()
    reqs = [r for r in reqs if r and not r.startswith("#")]
    assert reqs and all(pinned.get(r.split("==")[0].lower()) == r for r in reqs), reqs


def test_manylinux_platforms_fit_bookworm() -> None:
    tags = images.manylinux_platforms("x86_64")
    assert "manylinux2014_x86_64" in tags and "manylinux_2_17_x86_64" in tags
    minors = [int(m) for m in re.findall(r"manylinux_2_(\d+)_", " ".join(tags))]
    assert max(minors) == images.GLIBC_MINOR


@pytest.fixture
def repo_copy(tmp_path, monkeypatch) -> Path:
    """A copy of what the images are made of, for changing files without touching the repo."""
    for rel in ["images", "sandbox/__init__.py", "sandbox/mediawiki", "services"]:
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
    # The replay server's code is part of its image only.
    replay = images.replay_image_tag()
    api_py = repo_copy / "sandbox/mediawiki/api.py"
    api_py.write_text(api_py.read_text() + "\n# changed\n")
    assert tags() == after
    assert images.replay_image_tag() != replay


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

    assert cpus("250m", 8) == "0.25" and cpus("1", 8) == "1" and cpus("1500m", 8) == "1.5"
    # Production asks more than a laptop has (edit-check: 4): Docker's limit is the host's CPUs.
    assert cpus("4", 2) == "2" and cpus("2500m", 2) == "2"
    assert memory_bytes("512Mi") == 512 * 1024**2 and memory_bytes("1Gi") == 1024**3
    assert memory_bytes("1G") == 10**9 and memory_bytes("1000") == 1000


def test_a_loopback_mediawiki_url_is_refused_for_containers() -> None:
    from sandbox.errors import RunError
    from sandbox.runtime.docker import check_mediawiki_url
    from sandbox.runtime.options import MediaWiki

    for url in ("http://127.0.0.1:8090", "http://localhost:8090/"):
        with pytest.raises(RunError, match="reach"):
            check_mediawiki_url(MediaWiki.parse(url))
    for ok in ("replay", "live", "http://mediawiki.example.org"):
        check_mediawiki_url(MediaWiki.parse(ok))


def test_tags_cover_every_image(capsys: pytest.CaptureFixture) -> None:
    """`python -m sandbox.images tags` lists each component of every isvc and the replay server,
    the same tags the targets build (build and prune go over the same recipes)."""
    assert images.main(["tags"]) == 0
    listed = capsys.readouterr().out.split()
    services = list(catalog.load_all().values())
    want = [images.image_tag(s, n) for s in services for n, _ in s.component_items()]
    assert listed == [*want, images.replay_image_tag()]
    assert [r.tag() for r in images.recipes(services)] == listed
