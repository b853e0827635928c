"""`up`, `down`, `status`, `logs`, `predict`, `deploy`: run isvcs, call them via the gateway."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from sandbox import catalog
from sandbox.catalog import Sample, Service
from sandbox.errors import CatalogError, RunError, UsageError
from sandbox.hints import prog
from sandbox.mediawiki import diagnose
from sandbox.runtime import ingress, local, smoke, state, targets
from sandbox.runtime.options import RECORDINGS_DIR, MediaWiki, UpOptions
from sandbox.runtime.targets import ComponentStatus, Target

DEFAULT_PORT = int(os.environ.get("SANDBOX_GATEWAY_PORT", "8080"))


def _add_isvc_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "isvcs", nargs="*", metavar="ISVC", help="isvc names (see `ml-sandbox services`)"
    )
    p.add_argument("--all", action="store_true", help="every isvc in the catalog")


def _add_up_args(p: argparse.ArgumentParser, default_target: str) -> None:
    _add_isvc_args(p)
    p.add_argument(
        "--target",
        default=default_target,
        choices=["auto", *targets.TARGETS] if default_target == "auto" else targets.TARGETS,
        help=f"where to run (default {default_target})",
    )
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help="gateway port on 127.0.0.1 (default: the port of the running gateway, else 8080 or "
        "SANDBOX_GATEWAY_PORT); the port stays until you name another one",
    )
    p.add_argument(
        "--mediawiki",
        default="live",
        metavar="live|replay|replay:DIR|record[:DIR]|URL",
        help="where isvcs that call MediaWiki send requests: the real wikis (live, default); the "
        "offline replay server's fixture wikis (replay); recordings made with record, then the "
        "fixtures (replay:DIR); the real wikis through the recorder, which writes every exchange "
        f"into DIR (record[:DIR], default ./{RECORDINGS_DIR}; local target); or a base URL",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="readiness deadline, seconds (default 60; 900 on minikube, where a first deploy "
        "pulls the stack's sidecar images)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=None,
        help="the gateway's request body limit, 413 above it (default 1 MiB)",
    )
    p.add_argument(
        "--model-source",
        default="sandbox",
        metavar="sandbox|production|URI",
        help="the model to stage into /mnt/models: built from the training script (sandbox, "
        "default), Wikimedia's public mirror (production; needs internet), or a URI: a local "
        "folder or file, file://..., or an http(s):// URL of the model file (one isvc only)",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for every component, over service.yaml's (repeatable)",
    )
    p.add_argument(
        "--console",
        nargs="?",
        type=int,
        const=int(os.environ.get("SANDBOX_CONSOLE_PORT", "8088")),
        default=None,
        metavar="PORT",
        help="also serve the console (a web page of the sandbox) on 127.0.0.1:PORT (default "
        "8088, or SANDBOX_CONSOLE_PORT), beside the gateway; `down` stops it",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "up",
        help="start isvcs (detached) behind the gateway",
        description="Start isvcs and route <isvc>.<namespace>.wikimedia.org to them through the "
        "gateway on 127.0.0.1. Idempotent: unchanged isvcs keep running, changed ones restart.",
    )
    _add_up_args(p, "local")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser(
        "deploy",
        help="up, then send every sample of the isvc through the ingress and check the answers",
        description="What ./scripts/deploy.sh runs: bring isvcs up on a target and smoke-test "
        "them with the samples in their service.yaml. --target auto picks minikube when the "
        "ml-sandbox kube context answers, else local.",
    )
    _add_up_args(p, "auto")
    p.add_argument("--delete", action="store_true", help="remove the isvcs from the target")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("down", help="stop isvcs (all when none is named)")
    p.add_argument("isvcs", nargs="*", metavar="ISVC")
    p.add_argument("--target", choices=targets.TARGETS, default=None, help="default: every target")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="what runs where: components, addresses, states")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--target",
        choices=targets.TARGETS,
        default=None,
        help="ask one target (minikube is asked only when named); default: local and docker",
    )
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "logs", help="print (or follow) the logs of an isvc, the gateway or mediawiki"
    )
    p.add_argument("name", metavar="ISVC|gateway|mediawiki")
    p.add_argument("--component", choices=["predictor", "transformer"], default=None)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("-n", "--lines", type=int, default=100, help="lines of history (default 100)")
    p.add_argument("--target", choices=targets.TARGETS, default=None, help="default: where it runs")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser(
        "predict",
        help="send a request to an isvc through the gateway, with its Host header",
        description="POST to /v1/models/<isvc>:predict on the gateway with Host "
        "<isvc>.<namespace>.wikimedia.org. The body is a sample from service.yaml (by name; the "
        "first one by default) or --data. With a sample, its checks are evaluated too.",
    )
    p.add_argument("isvc")
    p.add_argument("sample", nargs="?", help="a sample name from the isvc's service.yaml")
    p.add_argument("--data", help="the JSON body, or @FILE to read it from a file")
    p.add_argument(
        "--target",
        choices=targets.TARGETS,
        default=None,
        help="whose ingress to send it through: the gateway (local, docker) or minikube's "
        "Istio ingress (default: where the isvc runs, else local)",
    )
    p.set_defaults(func=cmd_predict)


def _running() -> list[state.IsvcRecord]:
    st = state.read()
    return [*st.isvcs.values(), *st.starting.values()]


def _know_running_isvcs() -> None:
    """Make isvcs that run from folders outside services/ (`init --dir`, `--service-dir`) known by
    name, from the service.yaml the state says each was started from: after the folders named by
    the user, before services/."""
    current = set(catalog.search_path())
    dirs = []
    for rec in _running():
        folder = Path(rec.service_file).parent if rec.service_file else None
        if (
            folder
            and folder.is_dir()
            and not folder.is_relative_to(catalog.SERVICES_DIR)
            and folder not in current
            and str(folder) not in dirs
        ):
            dirs.append(str(folder))
    if dirs:
        catalog.add_service_dirs(dirs)


def _check_names(names: list[str]) -> None:
    """Names `down` and `logs` accept: what runs (even when its service.yaml broke since), and
    the catalog's isvcs."""
    running = {r.isvc for r in _running()}
    rest = [n for n in names if n not in running]
    if rest:
        _know_running_isvcs()
        catalog.select(rest)


