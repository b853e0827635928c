"""sandbox.images.blubber: the offline Blubber v4 → Dockerfile translation.

Semantics checked against wikimedia/blubber@v0.21.1 (the version the files below name on their
`# syntax=` lines): config/reader.go (defaults), config/variant.go (users per phase),
config/python.go, config/artifacts.go, config/apt.go, build/macros.go. The v0.23+ rules and the
hostile-input corpus are in test_blubber_versions.py and test_blubber_hostile.py.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from sandbox.images import blubber
from sandbox.images.blubber import BlubberError
from tests.blubber_support import inference_services_blubber

pytestmark = pytest.mark.unit

BASE = "ml-sandbox/bookworm:latest"
BOOKWORM = "docker-registry.wikimedia.org/bookworm:20260816"

LANGID_LIKE = inference_services_blubber(
    "echo",
    entrypoint=["./entrypoint.sh", "echo/model.py"],
    build_packages=["python3-pip", "build-essential"],
    extra_copies=[("model_server_entrypoint.sh", "entrypoint.sh")],
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "blubber.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def stages(dockerfile: str) -> dict[str, list[str]]:
    """Stage name → its instruction lines (comments and blanks dropped)."""
    out: dict[str, list[str]] = {}
    current = ""
    for line in dockerfile.splitlines():
        if line.startswith("FROM "):
            current = line.split(" AS ")[1] if " AS " in line else "<final>"
            out[current] = []
        if current and line and not line.startswith("#"):
            out[current].append(line)
    return out


def index(lines: list[str], pattern: str) -> int:
    for i, line in enumerate(lines):
        if re.search(pattern, line):
            return i
    raise AssertionError(f"no line matches {pattern!r} in:\n" + "\n".join(lines))


def test_langid_like_file(tmp_path: Path) -> None:
    t = blubber.translate(write(tmp_path, LANGID_LIKE), "production", base_image=BASE)
    st = stages(t.dockerfile)
    assert list(st) == ["build", "production"] == list(t.stages)
    build, prod = st["build"], st["production"]
    assert build[0] == f"FROM {BASE} AS build" and prod[0] == f"FROM {BASE} AS production"
    # As root first: apt, then pip tooling (blubber upgrades it where requirements are installed).
    assert build[1] == "USER root"
    apt = index(build, r"^RUN apt-get update && apt-get install -y python3-pip build-essential &&")
    tooling = index(build, r"pip install -U 'setuptools!=60\.9\.0'.*pip install -U wheel tox pip$")
    lives_user = index(build, r"useradd .* -u \$LIVES_UID \$LIVES_AS")
    drop = build.index("USER $LIVES_UID")
    assert apt < tooling < lives_user < drop
    assert "ARG LIVES_UID=65533" in build and "ARG RUNS_UID=900" in build
    # As the lives user: WORKDIR, runs.environment, requirements copied where pip finds them.
    assert build[drop + 2 : drop + 4] == ['WORKDIR "/srv/app"', 'ENV PYTHONPATH="/srv/app"']
    reqs = index(build, r'^COPY --chown=\$LIVES_UID:\$LIVES_GID \["src/models/echo/requirements')
    assert build[reqs].endswith('"src/models/echo/"]')
    pip = index(build, r"pip wheel -r src/models/echo/requirements.txt -r python/req")
    assert re.search(r"install --target /opt/lib/python/site-packages -r", build[pip])
    assert "--system" not in build[pip]
    assert reqs < pip
    assert "if [ -f /run/secrets/ca ]" in build[pip]  # wheelhouse or CA
    # The production stage: no pip install, site-packages from build, code from local.
    assert not any("pip" in line and "install" in line for line in prod)
    assert "apt-get install -y python3 &&" in prod[index(prod, "apt-get install")]
    assert not any("wmf-certificates" in line for line in prod)
    copies = [line for line in prod if line.startswith("COPY")]
    assert copies == [
        'COPY --chown=$LIVES_UID:$LIVES_GID ["src/models/echo/", "echo/"]',
        'COPY --chown=$LIVES_UID:$LIVES_GID ["python", "python/"]',
        'COPY --chown=$LIVES_UID:$LIVES_GID --from=build ["/opt/lib/python/site-packages", '
        '"/opt/lib/python/site-packages"]',
        'COPY --chown=$LIVES_UID:$LIVES_GID ["model_server_entrypoint.sh", "entrypoint.sh"]',
    ]
    assert (
        'ENV PATH="/opt/lib/python/site-packages/bin:${PATH}" '
        'PYTHONPATH="/opt/lib/python/site-packages:${PYTHONPATH}"'
    ) in prod
    # runs.insecurely: the image runs as the lives user (somebody, 65533), never the runs user.
    assert [line for line in prod if line.startswith("USER")] == ["USER root", "USER $LIVES_UID"]
    assert t.user == "65533:65533"
    assert prod[-2] == 'ENTRYPOINT ["./entrypoint.sh", "echo/model.py"]'
    assert prod[-1].startswith('LABEL blubber.variant="production"')
    assert 'org.ml-sandbox.blubber.version="v0.21.1"' in prod[-1]
    assert "docker-registry.wikimedia.org/bookworm:20260816" in prod[-1]
    assert t.requirements == ("src/models/echo/requirements.txt", "python/requirements.txt")
    assert set(t.local_sources) >= {"src/models/echo/", "python", "model_server_entrypoint.sh"}


def test_secure_runs_user_and_custom_ids(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: v4
        base: docker-registry.wikimedia.org/bookworm:20260816
        lives: {in: /srv/service, as: app, uid: 1000, gid: 1000}
        runs: {uid: 1001}
        variants:
          production:
            copies: [local]
            entrypoint: [python3, model.py]
        """,
    )
    t = blubber.translate(path, "production", base_image=BASE)
    (prod,) = stages(t.dockerfile).values()
    assert prod[0] == f"FROM {BASE}"  # one stage: unnamed
    assert 'WORKDIR "/srv/service"' in prod and 'ENV HOME="/home/app"' in prod
    assert "ARG LIVES_UID=1000" in prod and "ARG RUNS_UID=1001" in prod
    assert "ARG RUNS_GID=900" in prod  # blubber's default, not overridden
    copy = prod.index('COPY --chown=$LIVES_UID:$LIVES_GID [".", "."]')
    user = prod.index("USER $RUNS_UID")
    assert copy < user < prod.index('ENTRYPOINT ["python3", "model.py"]')
    assert prod[user + 1] == 'ENV HOME="/home/runuser"'
    assert t.user == "1001:900"


