"""`ml-sandbox mediawiki`: the MediaWiki replay server (emulate, replay, record), foreground."""

from __future__ import annotations

import argparse

from sandbox.mediawiki import replay


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mediawiki",
        help="serve the wikis' APIs offline (emulate fixtures, replay or record real traffic, "
        "fault injection) in the foreground",
        description=replay.DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  ml-sandbox mediawiki                         # emulate the packaged fixture wikis\n"
            "  ml-sandbox mediawiki --record fixtures/mw    # with internet: record real traffic\n"
            "  ml-sandbox mediawiki --replay fixtures/mw    # offline: replay it byte for byte\n"
            "  ml-sandbox mediawiki --replay fixtures/mw --emulate   # recordings, then fixtures\n"
            "\n"
            "Faults: none, slow (answer after --delay seconds), error500, malformed (non-JSON "
            "200),\napierror (an API error object), reset (drop the connection), in every "
            "mode.\nGET /__replay__/health shows the mode, the wikis, the recordings and the "
            "fault in force.\n`ml-sandbox up --mediawiki replay` starts the emulator in the "
            "background."
        ),
    )
    replay.add_arguments(p)
    p.set_defaults(func=cmd_mediawiki)


def cmd_mediawiki(args: argparse.Namespace) -> int:
    return replay.serve(args)
