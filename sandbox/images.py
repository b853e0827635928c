"""Container images of the isvcs: one per component, built from `images/Dockerfile`.

Shared by the docker and minikube targets. An image's tag is a content hash of everything that goes
into it (the Dockerfile, the runtime dependency pins, the copied sources, the build args), so it is
computed from the checkout alone (no daemon) and an unchanged component keeps its tag: the docker
target reuses it, the minikube target (`dev.local/<image>:<hash>`) rolls no new revision.

Builds need BuildKit and go through a staged build context under the cache dir: the files the
Dockerfile copies plus `wheelhouse/` (requirements.txt and, offline mode, the wheels). Python
dependencies come from a wheelhouse prepared on the host with the host's pip (which knows this
machine's proxy, mirror and CA), so the build itself needs no network. `SANDBOX_PIP_SOURCE=index`
lets pip in the build use the index instead; the host CA bundle is passed as the BuildKit secret
`ca`, never stored in a layer.

An isvc that brings its own Blubber file is built from it instead (`build_blubber_image`): the
file's variant translated offline by `sandbox.isvc.blubber`, with the same wheelhouse and CA-secret
mechanisms for its pip.

CLI: `python -m sandbox.images {build,tags,prune,wheelhouse}`; see docs/docker.md.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sandbox import catalog
from sandbox.blubber import mirrors
from sandbox.catalog import CatalogError, Service
from sandbox.errors import RunError
from sandbox.isvc import blubber
from sandbox.paths import REPO_ROOT, cache_dir, run_dir
from sandbox.progress import step

DOCKERFILE = Path("images/Dockerfile")
DEFAULT_BASE_IMAGE = "ml-sandbox/bookworm:latest"
IMAGE_NAMESPACE = "ml-sandbox"
REPLAY_IMAGE = f"{IMAGE_NAMESPACE}/mediawiki-replay"
# Debian bookworm's python3: the wheelhouse is resolved for it, whatever the host runs.
PYTHON_VERSION = "3.11"
# Newest glibc a wheel may need: bookworm's 2.36. pip does not expand a `--platform` tag to the
# older manylinux tags it implies, so every accepted tag is listed.
GLIBC_MINOR = 36
# Dependencies of the host tooling only: kserve-storage stages models (the storage-initializer's
# job in production); uv builds the local target's per-isvc venvs. The model servers need neither.
HOST_ONLY_DEPENDENCIES = frozenset({"kserve-storage", "uv"})
# Never copied into an image (also in .dockerignore, for builds by hand).
IGNORED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"})
IGNORED_SUFFIXES = frozenset({".pyc", ".bin"})
HASH_LENGTH = 16
DEFAULT_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


# -- what an image is made of ------------------------------------------------------------------
@dataclass(frozen=True)
class ImageSpec:
    """One image: its name, the Dockerfile stage, build args and the repo paths it copies."""

    name: str
    stage: str
    sources: tuple[str, ...]
    build_args: dict[str, str] = field(default_factory=dict)

    def files(self) -> list[Path]:
        """The repo-relative files that go into the build context (besides the wheelhouse)."""
        out = [DOCKERFILE]
        for src in self.sources:
            path = REPO_ROOT / src
            if path.is_file():
                out.append(Path(src))
                continue
            out.extend(
                p.relative_to(REPO_ROOT) for p in sorted(path.rglob("*")) if _included(p, path)
            )
        return out


def _included(path: Path, root: Path) -> bool:
    rel = path.relative_to(root)
    return (
        path.is_file()
        and not IGNORED_DIRS.intersection(rel.parts)
        and path.suffix not in IGNORED_SUFFIXES
    )


def base_image() -> str:
    """The image every isvc image builds FROM: the local debootstrapped bookworm by default."""
    return os.environ.get("SANDBOX_BASE_IMAGE", DEFAULT_BASE_IMAGE)


def image_name(service: Service, component: str) -> str:
    """`ml-sandbox/<isvc>-<component>`, like production's one image per component."""
    return f"{IMAGE_NAMESPACE}/{service.name}-{component}"


