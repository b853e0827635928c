"""`ml-sandbox pipeline`: an isvc's CI pipeline (.pipeline/config.yaml) run locally."""

from __future__ import annotations

import argparse
from pathlib import Path

from sandbox import pipeline
from sandbox.pipeline_wiki import WikiMode
from sandbox.runtime.options import MediaWiki


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pipeline",
        help="run an isvc's CI pipeline (.pipeline/config.yaml) as Jenkins would, pushing nothing",
        description=(
            "Run pipeline NAME of CHECKOUT/.pipeline/config.yaml (Wikimedia's PipelineLib) the "
            "way Jenkins does: each stage builds its Blubber variant (offline translation), "
            "`run: true` runs the image's entrypoint and fails the pipeline on a non-zero exit, "
            "publish stages print the image name and tags they would push. Exit 0 when every "
            "stage passed, 1 when one failed, 2 for a bad config or name."
        ),
        epilog=(
            "Offline, pre-commit (tox env ci-lint) cannot fetch its hooks from GitHub: "
            "--skip-lint runs the test variant's entrypoint without ci-lint. Unit tests that "
            "call https://<lang>.wikipedia.org reach the sandbox's MediaWiki replay server by "
            "default (--mediawiki replay); a request its fixtures lack fails with HTTP 501 "
            "and the stage's notes name it."
        ),
    )
    p.add_argument("name", metavar="NAME", help="a pipeline of config.yaml, e.g. outlink")
    p.add_argument(
        "--source",
        type=Path,
        default=Path("."),
        metavar="CHECKOUT",
        help="the repository holding .pipeline/ (default: the current directory)",
    )
    p.add_argument(
        "--stage",
        action="append",
        dest="stages",
        metavar="STAGE",
        help="run only this stage (repeatable), e.g. --stage run-test",
    )
    p.add_argument(
        "--keep-going", action="store_true", help="run the later stages after one failed"
    )
    p.add_argument(
        "--skip-lint",
        action="store_true",
        help="run test entrypoints without their ci-lint argument (pre-commit needs GitHub)",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="add to every run step's environment, after the stage's run.env (repeatable), "
        "e.g. WIKI_URL=... for an isvc whose tests call a wiki",
    )
    p.add_argument(
        "--mediawiki",
        default="replay",
        metavar="MODE",
        help="where run steps' calls to the wikis go: replay (default: the sandbox's MediaWiki "
        "replay server answers https://<wiki> from its fixtures, through a per-run CA the "
        "container trusts), replay:DIR (recordings first, then the fixtures) or live (the "
        "container's own network, as on Jenkins)",
    )
    p.set_defaults(func=cmd_pipeline)


def wiki_mode(value: str) -> WikiMode | None:
    """`--mediawiki` of a pipeline: None for live, else the replay server's mode; a UsageError
    (exit 2) for the modes other commands know that a pipeline cannot use."""
    mode = MediaWiki.parse(value)
    if mode.kind == "live":
        return None
    if mode.kind == "emulate":
        return WikiMode()
    if mode.kind == "replay" and mode.directory:
        return WikiMode(Path(mode.directory))
    raise pipeline.PipelineError(
        f"--mediawiki {value}: a pipeline runs with live, replay or replay:DIR"
    )


def cmd_pipeline(args: argparse.Namespace) -> int:
    extra = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise pipeline.PipelineError(f"--env {item!r}: expected K=V")
        extra[key] = value
    mediawiki = wiki_mode(args.mediawiki)
    pipe = pipeline.load(args.source, args.name)
    print(
        f"pipeline {pipe.name}: {len(pipe.stages)} stages from {pipe.blubberfile} "
        f"(context {pipe.directory})",
        flush=True,
    )
    results = pipeline.run(
        pipe,
        only=args.stages,
        keep_going=args.keep_going,
        skip_lint=args.skip_lint,
        env=extra,
        mediawiki=mediawiki,
    )
    pipeline.summary(results)
    return 1 if any(r.status == "failed" for r in results) else 0
