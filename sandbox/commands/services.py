"""`ml-sandbox services`: list the catalog."""

from __future__ import annotations

import argparse
import json
import sys

from sandbox import catalog


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "services",
        help="list the isvcs in the catalog (services/*/service.yaml and --service-dir folders)",
        description="List every isvc of the catalog (services/, SANDBOX_SERVICES_PATH and "
        "--service-dir), with its namespace, components, Host header and where its code lives. "
        "A service.yaml that does not load is reported, and the exit code is 2.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_services)


def cmd_services(args: argparse.Namespace) -> int:
    cat = catalog.Catalog()
    services = cat.services
    if args.json:
        rows = [
            {
                "name": s.name,
                "namespace": s.namespace,
                "components": [n for n, _ in s.component_items()],
                "host": s.host,
                "samples": [x.name for x in s.samples],
                "source": str(s.source_dir),
                "requirements": {n: c.requirements for n, c in s.component_items()},
            }
            for s in services.values()
        ]
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'ISVC':<22} {'NAMESPACE':<22} {'COMPONENTS':<24} HOST")
        for s in services.values():
            comps = "+".join(n for n, _ in s.component_items())
            print(f"{s.name:<22} {s.namespace:<22} {comps:<24} {s.host}")
    for error in cat.broken.values():
        print(f"ml-sandbox: error: {error}", file=sys.stderr)
    return 2 if cat.broken else 0