def component_spec(service: Service, component: str) -> ImageSpec:
    comp = getattr(service.components, component, None)
    if comp is None:
        known = ", ".join(n for n, _ in service.component_items())
        raise CatalogError(f"{service.name} has no component {component!r}; known: {known}")
    service_dir = service.dir.resolve().relative_to(REPO_ROOT)
    return ImageSpec(
        name=image_name(service, component),
        stage="component",
        sources=("sandbox/__init__.py", "sandbox/serving", str(service_dir)),
        build_args={"SERVICE": service.name, "ENTRYPOINT": comp.entrypoint},
    )


def replay_spec() -> ImageSpec:
    return ImageSpec(
        name=REPLAY_IMAGE,
        stage="mediawiki-replay",
        sources=("sandbox/__init__.py", "sandbox/mediawiki"),
    )


def runtime_requirements() -> list[str]:
    """The pinned runtime dependencies of pyproject.toml that the images need."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    reqs = []
    for req in project["dependencies"]:
        name = req.split("==")[0].split("[")[0].split(">")[0].split("<")[0].strip()
        if name.lower() not in HOST_ONLY_DEPENDENCIES:
            reqs.append(req)
    return reqs


def content_hash(spec: ImageSpec) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([spec.stage, spec.build_args, base_image()], sort_keys=True).encode())
    h.update("\n".join(runtime_requirements()).encode())
    for rel in spec.files():
        h.update(f"\0{rel.as_posix()}\0".encode())
        h.update((REPO_ROOT / rel).read_bytes())
    return h.hexdigest()[:HASH_LENGTH]


def spec_tag(spec: ImageSpec, registry: str | None = None) -> str:
    name = f"{registry.rstrip('/')}/{spec.name}" if registry else spec.name
    return f"{name}:{content_hash(spec)}"


def image_tag(service: Service, component: str, registry: str | None = None) -> str:
    """`ml-sandbox/<isvc>-<component>:<content hash>`, or under `registry` (e.g. `dev.local`).
    A component on its own requirements: the content hash of its translated Blubber file."""
    comp = dict(service.component_items()).get(component)
    if comp is not None and comp.stock and comp.image is not None:
        blubber_file = service.source_dir / comp.image.blubber
        name = image_name(service, component)
        return blubber_image_tag(
            name, blubber_file, comp.image.variant, service.source_dir, registry
        )
    return spec_tag(component_spec(service, component), registry)


def replay_image_tag(registry: str | None = None) -> str:
    return spec_tag(replay_spec(), registry)


# -- the docker CLI ----------------------------------------------------------------------------
def docker_binary() -> str:
    """The docker CLI: $SANDBOX_DOCKER, else `docker` on PATH."""
    explicit = os.environ.get("SANDBOX_DOCKER")
    if explicit:
        return explicit
    found = shutil.which("docker")
    if not found:
        raise RunError("the docker CLI is not installed (apt-get install docker.io)")
    return found


def docker(
    *args: str, env: dict[str, str] | None = None, check: bool = True, binary: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI, capturing its output; a failure is a RunError with its stderr."""
    cmd = [binary or docker_binary(), *args]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
        )
    except OSError as e:
        raise RunError(f"cannot run {cmd[0]}: {e}") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise RunError(f"`docker {' '.join(args[:3])}` failed: {detail}")
    return proc


def daemon_answers(env: dict[str, str] | None = None) -> bool:
    try:
        proc = docker("info", "--format", "{{.ServerVersion}}", env=env, check=False)
    except RunError:
        return False
    return proc.returncode == 0


def image_exists(ref: str, env: dict[str, str] | None = None) -> bool:
    return docker("image", "inspect", ref, env=env, check=False).returncode == 0


def _client_major(binary: str, env: dict[str, str] | None) -> int | None:
    proc = docker("version", "--format", "{{.Client.Version}}", env=env, check=False, binary=binary)
    try:
        return int(proc.stdout.strip().split(".")[0])
    except ValueError:
        return None


