"""`ml-sandbox blubber check`: which Blubber files of a checkout the sandbox can build."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from sandbox.errors import SandboxError
from sandbox.images import base_image
from sandbox.images.blubber import check


class UsageError(SandboxError):
    """Bad command-line input (exit 2)."""

    exit_code = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "blubber",
        help="check a checkout's Blubber files against the sandbox's translation",
        description=(
            "Blubber files become images offline by translation (sandbox/images/blubber/), "
            "with the rules of the blubber version each file's `# syntax=` line names."
        ),
    )
    bsub = p.add_subparsers(dest="blubber_command", metavar="ACTION", required=True)
    c = bsub.add_parser(
        "check",
        help="translate every Blubber file and variant under CHECKOUT/.pipeline",
        description=(
            "Translate every Blubber file and variant under CHECKOUT/.pipeline (no image is "
            "built) and print, for each: ok (blubber version, python layout, base stand-in), or "
            "unsupported with the reason. Exit 1 when some variant is unsupported."
        ),
    )
    c.add_argument("checkout", type=Path, metavar="CHECKOUT", help="e.g. ~/src/inference-services")
    c.add_argument("--json", action="store_true", help="one JSON object per line")
    c.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    checkout = args.checkout.expanduser()
    if not (checkout / ".pipeline").is_dir():
        raise UsageError(f"{checkout} has no .pipeline/ folder: point at a checkout's root")
    results = check.check(checkout, base_image())
    if not results:
        raise UsageError(f"no Blubber files under {checkout / '.pipeline'}")
    if args.json:
        for r in results:
            print(json.dumps(asdict(r)))
    else:
        width = max(len(f"{r.file} {r.variant}") for r in results)
        for r in results:
            where = f"{r.file} {r.variant}".ljust(width)
            status = "ok" if r.ok else "unsupported"
            print(f"{where}  {r.blubber_version:8} {status:11} {r.detail}")
    files = {r.file for r in results}
    good = {f for f in files if all(r.ok for r in results if r.file == f)}
    print(
        f"\n{len(good)} of {len(files)} files translate in every variant; "
        f"{sum(r.ok for r in results)} of {len(results)} variants",
        flush=True,
    )
    return 0 if len(good) == len(files) else 1
