"""`load`: an isvc's locust load test against a target's ingress, compared with a baseline."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from sandbox import catalog
from sandbox.catalog import Service
from sandbox.errors import RunError, UsageError
from sandbox.hints import prog
from sandbox.load import report, run, suite
from sandbox.load.suite import LoadTest
from sandbox.paths import run_dir
from sandbox.runtime import ingress, state, targets

# What production's locust.conf sets (run-time = 120s), for the progress estimate only.
PRODUCTION_RUN_TIME_S = 120


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "load",
        help="load-test an isvc with locust (production's own test when known) and compare",
        description="Run locust headless against the isvc through the target's ingress, with its "
        "Host header: production's own load test from inference-services' test/locust "
        "(MODEL=<load_test>, its locust.conf and pins) when the isvc's service.yaml names one and "
        f"a checkout is found ({suite.CHECKOUT_ENV}, or a folder above the isvc's source), else "
        "a test generated from its samples. Writes locust's CSVs, its HTML report and a plot into "
        "a results folder, and compares the run with a baseline: production's committed "
        "results/<load_test>_stats.csv, else one saved with --save-baseline. Exits 1 on any "
        "failed request or a regression beyond --fail-over.",
    )
    p.add_argument("isvc", help="the isvc to load (see `ml-sandbox services`); it must be up")
    p.add_argument(
        "--target",
        choices=targets.TARGETS,
        default=None,
        help="whose ingress to load (default: where the isvc runs)",
    )
    p.add_argument("--users", type=int, default=None, help="concurrent users (default: the test's)")
    p.add_argument(
        "--spawn-rate", type=float, default=None, help="users started per second (the test's)"
    )
    p.add_argument(
        "--run-time",
        type=int,
        default=None,
        metavar="S",
        help="seconds to run (default: the test's; production's locust.conf says 120)",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--production-test",
        action="store_true",
        help="use production's load test, and fail if it cannot be found",
    )
    which.add_argument(
        "--from-samples",
        action="store_true",
        help="use the test generated from the samples, even when production's is known",
    )
    p.add_argument(
        "--baseline",
        type=Path,
        default=None,
        metavar="CSV",
        help="compare with this locust stats CSV (default: production's, else the saved one)",
    )
    p.add_argument(
        "--save-baseline",
        action="store_true",
        help="save this run's stats as the isvc's sandbox baseline",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=report.THRESHOLD_PCT,
        metavar="PCT",
        help="flag requests whose change is at or above PCT%% (production's rule; default 10)",
    )
    p.add_argument(
        "--fail-over",
        type=float,
        default=None,
        metavar="PCT",
        help="exit 1 when a latency rises, or requests/s falls, by more than PCT%%",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=None,
        metavar="DIR",
        help="where to write the CSVs, report.html, locust.log and plot.png "
        "(default .sandbox/load/<isvc>/<UTC time>)",
    )
    p.set_defaults(func=cmd_load)


def baselines_dir() -> Path:
    return run_dir() / "load" / "baselines"


def _check(args: argparse.Namespace) -> None:
    for flag, value in (("--users", args.users), ("--run-time", args.run_time)):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be a positive whole number, got {value}")
    if args.spawn_rate is not None and args.spawn_rate <= 0:
        raise UsageError(f"--spawn-rate must be positive, got {args.spawn_rate:g}")
    if args.fail_over is not None and args.fail_over < 0:
        raise UsageError(f"--fail-over must be a percentage ≥ 0, got {args.fail_over:g}")
    if args.baseline is not None and not args.baseline.is_file():
        raise UsageError(f"--baseline {args.baseline}: no such file")


def ingress_url(service: Service, target: str | None) -> tuple[str, str]:
    """(target, base URL) where the isvc is served."""
    running = targets.running(service.name)
    target = target or running
    if target is None:
        raise RunError(
            f"{service.name} is not running: start it with `{prog()} up {service.name}` "
            "(or name the cluster with --target minikube)"
        )
    if target == "minikube":
        from sandbox.runtime.minikube import ingress_url as minikube_ingress

        return target, minikube_ingress()
    if running != target:
        raise RunError(
            f"{service.name} is not running on the {target} target: start it with "
            f"`{prog()} up {service.name} --target {target}`"
        )
    base = ingress.gateway_url(state.read())
    if base is None:
        raise RunError(f"the gateway is not running: `{prog()} up {service.name}` starts it")
    return target, base


def choose_baseline(
    service: Service, test: LoadTest, given: Path | None
) -> tuple[Path | None, str]:
    if given is not None:
        return given, str(given)
    if test.baseline is not None:
        return test.baseline, f"production's baseline ({test.baseline})"
    saved = baselines_dir() / f"{service.name}_stats.csv"
    if saved.is_file():
        return saved, f"the sandbox baseline ({saved})"
    return None, ""


def cmd_load(args: argparse.Namespace) -> int:
    _check(args)
    service = catalog.get(args.isvc)
    production = None if args.from_samples else suite.production_test(service, args.production_test)
    target, base = ingress_url(service, args.target)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    folder = (args.results or run_dir() / "load" / service.name / stamp).resolve()
    test = production or suite.generated_test(service, folder)
    settings = run.Settings(base, args.users, args.spawn_rate, args.run_time)
    out = run.Outputs(folder, service.name)
    print(f"• {service.name} on {target} ({base}, Host {service.host}): {test.describe()}")
    expected = run.duration(test, settings) or PRODUCTION_RUN_TIME_S
    print(f"• running locust for about {expected:.0f}s; results in {folder}", file=sys.stderr)
    run.run(test, settings, out, float(expected))

    stats = report.read_stats(out.stats)
    total = stats.get(report.AGGREGATED)
    if total is None or total.requests == 0:
        raise RunError(f"locust sent no request; its output is in {out.log}:\n{run.tail(out.log)}")
    print(
        f"\n{total.requests} requests, {total.failures} failed; average {total.average_ms:.1f} ms, "
        f"median {total.median_ms:.0f} ms, {total.rps:.2f} requests/s"
    )
    failed_why: list[str] = []
    if total.failures:
        failed_why.append(f"{total.failures} request(s) failed (see {out.failures})")

    baseline, label = choose_baseline(service, test, args.baseline)
    if baseline is None:
        print(
            f"no baseline to compare with: save this run as one with `{prog()} load "
            f"{service.name} --save-baseline`"
        )
    else:
        changes = report.compare(report.read_stats(baseline), stats)
        if not changes:
            print(f"no request of this run is in {label}: nothing to compare")
        else:
            print(report.table(changes, args.threshold, label))
            if args.fail_over is not None:
                failed_why += report.regressions(changes, args.fail_over)

    if args.save_baseline:
        if total.failures:
            print("✗ not saving a run with failed requests as the baseline", file=sys.stderr)
        else:
            saved = baselines_dir() / f"{service.name}_stats.csv"
            saved.parent.mkdir(parents=True, exist_ok=True)
            tmp = saved.with_suffix(".tmp")
            shutil.copyfile(out.stats, tmp)
            tmp.replace(saved)
            print(f"• saved as {service.name}'s sandbox baseline: {saved}")

    title = f"{service.name} on {target}: {test.kind} load test"
    print(f"plot: {run.plot(test, out, title)}")
    print(f"report: {out.html}\nlocust's own output: {out.log}")
    for why in failed_why:
        print(f"✗ {why}", file=sys.stderr)
    return 1 if failed_why else 0
