"""`ml-sandbox console`: the local Lift Wing console, a web page on 127.0.0.1."""

from __future__ import annotations

import argparse
import os

from sandbox.runtime import targets


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "console",
        help="serve the console: a web page of the sandbox's isvcs, logs and answers",
        description="Serve a page on http://127.0.0.1:PORT/ that shows every isvc (its "
        "components and their state), its service.yaml, samples to run with their checks, a "
        "request editor, live logs and recent requests, and restarts, stops or rebuilds an isvc "
        "by running this CLI. It runs in the foreground until Ctrl-C; `up --console` runs it "
        "beside the gateway instead. Loopback only; actions need the page's per-run token.",
    )
    p.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("SANDBOX_CONSOLE_PORT", "8088")),
        help="port on 127.0.0.1 (default 8088, or SANDBOX_CONSOLE_PORT)",
    )
    p.add_argument(
        "--target",
        choices=targets.TARGETS,
        default=None,
        help="show one target (minikube is shown only when named); default: local and docker",
    )
    p.set_defaults(func=cmd_console)


def cmd_console(args: argparse.Namespace) -> int:
    from sandbox.console import server  # aiohttp is imported only for this command
    from sandbox.errors import RunError

    if not 0 < args.port < 65536:
        raise RunError(f"--port must be a TCP port, got {args.port}")
    server.serve(args.port, args.target)
    return 0
