"""`up`, `down`, `status`, `logs`, `predict`, `deploy`: run isvcs, call them via the gateway."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path

from sandbox import catalog
from sandbox.catalog import CatalogError, Sample, Service
from sandbox.checks import evaluate
from sandbox.runtime import ingress, state, targets
from sandbox.runtime.base import ComponentStatus, RuntimeError_, UpOptions
from sandbox.runtime.processes import alive

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
        default=DEFAULT_PORT,
        help="gateway port on 127.0.0.1 (default 8080, or SANDBOX_GATEWAY_PORT)",
    )
    p.add_argument(
        "--mediawiki",
        default="live",
        metavar="live|replay|URL",
        help="where isvcs that call MediaWiki send requests: the real wikis (live, default), the "
        "offline replay server started for you (replay), or a MediaWiki base URL",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="readiness deadline, seconds (default 60; 900 on minikube, where a first deploy "
        "pulls the stack's sidecar images)",
    )
    p.add_argument(
        "--max-body-bytes", type=int, default=None, help="request body limit (default 1 MiB)"
    )
    p.add_argument(
        "--model-source",
        default="sandbox",
        metavar="sandbox|production|URI",
        help="the model to stage into /mnt/models: built from the training script (sandbox, "
        "default), Wikimedia's public mirror (production; needs internet), or a URI fetched with "
        "kserve-storage (s3://..., gs://..., https://..., a local path; one isvc only)",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for every component, over service.yaml's (repeatable)",
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
    p.set_defaults(func=cmd_predict)


def _services(args: argparse.Namespace) -> list[Service]:
    if args.all:
        return list(catalog.load_all().values())
    if not args.isvcs:
        known = ", ".join(catalog.load_all())
        raise CatalogError(f"name at least one isvc, or --all; known: {known}")
    return catalog.select(args.isvcs)


def _options(args: argparse.Namespace, target: str) -> UpOptions:
    if not 0 < args.port < 65536:
        raise RuntimeError_(f"--port must be a TCP port, got {args.port}")
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RuntimeError_(f"--env takes KEY=VALUE, got {item!r}")
        env[key] = value
    if args.max_body_bytes is not None:
        if args.max_body_bytes <= 0:
            raise RuntimeError_("--max-body-bytes must be positive")
        env["MAX_BODY_BYTES"] = str(args.max_body_bytes)
    mw = args.mediawiki
    if mw not in ("live", "replay") and not mw.startswith(("http://", "https://")):
        raise RuntimeError_(f"--mediawiki must be live, replay or an http(s) URL, got {mw!r}")
    timeout = (
        args.timeout if args.timeout is not None else (900.0 if target == "minikube" else 60.0)
    )
    if timeout <= 0:
        raise RuntimeError_("--timeout must be positive")
    source = args.model_source
    if source not in ("sandbox", "production") and (args.all or len(args.isvcs) != 1):
        raise RuntimeError_("--model-source URI names one model: give exactly one isvc")
    return UpOptions(
        gateway_port=args.port, mediawiki=mw, timeout_s=timeout, env=env, model_source=source
    )


def cmd_up(args: argparse.Namespace) -> int:
    services = _services(args)
    name = targets.resolve(args.target)
    targets.get(name).up(services, _options(args, name))
    _print_next_steps(services)
    return 0


def _print_next_steps(services: list[Service]) -> None:
    gw = state.read().get("gateway")
    port = gw["port"] if gw else DEFAULT_PORT
    for s in services:
        body = s.samples[0].body().decode()
        print(
            f"\n{s.name}: curl -s http://127.0.0.1:{port}{s.predict_path} "
            f"-H 'Host: {s.host}' -d '{body}'"
        )
    print("\nml-sandbox status | logs <isvc> | predict <isvc> | down")


def cmd_deploy(args: argparse.Namespace) -> int:
    services = _services(args)
    name = targets.resolve(args.target)
    target = targets.get(name)
    if args.delete:
        target.down([s.name for s in services])
        return 0
    target.up(services, _options(args, name))
    if name == "minikube":
        return 0  # the minikube target smoke-tests through the Istio ingress itself
    failed = 0
    for s in services:
        for sample in s.samples:
            failed += not _send_and_report(s, sample, sample.body(), quiet=True)
    _print_next_steps(services)
    if failed:
        print(f"\n✗ {failed} sample(s) failed their checks", file=sys.stderr)
        return 1
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    names = args.isvcs or None
    if names:
        catalog.select(names)
    chosen = [args.target] if args.target else _active_targets()
    if not chosen:
        print("nothing is running", file=sys.stderr)
    for name in chosen:
        targets.get(name).down(names)
    return 0


def _active_targets() -> list[str]:
    st = state.read()
    active = {v.get("target", k.split("/")[0]) for k, v in st["isvcs"].items()}
    if not active and st.get("gateway"):
        active.add("local")  # a gateway with no isvc left: `down` still cleans it up
    return [t for t in targets.TARGETS if t in active]


def _all_status(only: str | None = None) -> list[ComponentStatus]:
    st = state.read()
    rows: list[ComponentStatus] = []
    if only == "minikube":
        return targets.get("minikube").status()
    for name in [only] if only else _active_targets():
        rows += targets.get(name).status()
    for key in ("gateway", "mediawiki"):
        entry = st.get(key)
        if entry:
            ok = alive(entry["process"])
            addr = f"127.0.0.1:{entry['port']}" if key == "gateway" else entry["url"]
            rows.append(
                ComponentStatus(
                    target="-",
                    isvc="-",
                    component=key,
                    state="running" if ok else "exited",
                    address=addr,
                    pid=entry["process"]["pid"],
                    detail="" if ok else f"see {entry['process']['log']}",
                )
            )
    return rows


def cmd_status(args: argparse.Namespace) -> int:
    rows = _all_status(args.target)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    if not rows:
        print("nothing is running (start with: ml-sandbox up <isvc>)")
        return 0
    print(f"{'TARGET':<9} {'ISVC':<22} {'COMPONENT':<12} {'STATE':<9} {'ADDRESS':<22} PID")
    for r in rows:
        line = f"{r.target:<9} {r.isvc:<22} {r.component:<12} {r.state:<9} {r.address:<22} "
        print(line + f"{r.pid or '-'}" + (f"  ({r.detail})" if r.detail else ""))
    gw = state.read().get("gateway")
    if gw:
        for host in sorted(state.read()["routes"]):
            print(f"route: Host {host} -> gateway http://127.0.0.1:{gw['port']}")
    return 1 if any(r.state not in ("running", "ready") for r in rows) else 0


def cmd_logs(args: argparse.Namespace) -> int:
    if args.name not in ("gateway", "mediawiki"):
        catalog.get(args.name)
    target = args.target
    if target is None:
        st = state.read()
        in_docker = f"docker/{args.name}" in st["isvcs"] or (
            args.name == "mediawiki" and (st.get("docker") or {}).get("mediawiki")
        )
        target = "docker" if in_docker else "local"
    return targets.get(target).logs(args.name, args.component, args.follow, args.lines)


def _body(args: argparse.Namespace, service: Service) -> tuple[Sample | None, bytes]:
    if args.data is not None and args.sample:
        raise RuntimeError_("give a sample name or --data, not both")
    if args.data is not None:
        raw = args.data
        if raw.startswith("@"):
            try:
                raw = Path(raw[1:]).read_text()
            except OSError as e:
                raise RuntimeError_(f"cannot read {raw[1:]}: {e.strerror}") from None
        return None, raw.encode()
    sample = service.sample(args.sample) if args.sample else service.samples[0]
    return sample, sample.body()


def _post(service: Service, body: bytes) -> tuple[int, bytes]:
    st = state.read()
    base = ingress.gateway_url(st)
    if base is None:
        raise RuntimeError_(
            f"the gateway is not running; start the isvc: ml-sandbox up {service.name}"
        )
    req = urllib.request.Request(
        base + service.predict_path,
        data=body,
        headers={"Host": service.host, "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        raise RuntimeError_(f"cannot reach the gateway at {base}: {e}") from None


def _send_and_report(service: Service, sample: Sample | None, body: bytes, quiet=False) -> bool:
    status, payload = _post(service, body)
    label = f"{service.name}/{sample.name}" if sample else service.name
    try:
        pretty = json.dumps(json.loads(payload), indent=None if quiet else 2, ensure_ascii=False)
    except ValueError:
        pretty = payload.decode(errors="replace")
    if sample is None:
        print(pretty)
        ok = 200 <= status < 300
        if not ok:
            print(f"HTTP {status}", file=sys.stderr)
        return ok
    failures = evaluate(sample, status, payload)
    mark = "✓" if not failures else "✗"
    print(f"{mark} {label}: HTTP {status} {pretty if not quiet else pretty[:200]}")
    for f in failures:
        print(f"    {f}", file=sys.stderr)
    return not failures


def cmd_predict(args: argparse.Namespace) -> int:
    service = catalog.get(args.isvc)
    sample, body = _body(args, service)
    return 0 if _send_and_report(service, sample, body) else 1