def _services(args: argparse.Namespace) -> list[Service]:
    _know_running_isvcs()
    if args.all:
        return list(catalog.load_all().values())
    if not args.isvcs:
        known = ", ".join(catalog.load_all())
        raise CatalogError(f"name at least one isvc, or --all; known: {known}")
    return catalog.select(args.isvcs)


def gateway_port(requested: int | None) -> int:
    """--port when given; else the running gateway's port (URLs printed earlier stay true); else
    the default."""
    if requested is not None:
        return requested
    gw = state.read().gateway
    return gw.port if gw else DEFAULT_PORT


def _options(args: argparse.Namespace, target: str) -> UpOptions:
    if args.port is not None and not 0 < args.port < 65536:
        raise UsageError(f"--port must be a TCP port, got {args.port}")
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--env takes KEY=VALUE, got {item!r}")
        if not re.fullmatch(catalog.ENV_NAME, key):
            raise UsageError(
                f"--env {item!r}: {key!r} is not a valid environment variable name (letters, "
                "digits and _, not starting with a digit)"
            )
        env[key] = value
    if args.max_body_bytes is not None and args.max_body_bytes <= 0:
        raise UsageError("--max-body-bytes must be positive")  # the gateway enforces it (413)
    mw = MediaWiki.parse(args.mediawiki)
    if mw.kind == "record":
        print(f"• recording MediaWiki exchanges into {mw.directory}", file=sys.stderr)
    timeout = (
        args.timeout if args.timeout is not None else (900.0 if target == "minikube" else 60.0)
    )
    if timeout <= 0:
        raise UsageError("--timeout must be positive")
    source = args.model_source
    if source not in ("sandbox", "production") and (args.all or len(args.isvcs) != 1):
        raise UsageError("--model-source URI names one model: give exactly one isvc")
    local_path = source not in ("sandbox", "production") and "://" not in source
    if local_path and not Path(source).expanduser().exists():
        raise UsageError(
            f"--model-source {source}: no such file or folder (give a local path that "
            "exists, or a URI: s3://, gs://, https://)"
        )
    return UpOptions(
        gateway_port=gateway_port(args.port),
        mediawiki=mw,
        timeout_s=timeout,
        env=env,
        model_source=source,
        max_body_bytes=args.max_body_bytes,
    )


def cmd_up(args: argparse.Namespace) -> int:
    services = _services(args)
    target = targets.get(targets.resolve(args.target))
    opts = _options(args, target.name)
    _check_console_port(args)
    target.up(services, opts)
    _start_console(args, target.name)
    _print_next_steps(services, target)
    return 0


def _check_console_port(args: argparse.Namespace) -> None:
    if args.console is not None:
        from sandbox.console import launch

        launch.check(args.console)


def _start_console(args: argparse.Namespace, target: str) -> None:
    if args.console is not None:
        from sandbox.console import launch

        launch.ensure(args.console, target)


def _print_next_steps(services: list[Service], target: Target) -> None:
    try:
        base = target.ingress_url()
    except RunError:
        base = f"http://127.0.0.1:{DEFAULT_PORT}"
    for s in services:
        body = s.samples[0].body().decode()
        print(f"\n{s.name}: curl -s {base}{s.predict_path} -H 'Host: {s.host}' -d '{body}'")
    where = "" if target.name == "local" else f" --target {target.name}"
    cli = prog()
    # isvcs from outside services/ are found again (after `down`) with the folder they came from.
    outside = [s.dir for s in services if not s.dir.is_relative_to(catalog.SERVICES_DIR)]
    sd = "".join(f" --service-dir {shlex.quote(str(d))}" for d in dict.fromkeys(outside))
    print(
        f"\n{cli} status{where} | {cli} logs <isvc>{sd} | {cli} predict <isvc>{sd} | "
        f"{cli} up <isvc>{sd} | {cli} down{where}"
    )