def test_includes_merge_and_copies_shorthand(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: v4
        base: docker-registry.wikimedia.org/bookworm:20260816
        runs: {environment: {AA: top, BB: top}}
        apt: {packages: [curl]}
        variants:
          common:
            apt: {packages: [git]}
            runs: {environment: {BB: common}}
            entrypoint: [first]
          build:
            includes: [common]
            python:
              version: python3
              requirements: [requirements.txt]
              use-system-flag: true
            builder:
              command: [sh, -c, "echo built > /srv/app/built.txt"]
          production:
            includes: [common]
            copies: [build]
            entrypoint: [second]
        """,
    )
    st = stages(blubber.to_dockerfile(path, "production", base_image=BASE))
    build, prod = st["build"], st["production"]
    assert "apt-get install -y curl git" in build[index(build, "apt-get install")]
    assert 'ENV AA="top" BB="common"' in prod
    pip = index(build, r"pip install --system --target")
    # A custom builder: its first word is shell text, its arguments quoted as blubber quotes them.
    assert index(build, r'^RUN sh "-c" "echo built > /srv/app/built.txt"') > pip
    assert [line for line in prod if line.startswith("COPY")] == [
        'COPY --chown=$LIVES_UID:$LIVES_GID --from=build ["/srv/app", "/srv/app"]',
        'COPY --chown=$LIVES_UID:$LIVES_GID --from=build ["/opt/lib", "/opt/lib"]',
    ]
    assert prod[-2] == 'ENTRYPOINT ["second"]'


def test_apt_release_targets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: v4
        base: docker-registry.wikimedia.org/bookworm:20260816
        variants:
          var:
            apt:
              packages:
                default: [curl]
                bookworm-backports: [golang]
        """,
    )
    df = blubber.to_dockerfile(path, "var", base_image=BASE)
    # Targets sorted, as blubber's apt.go does.
    assert "apt-get install -y -t bookworm-backports golang && apt-get install -y curl" in df


@pytest.mark.parametrize(
    ("yaml_text", "key", "says"),
    [
        (
            "variants:\n  production:\n    node: {requirements: [package.json]}\n",
            "variants.production.node",
            "the sandbox's translation does not support",
        ),
        ("node: {env: production}\nvariants: {var: {}}\n", "node", "does not support"),
        (
            "variants:\n  build:\n    python: {version: python3, poetry: {version: 1.1}}\n",
            "variants.build.python.poetry",
            "does not support",
        ),
        (
            "variants:\n  var:\n    apt: {sources: [{url: 'http://x'}]}\n",
            "variants.var.apt.sources",
            "does not support",
        ),
        # runs.in exists from v1.5.0 on; this file has no syntax line: v0.21.1's rules.
        (
            "variants:\n  var:\n    runs: {in: /tmp}\n",
            "variants.var.runs.in",
            "from blubber v1.5.0",
        ),
        (
            "variants:\n  var:\n    builders: [{node: {}}]\n",
            "variants.var.builders[0].node",
            "does not support",
        ),
        (
            "variants:\n  var:\n    copies: [{from: local, source: a, mode: '0644'}]\n",
            "variants.var.copies[0].mode",
            "is not a key blubber v0.21.1 knows",
        ),
    ],
)
def test_unknown_and_unsupported_keys_are_named(
    tmp_path: Path, yaml_text: str, key: str, says: str
) -> None:
    path = write(
        tmp_path, "version: v4\nbase: docker-registry.wikimedia.org/bookworm:1\n" + yaml_text
    )
    with pytest.raises(BlubberError) as err:
        blubber.to_dockerfile(path, "production", base_image=BASE)
    message = str(err.value)
    assert message.startswith(f"{path}: {key}: ")
    assert says in message


