"""`ml-sandbox manifests`: render the committed Kubernetes manifests and validate them."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import yaml

from sandbox import catalog
from sandbox import manifests as m
from sandbox.errors import RunError
from sandbox.hints import prog, venv_tool
from sandbox.paths import REPO_ROOT


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "manifests",
        help="render and validate the Kubernetes manifests under manifests/",
        description=(
            "The InferenceService of every isvc (manifests/isvcs/<isvc>.yaml) and the in-cluster "
            "MediaWiki replay (manifests/mediawiki-replay.yaml) are rendered from service.yaml "
            "and committed; a test keeps them in sync."
        ),
    )
    msub = p.add_subparsers(dest="manifests_command", metavar="ACTION", required=True)
    r = msub.add_parser("render", help="write manifests/ from the catalog")
    r.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a committed manifest differs from a fresh render",
    )
    r.set_defaults(func=cmd_render)
    v = msub.add_parser(
        "validate",
        help="validate manifests/ against the Kubernetes 1.31 schemas and the pinned CRDs",
    )
    v.add_argument("files", nargs="*", type=Path, help="default: every file under manifests/")
    v.set_defaults(func=cmd_validate)


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def stale_files() -> list[Path]:
    """Committed manifests that differ from a fresh render, or are missing, or are orphans."""
    files = m.rendered_files(catalog.load_all().values())
    stale = [p for p, text in files.items() if not p.is_file() or p.read_text() != text]
    orphans = [p for p in sorted(m.ISVC_DIR.glob("*.yaml")) if p not in files]
    return stale + orphans


def cmd_render(args: argparse.Namespace) -> int:
    files = m.rendered_files(catalog.load_all().values())
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"out of sync: {_rel(path)}", file=sys.stderr)
        if stale:
            print(f"run: {prog()} manifests render", file=sys.stderr)
            return 1
        print(f"{len(files)} manifests in sync with the catalog")
        return 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {_rel(path)}")
    for orphan in sorted(m.ISVC_DIR.glob("*.yaml")):
        if orphan not in files:
            orphan.unlink()
            print(f"removed {_rel(orphan)} (no such isvc in services/)")
    return 0


# What validation imports (the dev extra of pyproject.toml), checked before anything runs.
VALIDATION_TOOLS = ("jsonschema", "referencing", "kubernetes_validate")


def cmd_validate(args: argparse.Namespace) -> int:
    missing = [name for name in VALIDATION_TOOLS if importlib.util.find_spec(name) is None]
    if missing:
        raise RunError(
            f"manifest validation needs the dev tools ({', '.join(missing)} not installed): "
            f"`{venv_tool('pip')} install -e '.[dev]'` (./scripts/test.sh installs them too)"
        )
    from sandbox import schemas

    if schemas.missing_crds():
        print(f"• downloading the pinned CRDs into {schemas.crd_dir()}", file=sys.stderr)
        try:
            schemas.ensure_crds()
        except schemas.SchemaError as e:
            print(
                f"• {e}; custom resources cannot be checked offline without them", file=sys.stderr
            )

    paths = args.files or sorted(m.MANIFESTS_DIR.rglob("*.yaml"))
    failed = 0
    for path in paths:
        if not path.is_file():
            print(f"{path}: not found", file=sys.stderr)
            failed += 1
            continue
        try:
            docs = m.load_documents(path)
        except yaml.YAMLError as e:
            print(f"{_rel(path)}: not valid YAML: {e}", file=sys.stderr)
            failed += 1
            continue
        try:
            errors = schemas.validate_documents(docs)
        except schemas.SchemaError as e:
            print(f"ml-sandbox: error: {e}", file=sys.stderr)
            return 2
        for e in errors:
            print(f"{_rel(path)}: {e}", file=sys.stderr)
        failed += bool(errors)
        if not errors:
            print(f"{_rel(path)}: valid")
    return 1 if failed else 0