def cmd_deploy(args: argparse.Namespace) -> int:
    services = _services(args)
    target = targets.get(targets.resolve(args.target))
    if args.delete:
        target.down([s.name for s in services])
        return 0
    opts = _options(args, target.name)
    _check_console_port(args)
    target.up(services, opts)
    _start_console(args, target.name)
    failed = smoke.run_on(target, services)
    _print_next_steps(services, target)
    if failed:
        print(f"\n✗ {failed} sample(s) failed their checks", file=sys.stderr)
        if opts.mediawiki.kind == "live":
            print(
                "  isvcs that read MediaWiki need the live wikis; offline, deploy with "
                "--mediawiki replay",
                file=sys.stderr,
            )
        return 1
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    names = args.isvcs or None
    if names:
        _check_names(names)
    chosen = [args.target] if args.target else targets.active()
    results = [targets.get(t).down(names) for t in chosen]
    if not names:
        from sandbox.console import launch

        results.append(launch.stop())
    if not names and not any(results):
        print("nothing is running", file=sys.stderr)
    return 0


def all_status(only: str | None = None) -> list[ComponentStatus]:
    if only == "minikube":
        return targets.get("minikube").status()
    rows: list[ComponentStatus] = []
    for name in [only] if only else targets.active():
        rows += targets.get(name).status()
    from sandbox.console import launch

    st = state.read()
    return rows + ingress.status(st) + launch.status(st)


def cmd_status(args: argparse.Namespace) -> int:
    rows = all_status(args.target)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0 if all(r.state in ("running", "ready") for r in rows) else 1
    if not rows:
        print(f"nothing is running (start with: {prog()} up <isvc>)")
        return 0
    print(f"{'TARGET':<9} {'ISVC':<22} {'COMPONENT':<12} {'STATE':<9} {'ADDRESS':<22} PID")
    for r in rows:
        line = f"{r.target:<9} {r.isvc:<22} {r.component:<12} {r.state:<9} {r.address:<22} "
        print(line + f"{r.pid or '-'}" + (f"  ({r.detail})" if r.detail else ""))
    st = state.read()
    if st.gateway:
        for host in sorted(st.routes()):
            print(f"route: Host {host} -> gateway {st.gateway.url}")
    if any(r.state == "orphan" for r in rows):
        print(
            f"orphans belong to this sandbox but are not in its state: `{prog()} down` stops them"
        )
    return 1 if any(r.state not in ("running", "ready") for r in rows) else 0


LOG_NAMES = ("gateway", "mediawiki")


def _check_log_name(name: str, component: str | None) -> None:
    """An isvc that runs or is in the catalog, `gateway` or `mediawiki`; a component it has."""
    if name in LOG_NAMES:
        if component:
            raise UsageError(f"--component is for isvcs; {name} has no components")
        return
    rec = next((r for r in _running() if r.isvc == name), None)
    if rec is None:
        _know_running_isvcs()
        cat = catalog.Catalog()
        if name in cat.broken:
            raise cat.broken[name]
        if name not in cat.services:
            known = [*LOG_NAMES, *cat.services]
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise CatalogError(f"unknown isvc {name!r}{hint}; logs of: {', '.join(known)}")
        have = [n for n, _ in cat.services[name].component_items()]
    else:
        have = list(rec.components)
    if component and component not in have:
        raise UsageError(f"{name} has no {component}; its components: {', '.join(have)}")


def cmd_logs(args: argparse.Namespace) -> int:
    _check_log_name(args.name, args.component)
    if args.name == "gateway":
        log = state.logs_dir() / "gateway.log"
        if not log.exists():
            print("no gateway log (has anything been started?)", file=sys.stderr)
            return 1
        local.LocalBackend().logs([local.file_component(log)], args.follow, args.lines)
        return 0
    target = args.target or targets.running(args.name) or "local"
    return targets.get(target).logs(args.name, args.component, args.follow, args.lines)


def _body(args: argparse.Namespace, service: Service) -> tuple[Sample | None, bytes]:
    if args.data is not None and args.sample:
        raise UsageError("give a sample name or --data, not both")
    if args.data is not None:
        raw = args.data
        if raw.startswith("@"):
            try:
                raw = Path(raw[1:]).read_text()
            except OSError as e:
                raise RunError(f"cannot read {raw[1:]}: {e.strerror}") from None
        return None, raw.encode()
    sample = service.sample(args.sample) if args.sample else service.samples[0]
    return sample, sample.body()


def cmd_predict(args: argparse.Namespace) -> int:
    _know_running_isvcs()
    service = catalog.get(args.isvc)
    sample, body = _body(args, service)
    target = args.target or targets.running(service.name) or "local"
    # Say which MediaWiki answer was missing, where the replay server was asked for one.
    wikis = [c.url for c in state.read().mediawiki.values()]
    for url in wikis:
        diagnose.forget_misses(url)
    status, payload = smoke.post(targets.get(target).ingress_url(), service, body)
    ok = smoke.report(service, sample, status, payload)
    for line in (line for url in wikis for line in diagnose.explain_misses(url)):
        print(line, file=sys.stderr)
    return 0 if ok else 1