@pytest.mark.parametrize(
    ("yaml_text", "variant", "message"),
    [
        ("version: v3\nvariants: {var: {}}\n", "var", 'config version "v3" is unsupported'),
        (f"version: v4\nbase: {BOOKWORM}\nvariants: {{aaa: {{}}}}\n", "bbb", "no variant 'bbb'"),
        (
            f"version: v4\nbase: {BOOKWORM}\n"
            "variants: {aaa: {includes: [bbb]}, bbb: {includes: [aaa]}}\n",
            "aaa",
            "a cycle: aaa → bbb → aaa",
        ),
        (
            f"version: v4\nbase: {BOOKWORM}\nvariants: {{aaa: {{copies: [nowhere]}}}}\n",
            "aaa",
            'variants.aaa.copies: references an unknown variant "nowhere"',
        ),
        ("version: v4\nvariants: {aaa: {}}\n", "aaa", "no `base`"),
        (
            f"version: v4\nbase: {BOOKWORM}\nvariants: {{aaa: {{runs: {{insecurely: maybe}}}}}}\n",
            "aaa",
            "true or false",
        ),
        ("version: v4\n  bad: [\n", "a", "is not valid YAML"),
    ],
)
def test_bad_files_are_clear_errors(
    tmp_path: Path, yaml_text: str, variant: str, message: str
) -> None:
    path = tmp_path / "blubber.yaml"
    path.write_text(yaml_text)
    with pytest.raises(BlubberError, match=re.escape(message)):
        blubber.translate(path, variant, base_image=BASE)


def test_frontend_line(tmp_path: Path) -> None:
    assert (
        blubber.frontend(write(tmp_path, LANGID_LIKE))
        == "docker-registry.wikimedia.org/repos/releng/blubber/buildkit:v0.21.1"
    )
    assert blubber.frontend(write(tmp_path, "version: v4\n")) is None


def test_image_tag_follows_the_copied_files_only(tmp_path: Path) -> None:
    from sandbox import images
    from sandbox.errors import RunError

    root = tmp_path / "repo"
    (root / "src" / "models" / "echo").mkdir(parents=True)
    (root / "python").mkdir()
    for rel in ("src/models/echo/requirements.txt", "python/requirements.txt"):
        (root / rel).write_text("six==1.17.0\n")
    (root / "src" / "models" / "echo" / "model.py").write_text("print(1)\n")
    (root / "python" / "helper.py").write_text("X = 1\n")
    (root / "model_server_entrypoint.sh").write_text("#!/bin/sh\n")
    (root / "README.md").write_text("not copied\n")
    path = write(tmp_path, LANGID_LIKE)
    tag = images.Recipe("ml-sandbox/echo", path, "production", root).tag()
    assert tag.startswith("ml-sandbox/echo:")
    (root / "README.md").write_text("changed, still not copied\n")
    assert images.Recipe("ml-sandbox/echo", path, "production", root).tag() == tag
    (root / "python" / "helper.py").write_text("X = 2\n")
    assert images.Recipe("ml-sandbox/echo", path, "production", root).tag() != tag
    (root / "model_server_entrypoint.sh").unlink()
    with pytest.raises(RunError, match=r"copies model_server_entrypoint\.sh, which is not"):
        images.Recipe("ml-sandbox/echo", path, "production", root).tag()


def test_the_real_frontend_is_an_opt_in_with_a_clear_error(tmp_path, monkeypatch):
    """SANDBOX_BLUBBER_BUILD=frontend builds with `docker build -f blubber.yaml` (the frontend
    on the `# syntax=` line); a file without that line is a clear error, a bad mode too."""
    from sandbox import images
    from sandbox.errors import RunError

    monkeypatch.setenv("SANDBOX_BLUBBER_BUILD", "frontend")
    assert images.blubber_mode() == "frontend"
    plain = tmp_path / "blubber.yaml"
    plain.write_text(f"version: v4\nbase: {BOOKWORM}\nvariants: {{production: {{}}}}\n")
    with pytest.raises(RunError, match="no `# syntax=` line"):
        images.build(images.Recipe("a", plain, "production", tmp_path))
    monkeypatch.setenv("SANDBOX_BLUBBER_BUILD", "magic")
    with pytest.raises(RunError, match="translate' or 'frontend'"):
        images.blubber_mode()
