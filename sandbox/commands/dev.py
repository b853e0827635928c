"""`dev`: watch an isvc's files and roll it on every save, in the foreground, until Ctrl-C."""

from __future__ import annotations

import argparse
import sys

from sandbox import catalog
from sandbox.commands import runtime
from sandbox.dev.loop import DevLoop
from sandbox.errors import RunError
from sandbox.paths import run_dir
from sandbox.runtime import targets
from sandbox.runtime.options import UpOptions
from sandbox.runtime.targets import Target


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dev",
        help="serve an isvc and roll it on every save (watch mode), until Ctrl-C",
        description="Serve the isvc, then watch what it uses (the entrypoints' folders, "
        "pythonpath, requirement files, service.yaml, the model's build folder) and roll it on "
        "every save, as `up` does: the new version beside the old, the route switched once it is "
        "ready. A version that does not become ready never takes over: its error and traceback "
        "are printed and the old one keeps serving. After each roll the samples are sent and "
        "checked. On the local target each version is forked from a warm process of the isvc's "
        "venv, so a code change serves in about a second. Ctrl-C stops what dev started.",
    )
    p.add_argument("isvc", help="the isvc to develop (see `ml-sandbox services`)")
    p.add_argument("--target", default="local", choices=targets.TARGETS, help="default local")
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help="gateway port on 127.0.0.1 (default: the port of the running gateway, else 8080 or "
        "SANDBOX_GATEWAY_PORT), as for `up`",
    )
    p.add_argument(
        "--mediawiki",
        default="live",
        metavar="live|replay|replay:DIR|record[:DIR]|URL",
        help="where isvcs that call MediaWiki send requests, as for `up` (default live)",
    )
    p.add_argument(
        "--timeout", type=float, default=None, help="readiness deadline of a roll, seconds"
    )
    p.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra environment"
    )
    p.set_defaults(func=cmd_dev)


def make_target(name: str) -> tuple[Target, object | None]:
    """The target to roll on, and (local) the zygotes to stop at the end."""
    if name == "local":
        from sandbox.dev.zygotes import ZygoteBackend, Zygotes
        from sandbox.runtime.lifecycle import HostTarget

        zygotes = Zygotes(run_dir() / "dev")
        return HostTarget(ZygoteBackend(zygotes)), zygotes
    target = targets.get(name)  # minikube: its recorded facts, or a clear error
    if name == "minikube":
        from sandbox.runtime.minikube import context_answers

        if not context_answers():
            raise RunError(
                "the cluster sandbox does not answer: start it (`ansible-playbook sandbox.yml`) "
                "or develop on --target local"
            )
    return target, None


def up_options(args: argparse.Namespace) -> UpOptions:
    """`up`'s options for dev's arguments, checked and resolved as `up` does them (the gateway's
    port included: the running gateway's unless --port names another)."""
    up_args = argparse.Namespace(
        port=args.port,
        env=args.env,
        max_body_bytes=None,
        mediawiki=args.mediawiki,
        timeout=args.timeout,
        model_source="sandbox",
        all=False,
        isvcs=[args.isvc],
    )
    return runtime._options(up_args, args.target)


def cmd_dev(args: argparse.Namespace) -> int:
    service = catalog.get(args.isvc)
    opts = up_options(args)
    target, zygotes = make_target(args.target)
    loop = DevLoop(service, target, opts)
    try:
        loop.run()
    except KeyboardInterrupt:
        print("\n• stopping what dev started …", file=sys.stderr, flush=True)
        return 130
    finally:
        try:
            target.down([service.name])
        except RunError as e:
            print(f"✗ {e}", file=sys.stderr)
        finally:
            if zygotes is not None:
                zygotes.stop_all()
    return 0