def buildkit_binary(env: dict[str, str] | None = None) -> str:
    """A docker CLI that builds with BuildKit: one with the buildx plugin, or a 18.09-22.x client
    (BuildKit built in). Docker >= 23 without buildx only has the legacy builder, so fall back to
    Debian's client (/usr/bin/docker of docker.io) when PATH's docker is such a one."""
    candidates = [docker_binary()]
    if not os.environ.get("SANDBOX_DOCKER") and Path("/usr/bin/docker").is_file():
        candidates.append("/usr/bin/docker")
    for binary in dict.fromkeys(candidates):
        if docker("buildx", "version", env=env, check=False, binary=binary).returncode == 0:
            return binary
        major = _client_major(binary, env)
        if major is not None and major < 23:
            return binary
    raise RunError(
        f"no docker CLI here builds with BuildKit ({', '.join(candidates)}): install the buildx "
        "plugin (docker-buildx-plugin, or docker-buildx on Debian trixie), or point SANDBOX_DOCKER "
        "at a client with BuildKit built in (docker.io 20.10's /usr/bin/docker)"
    )


def daemon_arch(env: dict[str, str] | None = None) -> str:
    proc = docker("info", "--format", "{{.Architecture}}", env=env, check=False)
    arch = proc.stdout.strip() if proc.returncode == 0 else ""
    arch = arch or platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)


def ca_bundle() -> Path | None:
    """The CA bundle handed to builds as the `ca` secret (for pip behind a TLS-intercepting
    proxy): $SANDBOX_CA_BUNDLE, $PIP_CERT, $SSL_CERT_FILE, $REQUESTS_CA_BUNDLE or the system's."""
    for var in ("SANDBOX_CA_BUNDLE", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = os.environ.get(var)
        if value and Path(value).is_file():
            return Path(value)
    return DEFAULT_CA_BUNDLE if DEFAULT_CA_BUNDLE.is_file() else None


# -- the wheelhouse ----------------------------------------------------------------------------
def wheelhouse_dir() -> Path:
    return Path(os.environ.get("SANDBOX_WHEELHOUSE", cache_dir() / "wheelhouse"))


def pip_source() -> str:
    source = os.environ.get("SANDBOX_PIP_SOURCE", "wheelhouse")
    if source not in ("wheelhouse", "index"):
        raise RunError(f"SANDBOX_PIP_SOURCE must be 'wheelhouse' or 'index', not {source!r}")
    return source


def _constraints() -> list[str]:
    """The versions the project venv runs (so the images run what the tests ran), if we run in a
    venv; editable and direct-URL installs left out."""
    if sys.prefix == sys.base_prefix:
        return []
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable", "--no-color"],
        capture_output=True,
        text=True,
        check=False,
    )
    return sorted(
        line for line in proc.stdout.splitlines() if "==" in line and not line.startswith("-")
    )


def _write_requirements(dest: Path, constraints: list[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "constraints.txt").write_text("".join(f"{c}\n" for c in constraints))
    lines = ["# The images' runtime dependencies (pyproject.toml), by sandbox/images.py."]
    lines += ["-c constraints.txt", *runtime_requirements()]
    (dest / "requirements.txt").write_text("\n".join(lines) + "\n")


def manylinux_platforms(arch: str) -> list[str]:
    """Every manylinux platform tag whose wheels run on bookworm, newest first."""
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(GLIBC_MINOR, 4, -1)]
    legacy = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
    if arch in ("x86_64", "i686"):
        tags += [f"{name}_{arch}" for name in legacy]
    elif arch == "aarch64":
        tags.append(f"manylinux2014_{arch}")
    return tags


