"""`ml-sandbox init`: write a minimal working isvc to start from."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sandbox import scaffold
from sandbox.hints import prog
from sandbox.paths import SERVICES_DIR


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init",
        help="write a minimal working isvc (service.yaml, model server, requirements, Blubber)",
        description="Write DIR/ISVC/: a plain kserve model server (model.py, and transformer.py "
        "with --transformer) on its own pinned requirements.txt, a Blubber v4 file for its "
        "production image, a training script for its small model, and a service.yaml with "
        "samples. It serves at once: ./scripts/deploy.sh ISVC (add --service-dir DIR outside "
        "services/). Then edit it into your isvc.",
    )
    p.add_argument("isvc", help="the isvc's name (a DNS label, e.g. my-isvc)")
    p.add_argument("--transformer", action="store_true", help="with a transformer in front")
    p.add_argument(
        "--dir", type=Path, default=SERVICES_DIR, help="where to write it (default: services/)"
    )
    p.add_argument("--namespace", default="experimental", help="its Lift Wing namespace")
    p.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    args.dir.mkdir(parents=True, exist_ok=True)
    folder = scaffold.write(
        args.isvc, args.dir, transformer=args.transformer, namespace=args.namespace
    )
    print(f"✓ wrote {folder}", file=sys.stderr)
    extra = "" if args.dir.resolve() == SERVICES_DIR.resolve() else f" --service-dir {args.dir}"
    print(f"next: {prog()} deploy {args.isvc} --target local{extra}", file=sys.stderr)
    return 0
