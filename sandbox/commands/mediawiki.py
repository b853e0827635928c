"""`ml-sandbox mediawiki`: the offline MediaWiki Action API (replay server) in the foreground."""

from __future__ import annotations

import argparse

from sandbox.mediawiki import replay


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mediawiki",
        help="serve the offline MediaWiki API (fixture wikis, fault injection) in the foreground",
        description=replay.DESCRIPTION,
        epilog=(
            "Faults: none, slow (answer after --delay seconds), error500, malformed (non-JSON "
            "200), apierror (an API error object), reset (drop the connection). "
            "GET /__replay__/health lists the wikis and the fault in force. "
            "`ml-sandbox up --mediawiki replay` starts the same server in the background."
        ),
    )
    replay.add_arguments(p)
    p.set_defaults(func=cmd_mediawiki)


def cmd_mediawiki(args: argparse.Namespace) -> int:
    return replay.serve(args)