def ensure_wheelhouse(
    dest: Path | None = None, arch: str | None = None, force: bool = False
) -> Path:
    """Download the images' dependencies as wheels for bookworm's Python, with the host's pip (its
    index, proxy and CA settings). By default into `<wheelhouse dir>/<hash of the pins>`, one
    folder per set of pins, so checkouts with different pins on one machine never rewrite each
    other's wheels; the download runs under a lock and lands by rename."""
    arch = arch or daemon_arch()
    constraints = _constraints()
    stamp = hashlib.sha256(
        json.dumps([runtime_requirements(), constraints, arch, PYTHON_VERSION]).encode()
    ).hexdigest()
    if dest is None:
        root = wheelhouse_dir()
        # A wheelhouse prepared elsewhere (`--dest DIR`, then SANDBOX_WHEELHOUSE=DIR) is used as is.
        dest = root if (root / ".stamp").is_file() else root / stamp[:HASH_LENGTH]
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(dest.with_name(f".{dest.name}.lock")):
        if not force and (dest / ".stamp").is_file() and (dest / ".stamp").read_text() == stamp:
            return dest
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            _write_requirements(tmp, constraints)
            cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check"]
            cmd += ["--quiet", "--only-binary=:all:"]
            for tag in manylinux_platforms(arch):
                cmd += ["--platform", tag]
            cmd += ["--python-version", PYTHON_VERSION, "--implementation", "cp"]
            cmd += ["--abi", f"cp{PYTHON_VERSION.replace('.', '')}"]
            cmd += ["-d", str(tmp), "-r", str(tmp / "requirements.txt")]
            with step(
                f"downloading the images' wheels for Python {PYTHON_VERSION}/{arch} into {dest}"
            ):
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    errors = [ln for ln in proc.stderr.splitlines() if not ln.startswith("WARNING")]
                    raise RunError("pip download failed:\n" + "\n".join(errors[-15:]))
            (tmp / ".stamp").write_text(stamp)
            shutil.rmtree(dest, ignore_errors=True)
            tmp.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (two checkouts, two shells) on a cache entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


# -- building ----------------------------------------------------------------------------------
def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def context_dir(spec: ImageSpec) -> Path:
    """The build context of `spec`: one directory per image and content hash (a rebuild of the same
    content reuses it, so BuildKit's context transfer is incremental); `build_spec` holds its lock
    while it is staged and built."""
    return cache_dir() / "build-context" / f"{spec.name.replace('/', '_')}-{content_hash(spec)}"


