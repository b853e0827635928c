"""`ml-sandbox models`: build the sandbox models, fetch production's, show where they are."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sandbox import catalog, models
from sandbox.catalog import Service


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="build, fetch and locate model files",
        description=(
            "Model files for the isvcs. Production's models cannot be shipped, so each isvc has a "
            "training script (model.build in its service.yaml) that builds a small real fastText "
            "model deterministically; its sha256 must equal model.sha256. Built and fetched models "
            "are cached (SANDBOX_CACHE_DIR, default ~/.cache/ml-sandbox)."
        ),
    )
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    b = msub.add_parser(
        "build",
        help="build the sandbox models (cached; verified against model.sha256)",
        description="Run each isvc's training script and verify the model's sha256.",
    )
    b.add_argument("isvcs", nargs="*", metavar="ISVC", help="isvcs to build (default: all)")
    b.add_argument("--force", action="store_true", help="rebuild even when cached")
    b.set_defaults(func=cmd_build)

    f = msub.add_parser(
        "fetch",
        help="download production's models (model.production_url; needs network)",
        description=(
            "Download Wikimedia's published model of each isvc that has model.production_url, "
            "checking model.production_sha256 when service.yaml has one."
        ),
    )
    f.add_argument("isvcs", nargs="*", metavar="ISVC", help="isvcs to fetch (default: all)")
    f.add_argument("--force", action="store_true", help="download again even when cached")
    f.set_defaults(func=cmd_fetch)

    pa = msub.add_parser(
        "path",
        help="print where an isvc's model file is cached",
        description="Print the cached model path; exit 1 if it is not built (or fetched) yet.",
    )
    pa.add_argument("isvc", metavar="ISVC")
    pa.add_argument("--production", action="store_true", help="the fetched production model")
    pa.set_defaults(func=cmd_path)

    s = msub.add_parser(
        "stage",
        help="fill a directory as KServe's storage-initializer fills /mnt/models",
        description=(
            "Put an isvc's model file into DIR. SOURCE is 'sandbox' (build), 'production' "
            "(fetch) or a storage URI: a local folder or file, file://, or an http(s):// URL "
            "of the model file."
        ),
    )
    s.add_argument("isvc", metavar="ISVC")
    s.add_argument("dir", type=Path, metavar="DIR")
    s.add_argument("--source", default="sandbox", help="sandbox (default), production or a URI")
    s.set_defaults(func=cmd_stage)


def _selected(names: list[str]) -> list[Service]:
    if not names:
        return list(catalog.load_all().values())
    return catalog.select(names)


def cmd_build(args: argparse.Namespace) -> int:
    for service in _selected(args.isvcs):
        print(f"{service.name}\t{models.build(service, force=args.force)}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    services = _selected(args.isvcs)
    if not args.isvcs:
        skipped = [s.name for s in services if not s.model.production_url]
        if skipped:
            print(f"no production_url, skipped: {', '.join(skipped)}", file=sys.stderr)
        services = [s for s in services if s.model.production_url]
    for service in services:
        print(f"{service.name}\t{models.fetch(service, force=args.force)}")
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    service = catalog.get(args.isvc)
    if args.production:
        path, how = models.production_cache_path(service), "ml-sandbox models fetch"
    else:
        path, how = models.model_cache_path(service), "ml-sandbox models build"
    print(path)
    if not path.is_file():
        print(f"{service.name}: not there yet; run: {how} {service.name}", file=sys.stderr)
        return 1
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    service = catalog.get(args.isvc)
    print(models.stage(service, args.dir, source=args.source))
    return 0
