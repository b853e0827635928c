"""Blubber per version (the `# syntax=` line): the python builder's two layouts, the keys of
each version, the base stand-ins, mirrors for builders that fetch, and every Blubber file of
production's inference-services translated or refused for a documented reason.

Checked at wikimedia/blubber@v0.21.1:config/python.go (pip wheel + pip install --target),
@v0.23.0:config/python.go (venv at /opt/lib/venv, active only with version and requirements),
@v0.24.0:config/python.go (no install for `requirements: []`), @v1.5.0:config/runs.go and
config/builder.go (runs.in, a string command)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sandbox.images import blubber
from sandbox.images.blubber import BlubberError, bases, mirrors, versions
from sandbox.paths import REPO_ROOT

pytestmark = pytest.mark.unit

BASE = "ml-sandbox/bookworm:latest"
SITE = "/opt/lib/venv/lib/python3.11/site-packages"
CHECKOUT = REPO_ROOT.parent / "shared" / "inference-services"

# One small isvc, the same under both versions but for the system-packages key.
SMALL = """\
# syntax=docker-registry.wikimedia.org/repos/releng/blubber/buildkit:{tag}
version: v4
base: docker-registry.wikimedia.org/bookworm:20260816
runs:
  insecurely: true
  environment:
    PYTHONPATH: /srv/app
lives:
  in: /srv/app
variants:
  build:
    apt: {{packages: [python3-pip, python3-venv]}}
    python:
      version: python3
      requirements: [requirements.txt]
      {system}
  production:
    copies:
      - from: local
        source: app.py
        destination: app.py
      - from: build
        source: {lib}
        destination: {lib}
    apt: {{packages: [python3]}}
    python:
      version: python3
    entrypoint: [python3, app.py]
