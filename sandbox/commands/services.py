"""`ml-sandbox services`: list the catalog."""

from __future__ import annotations

import argparse
import json

from sandbox import catalog


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "services",
        help="list the isvcs in the catalog (services/*/service.yaml)",
        description="List every isvc in services/, with its namespace, components and Host header.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_services)


def cmd_services(args: argparse.Namespace) -> int:
    services = catalog.load_all()
    if args.json:
        rows = [
            {
                "name": s.name,
                "namespace": s.namespace,
                "components": [n for n, _ in s.component_items()],
                "host": s.host,
                "samples": [x.name for x in s.samples],
            }
            for s in services.values()
        ]
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'ISVC':<22} {'NAMESPACE':<22} {'COMPONENTS':<24} HOST")
    for s in services.values():
        comps = "+".join(n for n, _ in s.component_items())
        print(f"{s.name:<22} {s.namespace:<22} {comps:<24} {s.host}")
    return 0
