"""`ml-sandbox`: one CLI for every target. Each command group lives in `sandbox/commands/`."""

from __future__ import annotations

import argparse
import logging
import sys

from sandbox import __version__
from sandbox.catalog import CatalogError
from sandbox.commands import manifests, mediawiki, models, runtime, services
from sandbox.runtime.base import RuntimeError_

COMMAND_MODULES = [services, runtime, models, mediawiki, manifests]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ml-sandbox",
        description=(
            "A local replica of Wikimedia's Lift Wing serving stack. Serve an isvc on your machine "
            "(local processes), in containers (docker) or on the minikube sandbox, and call it "
            "with the Host header Lift Wing clients send: <isvc>.<namespace>.wikimedia.org."
        ),
        epilog="Start with: ml-sandbox up langid --mediawiki replay && ml-sandbox predict langid",
    )
    parser.add_argument("--version", action="version", version=f"ml-sandbox {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except (CatalogError, RuntimeError_) as e:
        print(f"ml-sandbox: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, CatalogError) else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