"""


def small(tmp_path: Path, tag: str, **kw: str) -> Path:
    venv = versions.Rules(tuple(int(x) for x in tag[1:].split("."))).venv  # type: ignore[arg-type]
    fields = {
        "tag": tag,
        "system": "use-system-site-packages: false" if venv else "use-system-flag: false",
        "lib": "/opt/lib/venv/lib/python3.11/site-packages"
        if venv
        else "/opt/lib/python/site-packages",
    }
    fields.update(kw)
    path = tmp_path / f"blubber-{tag}.yaml"
    path.write_text(SMALL.format(**fields))
    return path


def lines(dockerfile: str, stage: str) -> list[str]:
    out, current = [], ""
    for line in dockerfile.splitlines():
        if line.startswith("FROM "):
            current = line.split(" AS ")[-1]
        elif current == stage and line and not line.startswith("#"):
            out.append(line)
    return out


def test_v0_21_1_installs_into_site_packages(tmp_path: Path) -> None:
    t = blubber.translate(small(tmp_path, "v0.21.1"), "production", base_image=BASE)
    assert (t.blubber_version, t.layout) == ("v0.21.1", "site-packages")
    build = lines(t.dockerfile, "build")
    assert any("pip install -U 'setuptools!=60.9.0'" in ln for ln in build[:6])  # as root
    assert any(
        "pip wheel -r requirements.txt" in ln and "--target /opt/lib/python/site-packages" in ln
        for ln in build
    )
    assert not any("venv" in ln and "-m venv" in ln for ln in build)
    # python.version alone activates the builder at v0.21: PYTHONPATH/PATH in production too.
    prod = lines(t.dockerfile, "production")
    assert (
        'ENV PATH="/opt/lib/python/site-packages/bin:${PATH}" '
        'PYTHONPATH="/opt/lib/python/site-packages:${PYTHONPATH}"' in prod
    )
    assert 'ENV PIP_NO_INDEX="1"' in build


def test_v1_5_1_installs_into_a_venv(tmp_path: Path) -> None:
    t = blubber.translate(small(tmp_path, "v1.5.1"), "production", base_image=BASE)
    assert (t.blubber_version, t.layout) == ("v1.5.1", "venv")
    build = lines(t.dockerfile, "build")
    venv = build.index("RUN python3 -m venv /opt/lib/venv")
    assert build[venv + 1] == 'ENV PATH="/opt/lib/venv/bin:$PATH" VIRTUAL_ENV="/opt/lib/venv"'
    assert "python3 -m pip install -U 'setuptools!=60.9.0'" in build[venv + 2]  # in the venv
    assert build[venv + 3].endswith("python3 -m pip install -r requirements.txt")
    assert not any('PYTHONPATH="/opt/lib/python' in ln or "--target" in ln for ln in build)
    envs = [ln for ln in build if ln.startswith("ENV ")]
    assert not any("PIP_BREAK_SYSTEM_PACKAGES" in ln or "PIP_NO_INDEX" in ln for ln in envs)
    # version without requirements: the builder is off (no venv, no PATH) in production.
    prod = lines(t.dockerfile, "production")
    assert not any("venv/bin" in ln or "-m venv" in ln for ln in prod)
    assert f'COPY --chown=$LIVES_UID:$LIVES_GID --from=build ["{SITE}", "{SITE}"]' in prod


def test_system_site_packages_and_no_deps(tmp_path: Path) -> None:
    path = small(tmp_path, "v1.0.1", system="use-system-site-packages: true\n      no-deps: true")
    build = lines(blubber.to_dockerfile(path, "build", base_image=BASE), "<none>") or [
        ln for ln in blubber.to_dockerfile(path, "build", base_image=BASE).splitlines()
    ]
    assert "RUN python3 -m venv /opt/lib/venv --system-site-packages" in build
    assert any(ln.endswith("python3 -m pip install --no-deps -r requirements.txt") for ln in build)
    assert build[build.index("USER $LIVES_UID") :].count("RUN python3 -m pip check") == 1


@pytest.mark.parametrize(
    ("tag", "key", "says"),
    [
        ("v1.5.1", "use-system-flag: false", "replaced it with `use-system-site-packages`"),
        ("v0.23.0", "use-system-flag: true", "replaced it with `use-system-site-packages`"),
        ("v0.22.0", "use-system-site-packages: true", "exists from blubber v0.23.0 on"),
        ("v0.21.0", "use-system-site-packages: false", "exists from blubber v0.23.0 on"),
    ],
)
def test_each_versions_key_fails_under_the_other(
    tmp_path: Path, tag: str, key: str, says: str
) -> None:
    path = small(tmp_path, tag, system=key)
    with pytest.raises(BlubberError, match=says) as err:
        blubber.translate(path, "production", base_image=BASE)
    assert f"variants.build.python.{key.split(':')[0]}" in str(err.value)


def test_empty_requirements_v0_23_installs_nothing_from_v0_24(tmp_path: Path) -> None:
    def install_lines(tag: str) -> list[str]:
        path = small(tmp_path, tag, system="")
        path.write_text(
            path.read_text().replace("requirements: [requirements.txt]", "requirements: []")
        )
        df = blubber.to_dockerfile(path, "build", base_image=BASE)
        return [ln for ln in df.splitlines() if ln.endswith("-m pip install")]

    assert len(install_lines("v0.23.0")) == 1  # blubber v0.23.0 ran a bare `pip install`
    assert install_lines("v0.24.0") == []


def test_v1_5_keys_runs_in_and_a_string_command(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    text = textwrap.dedent(
        """\
        # syntax=docker-registry.wikimedia.org/repos/releng/blubber/buildkit:{tag}
        version: v4
        base: docker-registry.wikimedia.org/bookworm:20260816
        variants:
          production:
            runs: {{in: /srv/run}}
            builder: {{command: "make all"}}
            entrypoint: [./serve]
        """
    )
    path.write_text(text.format(tag="v1.5.1"))
    df = blubber.to_dockerfile(path, "production", base_image=BASE)
    assert "RUN make all" in df
    assert df.index('WORKDIR "/srv/run"') > df.index("USER $RUNS_UID") < df.index("ENTRYPOINT")
    path.write_text(text.format(tag="v1.1.0"))
    with pytest.raises(
        BlubberError, match=r"variants\.production\.builder\.command: must be a list"
    ):
        blubber.translate(path, "production", base_image=BASE)
    path.write_text(text.format(tag="v1.1.0").replace('builder: {command: "make all"}', ""))
    with pytest.raises(BlubberError, match=r"variants\.production\.runs\.in: .*v1\.5\.0"):
        blubber.translate(path, "production", base_image=BASE)


def test_no_syntax_line_reads_with_v0_21_1(tmp_path: Path) -> None:
    path = small(tmp_path, "v0.21.1")
    path.write_text("\n".join(path.read_text().splitlines()[1:]) + "\n")
    assert versions.rules_for(path) == versions.Rules((0, 21, 1), named=False)
    assert blubber.translate(path, "production", base_image=BASE).layout == "site-packages"


@pytest.mark.parametrize(
    ("base", "kind", "pip"),
    [
        ("docker-registry.wikimedia.org/bookworm:20260816", "bookworm", ()),
        ("docker-registry.wikimedia.org/bookworm:20240609", "bookworm", ()),
        (
            "docker-registry.wikimedia.org/amd-pytorch23:2.3.0rocm6.0-3-20260712",
            "rocm-pytorch",
            ("torch==2.13.0",),
        ),
        (
            "docker-registry.wikimedia.org/amd-pytorch25:2.5.1rocm6.1-1",
            "rocm-pytorch",
            ("torch==2.13.0",),
        ),
        ("docker-registry.wikimedia.org/httpd:2.4.67-1-20260531", "httpd", ()),
    ],
)
def test_base_stand_ins(base: str, kind: str, pip: tuple[str, ...]) -> None:
    s = bases.stand_in(base)
    assert (s.kind, s.pip) == (kind, pip)


@pytest.mark.parametrize(
    ("base", "says"),
    [
        ("docker-registry.wikimedia.org/ml/amd-vllm022:gfx90a-3", "vLLM on ROCm"),
        ("vllm/vllm-openai-cpu:v0.22.1", "not a docker-registry.wikimedia.org image"),
        ("arm64v8/debian:stable", "cannot pull it"),
        ("docker-registry.wikimedia.org/nodejs20:1", "has no stand-in"),
    ],
)
def test_bases_without_a_stand_in_say_what_to_do(base: str, says: str) -> None:
    with pytest.raises(bases.BaseImageError, match=says) as err:
        bases.stand_in(base)
    assert base in str(err.value) and "SANDBOX_BLUBBER_BUILD=frontend" in str(err.value)


def test_rocm_stand_in_installs_cpu_torch_and_tells_the_local_target(
    tmp_path: Path, monkeypatch
) -> None:
    path = small(tmp_path, "v1.0.1", system="use-system-site-packages: true")
    path.write_text(path.read_text().replace("bookworm:20260816", "amd-pytorch25:2.5.1rocm6.1-1"))
    t = blubber.translate(path, "production", base_image=BASE)
    assert "torch==2.13.0" in t.tooling  # into the wheelhouse
    assert t.dockerfile.count("python3 -m pip install --break-system-packages torch==2.13.0") == 2
    assert blubber.local_stand_in_requirements(path, "production") == ["torch==2.13.0"]
    monkeypatch.setenv("SANDBOX_TORCH_STAND_IN", "torch==2.14.1")
    assert blubber.local_stand_in_requirements(path, "production") == ["torch==2.14.1"]
    assert blubber.local_stand_in_requirements(small(tmp_path, "v1.0.1"), "production") == []


def test_git_clone_builders_use_a_mirror(tmp_path: Path, monkeypatch) -> None:
    clone = tmp_path / "descartes"
    (clone / ".git").mkdir(parents=True)
    url = "https://github.com/wikimedia/descartes.git"
    path = tmp_path / "b.yaml"
    path.write_text(
        "# syntax=docker-registry.wikimedia.org/repos/releng/blubber/buildkit:v1.5.0\n"
        "version: v4\nbase: docker-registry.wikimedia.org/bookworm:1\nvariants:\n  build:\n"
        "    builders:\n"
        f"      - custom:\n          command: [git, clone, --depth, '1', {url}, ds]\n"
        "      - custom:\n          command: [wget, https://example.org/x.bin]\n"
    )
    t = blubber.translate(path, "build", base_image=BASE)
    assert [u for _, u in t.fetches] == [url, "https://example.org/x.bin"] and not t.mirrors
    monkeypatch.setenv(mirrors.MIRRORS_ENV, f"{url}={clone}")
    t = blubber.translate(path, "build", base_image=BASE)
    (m,) = t.mirrors
    assert m.path == clone.resolve()
    run = next(ln for ln in t.dockerfile.splitlines() if "git" in ln and "clone" in ln)
    assert f"--mount=type=bind,source={m.context_path},target={m.mount_path}" in run
    assert f'"file://{m.mount_path}" "ds"' in run and url not in run
    # the exception for the clone's owner rides on upload-pack (checked in a container)
    assert 'git "clone" "--upload-pack" "git -c safe.directory=* upload-pack" "--depth"' in run
    assert [u for _, u in t.fetches] == ["https://example.org/x.bin"]  # wget: not a git clone
    monkeypatch.setenv(mirrors.MIRRORS_ENV, f"{url}={tmp_path / 'nothing'}")
    with pytest.raises(BlubberError, match="is not a git clone"):
        blubber.translate(path, "build", base_image=BASE)
    monkeypatch.setenv(mirrors.MIRRORS_ENV, "no-equals-sign")
    with pytest.raises(BlubberError, match="is not URL=PATH"):
        blubber.translate(path, "build", base_image=BASE)


# Production's files whose bases have no stand-in (vLLM on ROCm, Docker Hub), and nothing else.
NO_STAND_IN = {
    "embeddings/blubber.yaml": "vLLM on ROCm",
    "embeddings/blubber_transformers.yaml": "vLLM on ROCm",
    "policy_violation/blubber_cope_a_9b.yaml": "vLLM on ROCm",
    "policy_violation/blubber_cope_b_a4b.yaml": "vLLM on ROCm",
    "policy_violation/blubber_gpt_oss_safeguard_20b.yaml": "vLLM on ROCm",
    "qwen36/blubber.yaml": "vLLM on ROCm",
    "qwen36/blubber_cpu.yaml": "Docker Hub",
    "huggingface/blubber_m1.yaml": "Docker Hub",
}


def production_files() -> list[Path]:
    return sorted(p for p in (CHECKOUT / ".pipeline").glob("*/*.yaml"))


@pytest.mark.skipif(not CHECKOUT.is_dir(), reason="../shared/inference-services is not here")
@pytest.mark.parametrize("path", production_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_production_blubber_file_translates_or_says_why(path: Path) -> None:
    rel = f"{path.parent.name}/{path.name}"
    rules = versions.rules_for(path)
    for variant in blubber.variants(path):
        try:
            t = blubber.translate(path, variant, base_image=BASE)
        except BlubberError as e:
            assert rel in NO_STAND_IN, f"{rel} {variant}: {e}"
            assert NO_STAND_IN[rel] in str(e) or "not a docker-registry" in str(e)
            continue
        assert t.blubber_version == rules.tag
        assert t.layout == ("venv" if rules.version >= (0, 23, 0) else "site-packages")
    if rel in NO_STAND_IN:  # its production variant is the one without a stand-in
        with pytest.raises(BlubberError, match="no stand-in"):
            blubber.translate(path, "production", base_image=BASE)


@pytest.mark.skipif(not CHECKOUT.is_dir(), reason="../shared/inference-services is not here")
def test_production_covers_every_version_it_names() -> None:
    tags = {versions.rules_for(p).tag for p in production_files()}
    assert tags == {
        "v0.21.0",
        "v0.21.1",
        "v0.22.0",
        "v0.23.0",
        "v0.24.0",
        "v1.0.1",
        "v1.1.0",
        "v1.5.0",
        "v1.5.1",
    }


def test_a_fetch_offline_without_a_mirror_is_an_error_naming_the_command(tmp_path: Path) -> None:
    from sandbox import images
    from sandbox.errors import RunError

    path = tmp_path / "b.yaml"
    path.write_text(
        "# syntax=docker-registry.wikimedia.org/repos/releng/blubber/buildkit:v1.5.0\n"
        "version: v4\nbase: docker-registry.wikimedia.org/bookworm:1\nvariants:\n  build:\n"
        "    builder: {command: [git, clone, 'https://git.example.invalid/x.git', x]}\n"
    )
    t = blubber.translate(path, "build", base_image=BASE)
    with pytest.raises(RunError) as err:
        images._check_fetches(t)
    message = str(err.value)
    assert 'git "clone" "https://git.example.invalid/x.git" "x"' in message
    assert "SANDBOX_GIT_MIRRORS='https://git.example.invalid/x.git=/path/to/clone'" in message
