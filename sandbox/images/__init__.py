"""Container images: every image the sandbox builds comes from a Blubber file, by one builder.

- an isvc component: its own Blubber file and variant (`image:` in service.yaml), with the isvc's
  source root as the build context, as production's CI builds it;
- the MediaWiki replay server: `images/mediawiki-replay/blubber.yaml`, with the repository root
  as the build context.

Shared by the docker and minikube targets. An image's tag is a content hash of the translated
Dockerfile and every local file it copies, so it is computed from the checkout alone (no daemon)
and an unchanged image keeps its tag: the docker target reuses it, the minikube target
(`dev.local/<image>:<hash>`) rolls no new revision.

A Blubber file becomes an image offline (`SANDBOX_BLUBBER_BUILD=translate`, the default):
`sandbox.images.blubber` translates the variant into a Dockerfile FROM the local bookworm base;
the build context is staged under the cache dir with `wheelhouse/`, the wheels of its
requirement files downloaded by the host's pip (which knows this machine's proxy, mirror and CA).
The host's CA bundle is the BuildKit secret `ca`, never stored in a layer.
`SANDBOX_BLUBBER_BUILD=frontend` builds with the real Blubber frontend instead.

CLI: `python -m sandbox.images {build,tags,prune,wheelhouse}`; see docs/docker.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sandbox import catalog
from sandbox.catalog import CatalogError, Service
from sandbox.docker_cli import buildkit_binary, daemon_answers, daemon_arch, docker, image_exists
from sandbox.errors import RunError
from sandbox.fsutil import build_into, file_lock
from sandbox.images import blubber
from sandbox.images.blubber import mirrors
from sandbox.paths import REPO_ROOT, cache_dir, run_dir
from sandbox.progress import step

DEFAULT_BASE_IMAGE = "ml-sandbox/bookworm:latest"
IMAGE_NAMESPACE = "ml-sandbox"
REPLAY_IMAGE = f"{IMAGE_NAMESPACE}/mediawiki-replay"
REPLAY_BLUBBER = Path("images/mediawiki-replay/blubber.yaml")
# Debian bookworm's python3: the wheelhouse is resolved for it, whatever the host runs.
PYTHON_VERSION = "3.11"
# Newest glibc a wheel may need: bookworm's 2.36. pip does not expand a `--platform` tag to the
# older manylinux tags it implies, so every accepted tag is listed.
GLIBC_MINOR = 36
# Never copied into an image (also in .dockerignore, for builds by hand).
IGNORED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"})
IGNORED_SUFFIXES = frozenset({".pyc", ".bin"})
HASH_LENGTH = 16
DEFAULT_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BLUBBER_DOCKERFILE = ".ml-sandbox-blubber.Dockerfile"


# -- what an image is made of ------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """One image: its name, the Blubber file and variant it is built from, and the build context
    (the folder the file's local copies and requirement files are relative to)."""

    name: str
    blubber_file: Path
    variant: str
    context: Path

    def translation(self) -> blubber.Translation:
        return blubber.translate(self.blubber_file, self.variant, base_image=base_image())

    def tag(self, registry: str | None = None) -> str:
        """`<name>:<content hash>` of the translated Dockerfile and every local file it copies,
        or under `registry` (e.g. `dev.local`)."""
        translation = self.translation()
        h = hashlib.sha256(translation.dockerfile.encode())
        for rel in _local_files(self.context, translation.local_sources):
            h.update(f"\0{rel.as_posix()}\0".encode())
            h.update((self.context / rel).read_bytes())
        ref = f"{registry.rstrip('/')}/{self.name}" if registry else self.name
        return f"{ref}:{h.hexdigest()[:HASH_LENGTH]}"


def _included(path: Path, root: Path) -> bool:
    rel = path.relative_to(root)
    return (
        path.is_file()
        and not IGNORED_DIRS.intersection(rel.parts)
        and path.suffix not in IGNORED_SUFFIXES
    )


def base_image() -> str:
    """The image every image builds FROM: the local debootstrapped bookworm by default."""
    return os.environ.get("SANDBOX_BASE_IMAGE", DEFAULT_BASE_IMAGE)


def image_name(service: Service, component: str) -> str:
    """`ml-sandbox/<isvc>-<component>`, like production's one image per component."""
    return f"{IMAGE_NAMESPACE}/{service.name}-{component}"


def component_recipe(service: Service, component: str) -> Recipe:
    comp = dict(service.component_items()).get(component)
    if comp is None:
        known = ", ".join(n for n, _ in service.component_items())
        raise CatalogError(f"{service.name} has no component {component!r}; known: {known}")
    if comp.image is None:
        raise CatalogError(
            f"{service.name}'s {component} has no image recipe: add `image: {{blubber: <path to "
            f"blubber.yaml>, variant: production}}` under components.{component} in "
            f"{service.dir / 'service.yaml'} (the docker and minikube targets build from it)"
        )
    return Recipe(
        image_name(service, component),
        service.source_dir / comp.image.blubber,
        comp.image.variant,
        service.source_dir.resolve(),
    )


def replay_recipe() -> Recipe:
    return Recipe(REPLAY_IMAGE, REPO_ROOT / REPLAY_BLUBBER, "production", REPO_ROOT)


def recipes(services: list[Service], replay: bool = True) -> list[Recipe]:
    """Every image of these isvcs (each component with an image recipe), then the replay
    server's."""
    out = [component_recipe(s, n) for s in services for n, c in s.component_items() if c.image]
    return [*out, replay_recipe()] if replay else out


def without_recipe(services: list[Service]) -> list[str]:
    """`<isvc>/<component>` of the components that have no image recipe (local target only)."""
    return [f"{s.name}/{n}" for s in services for n, c in s.component_items() if not c.image]


def image_tag(service: Service, component: str, registry: str | None = None) -> str:
    """`ml-sandbox/<isvc>-<component>:<content hash>`, or under `registry` (e.g. `dev.local`)."""
    return component_recipe(service, component).tag(registry)


def replay_image_tag(registry: str | None = None) -> str:
    return replay_recipe().tag(registry)


def ca_bundle() -> Path | None:
    """The CA bundle handed to builds as the `ca` secret (for pip behind a TLS-intercepting
    proxy): $SANDBOX_CA_BUNDLE, $PIP_CERT, $SSL_CERT_FILE, $REQUESTS_CA_BUNDLE or the system's."""
    for var in ("SANDBOX_CA_BUNDLE", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = os.environ.get(var)
        if value and Path(value).is_file():
            return Path(value)
    return DEFAULT_CA_BUNDLE if DEFAULT_CA_BUNDLE.is_file() else None


# -- the wheelhouse ----------------------------------------------------------------------------
def pip_source() -> str:
    source = os.environ.get("SANDBOX_PIP_SOURCE", "wheelhouse")
    if source not in ("wheelhouse", "index"):
        raise RunError(f"SANDBOX_PIP_SOURCE must be 'wheelhouse' or 'index', not {source!r}")
    return source


def manylinux_platforms(arch: str) -> list[str]:
    """Every manylinux platform tag whose wheels run on bookworm, newest first."""
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(GLIBC_MINOR, 4, -1)]
    legacy = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
    if arch in ("x86_64", "i686"):
        tags += [f"{name}_{arch}" for name in legacy]
    elif arch == "aarch64":
        tags.append(f"manylinux2014_{arch}")
    return tags


class _NoWheels(Exception):
    """pip found no wheel for some requirement (the temporary wheelhouse is dropped)."""


def ensure_wheelhouse(recipe: Recipe, arch: str, force: bool = False) -> Path | None:
    """Wheels for the build's pip (its requirement files and pip tooling), downloaded by the
    host's pip (its index, proxy and CA settings) for bookworm's Python, into
    `<cache>/wheelhouse/<hash of the requirements>`: under a lock, landing by rename. None when
    some requirement has no wheel for that platform (an sdist to compile); that is no failure:
    pip in the build then uses the index, through the CA secret."""
    translation = recipe.translation()
    if not translation.requirements:
        return None
    reqs = [recipe.context / r for r in translation.requirements]
    h = hashlib.sha256(json.dumps([translation.tooling, arch, PYTHON_VERSION]).encode())
    for path in reqs:
        h.update(path.read_bytes())
    dest = cache_dir() / "wheelhouse" / h.hexdigest()[:HASH_LENGTH]
    with file_lock(dest.with_name(f".{dest.name}.lock")):
        if not force and (dest / ".stamp").is_file():
            return dest
        cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet"]
        cmd += ["--only-binary=:all:"]
        for tag in manylinux_platforms(arch):
            cmd += ["--platform", tag]
        cmd += ["--python-version", PYTHON_VERSION, "--implementation", "cp"]
        cmd += ["--abi", f"cp{PYTHON_VERSION.replace('.', '')}"]
        cmd += list(translation.tooling)
        for path in reqs:
            cmd += ["-r", str(path)]
        try:
            with build_into(dest) as tmp:
                with step(f"downloading the wheels of {', '.join(translation.requirements)}"):
                    proc = subprocess.run([*cmd, "-d", str(tmp)], capture_output=True, text=True)
                if proc.returncode != 0:
                    raise _NoWheels(proc.stderr)
                (tmp / ".stamp").write_text("ok\n")
        except _NoWheels as e:
            print(wheelhouse_note(str(e)), file=sys.stderr)
            return None
    return dest


def wheelhouse_note(pip_stderr: str) -> str:
    """What a failed wheel download means for the build, said as information (it is not a
    failure): which requirement has no wheel, without pip's error text."""
    found = re.findall(r"No matching distribution found for (\S+)", pip_stderr)
    names = ", ".join(dict.fromkeys(found))
    which = f" ({names} has no wheel for bookworm's Python {PYTHON_VERSION})" if found else ""
    return (
        f"  • info: no prebuilt wheelhouse{which}; pip inside the image build installs from the "
        "package index instead, compiling what has no wheel, as production's build does"
    )


# -- building ----------------------------------------------------------------------------------
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


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def build_log(recipe: Recipe) -> Path:
    return run_dir() / "logs" / f"build-{recipe.name.replace('/', '_')}.log"


def ensure_base_image(env: dict[str, str] | None = None) -> None:
    base = base_image()
    if image_exists(base, env):
        return
    if base == DEFAULT_BASE_IMAGE:
        raise RunError(
            f"the base image {base} is missing: build it with `scripts/build-base-image.sh` "
            "(or set SANDBOX_BASE_IMAGE to a bookworm image you can pull)"
        )
    with step(f"pulling the base image {base}"):
        docker("pull", base, env=env)


def blubber_mode() -> str:
    """How Blubber files become images: `translate` (default: offline, into a Dockerfile on the
    local bookworm base) or `frontend` (the real Blubber BuildKit frontend named on the file's
    `# syntax=` line, where its image and production's base can be pulled)."""
    mode = os.environ.get("SANDBOX_BLUBBER_BUILD", "translate")
    if mode not in ("translate", "frontend"):
        raise RunError(f"SANDBOX_BLUBBER_BUILD must be 'translate' or 'frontend', not {mode!r}")
    return mode


def build(
    recipe: Recipe,
    *,
    force: bool = False,
    no_cache: bool = False,
    registry: str | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Build `recipe` unless its content-hash tag exists (or `force`); returns the tag.
    `registry`: also tag `<registry>/<image>:<hash>` (minikube: `dev.local`); `env`: extra env
    for the docker CLI (`minikube docker-env`'s DOCKER_HOST); `no_cache`: a cold build.
    Raises BlubberError for a file outside the supported subset."""
    frontend = blubber_mode() == "frontend"
    if frontend and blubber.frontend(recipe.blubber_file) is None:
        raise RunError(
            f"{recipe.blubber_file} has no `# syntax=` line naming the Blubber frontend; "
            "SANDBOX_BLUBBER_BUILD=frontend needs one"
        )
    tag, wanted = recipe.tag(), recipe.tag(registry)
    if not force and image_exists(wanted, env):
        print(f"✓ {wanted} is up to date", file=sys.stderr)
        return wanted
    if not daemon_answers(env):
        raise RunError("no Docker daemon answers (`docker info` failed); is dockerd running?")
    binary = buildkit_binary(env)
    if frontend:
        # BuildKit pulls the frontend the file names, which builds as production's CI does.
        cmd = [binary, "build", "--progress=plain", "-f", str(recipe.blubber_file)]
        cmd += ["--target", recipe.variant]
        _build(cmd, recipe, recipe.context, no_cache, wanted, env)
        return wanted
    translation = recipe.translation()
    _check_fetches(translation)
    ensure_base_image(env)
    wheels = ensure_wheelhouse(recipe, daemon_arch(env)) if pip_source() == "wheelhouse" else None
    ctx = cache_dir() / "build-context" / f"{recipe.name.replace('/', '_')}-{tag.split(':')[-1]}"
    with file_lock(ctx.with_suffix(".lock")):
        shutil.rmtree(ctx, ignore_errors=True)
        for rel in _local_files(recipe.context, translation.local_sources):
            _link_or_copy(recipe.context / rel, ctx / rel)
        for mirror in translation.mirrors:  # local clones for `git clone` builders
            shutil.copytree(mirror.path, ctx / mirror.context_path, symlinks=True)
        (ctx / blubber.WHEELHOUSE).mkdir(parents=True, exist_ok=True)
        for path in sorted(wheels.iterdir()) if wheels else []:
            if path.is_file() and not path.name.startswith("."):
                _link_or_copy(path, ctx / blubber.WHEELHOUSE / path.name)
        (ctx / BLUBBER_DOCKERFILE).write_text(translation.dockerfile)
        cmd = [binary, "build", "--progress=plain", "-f", str(ctx / BLUBBER_DOCKERFILE)]
        try:
            _build(cmd, recipe, ctx, no_cache, wanted, env)
        finally:
            shutil.rmtree(ctx, ignore_errors=True)
    return wanted


def _check_fetches(translation: blubber.Translation) -> None:
    """A custom builder that fetches runs where the network allows; else name it and the setting
    that maps its URL to a local clone (sandbox.images.blubber.mirrors)."""
    for command, url in translation.fetches:
        if not mirrors.reachable(url):
            raise RunError(
                f"the Blubber file's custom builder `{command}` fetches {url}, which this machine "
                f"cannot reach: clone it where the network allows and map it with "
                f"{mirrors.MIRRORS_ENV}='{url}=/path/to/clone' (README: custom builders that "
                "fetch)"
            )


def _build(
    cmd: list[str],
    recipe: Recipe,
    ctx: Path,
    no_cache: bool,
    wanted: str,
    env: dict[str, str] | None,
) -> None:
    """The one build tail: no-cache, the CA secret, the content-hash label, the tags."""
    tag = recipe.tag()
    if no_cache:
        cmd.append("--no-cache")
    bundle = ca_bundle()
    if bundle is not None:
        cmd += ["--secret", f"id=ca,src={bundle}"]
    cmd += ["--label", f"org.ml-sandbox.content-hash={tag.rsplit(':', 1)[1]}", "-t", tag]
    if wanted != tag:
        cmd += ["-t", wanted]
    cmd.append(str(ctx))
    _run_build(cmd, build_log(recipe), wanted, env)


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


def build_images(
    service: Service,
    *,
    force: bool = False,
    registry: str | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, str]:
    """Build every component image of `service` from its Blubber file (skipping those whose tag
    exists). Returns {component: tag}."""
    return {
        n: build(component_recipe(service, n), force=force, registry=registry, env=env)
        for n, _ in service.component_items()
    }


def build_replay_image(
    *, force: bool = False, registry: str | None = None, env: dict[str, str] | None = None
) -> str:
    return build(replay_recipe(), force=force, registry=registry, env=env)


def prune(services: list[Service], env: dict[str, str] | None = None) -> list[str]:
    """Remove the images of these isvcs (and the replay server) whose tag is no longer current;
    images a container still uses are kept. Returns the removed references."""
    current = {r.tag() for r in recipes(services)}
    names = {r.name for r in recipes(services)}
    out = docker("images", "--format", "{{.Repository}}:{{.Tag}}", env=env).stdout.split()
    stale = [ref for ref in out if ref.rsplit(":", 1)[0] in names and ref not in current]
    return [
        ref for ref in stale if docker("image", "rm", ref, env=env, check=False).returncode == 0
    ]


# -- CLI ---------------------------------------------------------------------------------------
def _services(names: list[str]) -> list[Service]:
    if not names:
        return list(catalog.load_all().values())
    return catalog.select(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.images",
        description="Build every image the sandbox runs: each isvc component's, from its own "
        "Blubber file, and the MediaWiki replay server's.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the images of these isvcs (default: all) and replay")
    b.add_argument("isvcs", nargs="*")
    b.add_argument("--force", action="store_true", help="rebuild even if the tag exists")
    b.add_argument("--no-cache", action="store_true", help="with --force: a cold build")
    b.add_argument("--registry", help="also tag <registry>/<image>:<hash> (e.g. dev.local)")
    t = sub.add_parser("tags", help="print the content-hash tags (no daemon needed)")
    t.add_argument("isvcs", nargs="*")
    p = sub.add_parser("prune", help="remove images whose content-hash tag is not current")
    p.add_argument("isvcs", nargs="*")
    w = sub.add_parser("wheelhouse", help="download the images' wheels (for offline builds)")
    w.add_argument("isvcs", nargs="*")
    w.add_argument("--arch", help="x86_64 or aarch64 (default: the Docker daemon's)")
    w.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    try:
        services = _services(args.isvcs)
        chosen = recipes(services)
        for name in without_recipe(services):
            print(f"• {name} has no `image:` in its service.yaml: no image", file=sys.stderr)
        if args.cmd == "wheelhouse":
            arch = args.arch or daemon_arch()
            for recipe in chosen:
                dest = ensure_wheelhouse(recipe, arch, force=args.force)
                where = f"{dest} ({len(list(dest.glob('*.whl')))} wheels)" if dest else "the index"
                print(f"{recipe.name}: {where}")
        elif args.cmd == "prune":
            for ref in prune(services):
                print(f"removed {ref}")
        elif args.cmd == "tags":
            for recipe in chosen:
                print(recipe.tag())
        else:
            force = args.force or args.no_cache
            for recipe in chosen:
                print(build(recipe, force=force, no_cache=args.no_cache, registry=args.registry))
    except (CatalogError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, CatalogError) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
