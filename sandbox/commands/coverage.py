"""`ml-sandbox coverage`: which of production's isvcs serve their samples here, and why not."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from sandbox import catalog, production
from sandbox.errors import CatalogError, SandboxError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "coverage",
        help="which of production's isvcs serve their samples here (needs --inference-services)",
        description=(
            "One row per production isvc (services/production/, served from your "
            "inference-services checkout): its pattern, whether it served all its samples on the "
            "local and docker targets, and why not. ✓ means measured: a run recorded in "
            "services/production/coverage.json for the entry as it is now. --run measures: it "
            "serves each named isvc (default: all) on the target, sends its samples, stops it, "
            "and records the outcome."
        ),
    )
    p.add_argument("isvcs", nargs="*", metavar="ISVC", help="isvcs to --run (default: all)")
    p.add_argument("--run", action="store_true", help="serve and send the samples, then record")
    p.add_argument("--target", choices=production.TARGETS, default="local", help="for --run")
    p.add_argument("--tier", choices=("light", "heavy", "all"), default="all", help="for --run")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per isvc to be ready")
    p.add_argument("--results", type=Path, default=production.RESULTS, help="the record file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_coverage)


def _production_services() -> dict[str, catalog.Service]:
    if not os.environ.get(catalog.INFERENCE_SERVICES_ENV):
        raise CatalogError(
            "coverage needs your inference-services checkout: --inference-services PATH "
            f"(or {catalog.INFERENCE_SERVICES_ENV}=PATH)"
        )
    cat = catalog.Catalog([catalog.PRODUCTION_DIR])
    if cat.broken:
        raise CatalogError("\n".join(str(e) for e in cat.broken.values()))
    return cat.services


def _run_one(service: catalog.Service, target: str, timeout: float) -> tuple[int, int, str | None]:
    from sandbox.runtime import smoke, targets
    from sandbox.runtime.options import MediaWiki, UpOptions

    runner = targets.get(target)
    opts = UpOptions(gateway_port=_port(), mediawiki=MediaWiki.parse("replay"), timeout_s=timeout)
    try:
        runner.up([service], opts)
        failed = smoke.run_on(runner, [service])
        return len(service.samples) - failed, len(service.samples), None
    except SandboxError as e:
        return 0, len(service.samples), str(e)
    finally:
        try:
            runner.down([service.name])
        except SandboxError as e:
            print(f"ml-sandbox: warning: stopping {service.name}: {e}", file=sys.stderr)


def _port() -> int:
    from sandbox.runtime import ingress, state

    url = ingress.gateway_url(state.read())
    if url:
        return int(url.rsplit(":", 1)[1])
    if os.environ.get("SANDBOX_GATEWAY_PORT"):
        return int(os.environ["SANDBOX_GATEWAY_PORT"])
    from sandbox.runtime.processes import free_port

    return free_port()  # a measurement needs no fixed port


def cmd_coverage(args: argparse.Namespace) -> int:
    services = _production_services()
    if args.run:
        chosen = (
            catalog.Catalog([catalog.PRODUCTION_DIR]).select(args.isvcs)
            if args.isvcs
            else [s for s in services.values()]
        )
        root = Path(os.environ[catalog.INFERENCE_SERVICES_ENV])
        for service in chosen:
            f = production.facts(service)
            if args.tier != "all" and f.tier != args.tier:
                continue
            print(
                f"• {service.name}: serving on {args.target} and sending its samples",
                file=sys.stderr,
            )
            passed, total, error = _run_one(service, args.target, args.timeout)
            result = production.outcome(passed, total, error, service.dir / "service.yaml", root)
            production.record(args.target, service.name, result, args.results)
            mark = "✓" if result["ok"] else "✗"
            print(
                f"{mark} {service.name}: {passed}/{total} samples"
                + (f" ({error.splitlines()[0]})" if error else ""),
                file=sys.stderr,
            )
    table = production.rows(services, production.read_results(args.results))
    if args.json:
        print(json.dumps([asdict(r) for r in table], indent=2, ensure_ascii=False))
        return 0
    print(production.markdown(table))
    proven = sum(r.local for r in table)
    total = len(table) - 1
    print(
        f"\n{proven} of {total} non-revscoring production isvcs serve their samples on local; "
        f"{sum(r.docker for r in table)} on docker.",
        file=sys.stderr,
    )
    return 0