def stage_context(spec: ImageSpec, wheelhouse: Path | None) -> Path:
    """Lay out `spec`'s build context like the repository, with `wheelhouse/`."""
    ctx = context_dir(spec)
    shutil.rmtree(ctx, ignore_errors=True)
    for rel in spec.files():
        _link_or_copy(REPO_ROOT / rel, ctx / rel)
    if wheelhouse is not None:
        for path in sorted(wheelhouse.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                _link_or_copy(path, ctx / "wheelhouse" / path.name)
    else:
        _write_requirements(ctx / "wheelhouse", _constraints())
    return ctx


def build_log(spec: ImageSpec) -> Path:
    return run_dir() / "logs" / f"build-{spec.name.replace('/', '_')}.log"


def ensure_base_image(env: dict[str, str] | None = None) -> None:
    base = base_image()
    if image_exists(base, env):
        return
    if base == DEFAULT_BASE_IMAGE:
        raise RunError(
            f"the base image {base} is missing: build it with `sudo scripts/build-base-image.sh` "
            "(or set SANDBOX_BASE_IMAGE to a bookworm image you can pull)"
        )
    with step(f"pulling the base image {base}"):
        docker("pull", base, env=env)


def build_spec(
    spec: ImageSpec,
    *,
    force: bool = False,
    no_cache: bool = False,
    registry: str | None = None,
    env: dict[str, str] | None = None,
    wheelhouse: Path | None = None,
) -> str:
    """Build one image unless its content-hash tag exists (or `force`); returns the tag.
    `no_cache`: no BuildKit layer cache either (a cold build, for measuring)."""
    tag = spec_tag(spec)
    wanted = spec_tag(spec, registry)
    if not force and image_exists(wanted, env):
        print(f"✓ {wanted} is up to date", file=sys.stderr)
        return wanted
    binary = buildkit_binary(env)
    with _file_lock(context_dir(spec).with_suffix(".lock")):
        _build(spec, binary, wanted, tag, no_cache, env, stage_context(spec, wheelhouse))
    return wanted


def _build(
    spec: ImageSpec,
    binary: str,
    wanted: str,
    tag: str,
    no_cache: bool,
    env: dict[str, str] | None,
    ctx: Path,
) -> None:
    cmd = [binary, "build", "--progress=plain", "-f", str(ctx / DOCKERFILE), "--target", spec.stage]
    cmd += ["--build-arg", f"BASE_IMAGE={base_image()}"]
    if no_cache:
        cmd.append("--no-cache")
    for key, value in spec.build_args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    bundle = ca_bundle()
    if bundle is not None:
        cmd += ["--secret", f"id=ca,src={bundle}"]
    cmd += ["--label", f"org.ml-sandbox.content-hash={content_hash(spec)}", "-t", tag]
    if wanted != tag:
        cmd += ["-t", wanted]
    cmd.append(str(ctx))
    _run_build(cmd, build_log(spec), wanted, env)
    shutil.rmtree(ctx, ignore_errors=True)


def _run_build(cmd: list[str], log: Path, wanted: str, env: dict[str, str] | None) -> None:
    """Run a `docker build` command, its output into `log`; a failure shows the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with step(f"building {wanted} (log: {log})"), log.open("w") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {}), "DOCKER_BUILDKIT": "1"},
            check=False,
        )
    if proc.returncode != 0:
        lines = log.read_text(errors="replace").splitlines()
        raise RunError(f"building {wanted} failed; last lines of {log}:\n" + _tail(lines, 25))


def _tail(lines: list[str], n: int) -> str:
    return "\n".join(lines[-n:])


def _prepare(env: dict[str, str] | None) -> Path | None:
    if not daemon_answers(env):
        raise RunError("no Docker daemon answers (`docker info` failed); is dockerd running?")
    ensure_base_image(env)
    if pip_source() == "wheelhouse":
        return ensure_wheelhouse(arch=daemon_arch(env))
    return None


def _needs_build(specs: list[ImageSpec], registry: str | None, env: dict[str, str] | None) -> bool:
    return any(not image_exists(spec_tag(s, registry), env) for s in specs)


def build_specs(
    specs: list[ImageSpec],
    *,
    force: bool = False,
    no_cache: bool = False,
    registry: str | None = None,
    env: dict[str, str] | None = None,
) -> list[str]:
    if not force and not _needs_build(specs, registry, env):
        return [spec_tag(s, registry) for s in specs]
    wheelhouse = _prepare(env)
    return [
        build_spec(
            s, force=force, no_cache=no_cache, registry=registry, env=env, wheelhouse=wheelhouse
        )
        for s in specs
    ]


def build_images(
    service: Service,
    *,
    force: bool = False,
    registry: str | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, str]:
    """Build every component image of `service` (skipping those whose tag exists): a component
    on its own requirements from its Blubber file, as production builds it; the others from the
    sandbox's Dockerfile.

    `registry`: also tag `<registry>/<image>:<hash>` (minikube: `dev.local`); `env`: extra env for
    the docker CLI (e.g. `minikube docker-env`'s DOCKER_HOST). Returns {component: tag}.
    """
    names = [n for n, c in service.component_items() if not c.stock]
    specs = [component_spec(service, n) for n in names]
    tags = dict(
        zip(names, build_specs(specs, force=force, registry=registry, env=env), strict=True)
    )
    for name, comp in service.component_items():
        if comp.stock:
            tags[name] = build_stock_image(service, name, force=force, registry=registry, env=env)
    return {n: tags[n] for n, _ in service.component_items()}


def build_stock_image(
    service: Service,
    name: str,
    *,
    force: bool = False,
    registry: str | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """A component on its own requirements, built from its own Blubber file."""
    comp = service.components.predictor if name == "predictor" else service.components.transformer
    assert comp is not None
    if comp.image is None:
        raise RunError(
            f"{service.name}'s {name} runs on its own requirements, and its image is built from "
            "its Blubber file: add `image: {blubber: <path to blubber.yaml>, variant: "
            f"production}}` under components.{name} in {service.dir / 'service.yaml'}"
        )
    return build_blubber_image(
        service.source_dir / comp.image.blubber,
        comp.image.variant,
        context=service.source_dir,
        name=image_name(service, name),
        force=force,
        registry=registry,
        env=env,
    )


def build_replay_image(
    *, force: bool = False, registry: str | None = None, env: dict[str, str] | None = None
) -> str:
    return build_specs([replay_spec()], force=force, registry=registry, env=env)[0]


def all_specs(services: list[Service]) -> Iterator[ImageSpec]:
    for service in services:
        for name, comp in service.component_items():
            if not comp.stock:
                yield component_spec(service, name)
    yield replay_spec()


def prune(services: list[Service], env: dict[str, str] | None = None) -> list[str]:
    """Remove the images of these isvcs (and the replay server) whose tag is no longer current;
    images a container still uses are kept. Returns the removed references."""
    current = {spec_tag(s) for s in all_specs(services)}
    names = {s.name for s in all_specs(services)}
    out = docker("images", "--format", "{{.Repository}}:{{.Tag}}", env=env).stdout.split()
    stale = [ref for ref in out if ref.rsplit(":", 1)[0] in names and ref not in current]
    removed = []
    for ref in stale:
        if docker("image", "rm", ref, env=env, check=False).returncode == 0:
            removed.append(ref)
    return removed


# -- images from an isvc's own Blubber file ---------------------------------------------------
BLUBBER_DOCKERFILE = ".ml-sandbox-blubber.Dockerfile"


def _local_files(context: Path, sources: Iterable[str]) -> list[Path]:
    """The context-relative files behind the Blubber file's local sources (files or folders)."""
    out: dict[Path, None] = {}
    for src in sources:
        path = (context / src).resolve()
        if not path.is_relative_to(context.resolve()):
            raise RunError(f"{src} is outside the build context {context}")
        if path.is_file():
            out[path.relative_to(context.resolve())] = None
        elif path.is_dir():
            for p in sorted(path.rglob("*")):
                if _included(p, path):
                    out[p.relative_to(context.resolve())] = None
        else:
            raise RunError(f"the Blubber file copies {src}, which is not in {context}")
    return list(out)


def blubber_image_tag(
    name: str, blubber_file: Path, variant: str, context: Path, registry: str | None = None
) -> str:
    """`<name>:<content hash>` of the translated Dockerfile and every local file it copies."""
    translation = blubber.translate(blubber_file, variant, base_image=base_image())
    h = hashlib.sha256(translation.dockerfile.encode())
    for rel in _local_files(context, translation.local_sources):
        h.update(f"\0{rel.as_posix()}\0".encode())
        h.update((context / rel).read_bytes())
    ref = f"{registry.rstrip('/')}/{name}" if registry else name
    return f"{ref}:{h.hexdigest()[:HASH_LENGTH]}"


def ensure_blubber_wheelhouse(
    context: Path, translation: blubber.Translation, arch: str
) -> Path | None:
    """Wheels for the Blubber build's pip (its requirement files and pip tooling), downloaded by
    the host's pip for bookworm's Python; cached by content. None when some requirement has no
    wheel for that platform (an sdist to compile): the build then uses the index (CA secret)."""
    reqs = [context / r for r in translation.requirements]
    h = hashlib.sha256(json.dumps([translation.tooling, arch, PYTHON_VERSION]).encode())
    for path in reqs:
        h.update(path.read_bytes())
    dest = cache_dir() / "blubber-wheelhouse" / h.hexdigest()[:HASH_LENGTH]
    if (dest / ".stamp").is_file():
        return dest
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet"]
    cmd += ["--only-binary=:all:"]
    for tag in manylinux_platforms(arch):
        cmd += ["--platform", tag]
    cmd += ["--python-version", PYTHON_VERSION, "--implementation", "cp"]
    cmd += ["--abi", f"cp{PYTHON_VERSION.replace('.', '')}", "-d", str(tmp)]
    cmd += list(translation.tooling)
    for path in reqs:
        cmd += ["-r", str(path)]
    with step(f"downloading the wheels of {', '.join(translation.requirements)} into {dest}"):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        last = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1:] or ["?"]
        print(
            f"  no complete wheelhouse ({last[0]}); pip in the build uses the index",
            file=sys.stderr,
        )
        return None
    (tmp / ".stamp").write_text("ok\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def build_blubber_image(
    blubber_file: Path,
    variant: str,
    *,
    context: Path,
    name: str,
    force: bool = False,
    no_cache: bool = False,
    registry: str | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Build variant `variant` of an isvc's Blubber file offline (sandbox.isvc.blubber translates
    it to a Dockerfile FROM the local base), with `context` as the build context (the isvc's source
    root, e.g. an inference-services checkout). Skipped when the content-hash tag exists (unless
    `force`); returns the tag. Raises BlubberError for a file outside the supported subset."""
    context = Path(context).resolve()
    translation = blubber.translate(blubber_file, variant, base_image=base_image())
    tag = blubber_image_tag(name, blubber_file, variant, context)
    wanted = blubber_image_tag(name, blubber_file, variant, context, registry)
    if not force and image_exists(wanted, env):
        print(f"✓ {wanted} is up to date", file=sys.stderr)
        return wanted
    if not daemon_answers(env):
        raise RunError("no Docker daemon answers (`docker info` failed); is dockerd running?")
    binary = buildkit_binary(env)
    if blubber_mode() == "frontend":
        return _build_with_frontend(blubber_file, variant, context, binary, tag, wanted, env, name)
    _check_fetches(translation)
    ensure_base_image(env)
    wheels = None
    if pip_source() == "wheelhouse" and translation.requirements:
        wheels = ensure_blubber_wheelhouse(context, translation, daemon_arch(env))
    ctx = cache_dir() / "build-context" / f"{name.replace('/', '_')}-{tag.rsplit(':', 1)[1]}"
    with _file_lock(ctx.with_suffix(".lock")):
        _build_blubber(translation, context, ctx, wheels, binary, tag, wanted, no_cache, env, name)
    return wanted


def _check_fetches(translation: blubber.Translation) -> None:
    """A custom builder that fetches runs where the network allows; else name it and the setting
    that maps its URL to a local clone (sandbox.blubber.mirrors)."""
    for command, url in translation.fetches:
        if not mirrors.reachable(url):
            raise RunError(
                f"the Blubber file's custom builder `{command}` fetches {url}, which this machine "
                f"cannot reach: clone it where the network allows and map it with "
                f"{mirrors.MIRRORS_ENV}='{url}=/path/to/clone' (README: custom builders that "
                "fetch)"
            )


def blubber_mode() -> str:
    """How Blubber files become images: `translate` (default: offline, into a Dockerfile on the
    local bookworm base) or `frontend` (the real Blubber BuildKit frontend named on the file's
    `# syntax=` line, where its image and production's base can be pulled)."""
    mode = os.environ.get("SANDBOX_BLUBBER_BUILD", "translate")
    if mode not in ("translate", "frontend"):
        raise RunError(f"SANDBOX_BLUBBER_BUILD must be 'translate' or 'frontend', not {mode!r}")
    return mode


def _build_with_frontend(
    blubber_file: Path,
    variant: str,
    context: Path,
    binary: str,
    tag: str,
    wanted: str,
    env: dict[str, str] | None,
    name: str,
) -> str:
    """`docker build -f blubber.yaml --target <variant> <context>`: BuildKit pulls the frontend
    the file's `# syntax=` line names, which builds the image exactly as production's CI does."""
    if blubber.frontend(blubber_file) is None:
        raise RunError(
            f"{blubber_file} has no `# syntax=` line naming the Blubber frontend; "
            "SANDBOX_BLUBBER_BUILD=frontend needs one"
        )
    cmd = [binary, "build", "--progress=plain", "-f", str(blubber_file), "--target", variant]
    cmd += ["-t", tag] + (["-t", wanted] if wanted != tag else []) + [str(context)]
    _run_build(cmd, run_dir() / "logs" / f"build-{name.replace('/', '_')}.log", wanted, env)
    return wanted


def _build_blubber(
    translation: blubber.Translation,
    context: Path,
    ctx: Path,
    wheels: Path | None,
    binary: str,
    tag: str,
    wanted: str,
    no_cache: bool,
    env: dict[str, str] | None,
    name: str,
) -> None:
    shutil.rmtree(ctx, ignore_errors=True)
    for rel in _local_files(context, translation.local_sources):
        _link_or_copy(context / rel, ctx / rel)
    for mirror in translation.mirrors:  # local clones for `git clone` builders
        shutil.copytree(mirror.path, ctx / mirror.context_path, symlinks=True)
    (ctx / blubber.WHEELHOUSE).mkdir(parents=True, exist_ok=True)
    for path in sorted(wheels.iterdir()) if wheels else []:
        if path.is_file() and not path.name.startswith("."):
            _link_or_copy(path, ctx / blubber.WHEELHOUSE / path.name)
    (ctx / BLUBBER_DOCKERFILE).write_text(translation.dockerfile)
    cmd = [binary, "build", "--progress=plain", "-f", str(ctx / BLUBBER_DOCKERFILE)]
    if no_cache:
        cmd.append("--no-cache")
    bundle = ca_bundle()
    if bundle is not None:
        cmd += ["--secret", f"id=ca,src={bundle}"]
    cmd += ["--label", f"org.ml-sandbox.content-hash={tag.rsplit(':', 1)[1]}", "-t", tag]
    if wanted != tag:
        cmd += ["-t", wanted]
    cmd.append(str(ctx))
    log = run_dir() / "logs" / f"build-{name.replace('/', '_')}.log"
    _run_build(cmd, log, wanted, env)
    shutil.rmtree(ctx, ignore_errors=True)


# -- CLI ---------------------------------------------------------------------------------------
def _services(names: list[str]) -> list[Service]:
    if not names:
        return list(catalog.load_all().values())
    return [catalog.get(n) for n in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.images",
        description="Build the isvc images (one per component) and the wheelhouse they install.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the images of these isvcs (default: all)")
    b.add_argument("isvcs", nargs="*")
    b.add_argument("--force", action="store_true", help="rebuild even if the tag exists")
    b.add_argument("--no-cache", action="store_true", help="with --force: a cold build")
    b.add_argument("--registry", help="also tag <registry>/<image>:<hash> (e.g. dev.local)")
    t = sub.add_parser("tags", help="print the content-hash tags (no daemon needed)")
    t.add_argument("isvcs", nargs="*")
    p = sub.add_parser("prune", help="remove images whose content-hash tag is not current")
    p.add_argument("isvcs", nargs="*")
    w = sub.add_parser("wheelhouse", help="download the images' wheels (for offline builds)")
    w.add_argument("--dest", type=Path, help=f"directory (default {wheelhouse_dir()})")
    w.add_argument("--arch", help="x86_64 or aarch64 (default: the Docker daemon's)")
    w.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "wheelhouse":
            dest = ensure_wheelhouse(args.dest, arch=args.arch, force=args.force)
            wheels = len(list(dest.glob("*.whl")))
            print(f"{dest}: {wheels} wheels for Python {PYTHON_VERSION}")
        elif args.cmd == "prune":
            for ref in prune(_services(args.isvcs)):
                print(f"removed {ref}")
        elif args.cmd == "tags":
            for spec in all_specs(_services(args.isvcs)):
                print(spec_tag(spec))
        else:
            services = _services(args.isvcs)
            for tag in build_specs(
                list(all_specs(services)),
                force=args.force or args.no_cache,
                no_cache=args.no_cache,
                registry=args.registry,
            ):
                print(tag)
    except (CatalogError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, CatalogError) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
