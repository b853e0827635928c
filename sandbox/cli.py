"""`ml-sandbox`: one CLI for every target. Each command group lives in `sandbox/commands/`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from sandbox import __version__, catalog
from sandbox.commands import (
    blubber,
    console,
    coverage,
    dev,
    init,
    load,
    manifests,
    mediawiki,
    models,
    pipeline,
    runtime,
    services,
)
from sandbox.errors import SandboxError
from sandbox.hints import prog

COMMAND_MODULES = [
    services,
    init,
    runtime,
    dev,
    load,
    models,
    mediawiki,
    manifests,
    blubber,
    pipeline,
    console,
    coverage,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ml-sandbox",
        description=(
            "A local replica of Wikimedia's Lift Wing serving stack. Serve an isvc on your machine "
            "(local processes), in containers (docker) or on the minikube sandbox, and call it "
            "with the Host header Lift Wing clients send: <isvc>.<namespace>.wikimedia.org."
        ),
        epilog=f"Start with: {prog()} up langid --mediawiki replay && {prog()} predict langid",
    )
    parser.add_argument("--version", action="version", version=f"ml-sandbox {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    _add_service_dir(parser, default=[])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    for command in sub.choices.values():
        _add_service_dir(command, default=argparse.SUPPRESS)
    return parser


def _add_service_dir(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--inference-services",
        dest="inference_services",
        default=default if default == [] else argparse.SUPPRESS,
        metavar="PATH",
        help="your inference-services checkout: production's isvcs (services/production/) are "
        "served from its code (SANDBOX_INFERENCE_SERVICES=PATH does the same)",
    )
    parser.add_argument(
        "--service-dir",
        dest="service_dirs",
        action="append",
        default=default,
        metavar="PATH",
        help="also load isvcs from PATH: a folder with a service.yaml, or a folder of them "
        "(repeatable; SANDBOX_SERVICES_PATH=dir1:dir2 does the same)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    try:
        catalog.set_inference_services(args.inference_services or None)
        catalog.add_service_dirs(args.service_dirs)
        return int(args.func(args) or 0)
    except SandboxError as e:
        print(f"ml-sandbox: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        if not getattr(e, "reported", False):  # `up` has said what it stopped already
            print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`ml-sandbox logs X | head`): stop quietly, as cat does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
