"""`ml-sandbox pipeline`: an isvc's CI pipeline (.pipeline/config.yaml) run locally."""

from __future__ import annotations

import argparse
from pathlib import Path

from sandbox import pipeline


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
            "--skip-lint runs the test variant's entrypoint without ci-lint."
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
    p.set_defaults(func=cmd_pipeline)


def cmd_pipeline(args: argparse.Namespace) -> int:
    extra = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise pipeline.PipelineError(f"--env {item!r}: expected K=V")
        extra[key] = value
    pipe = pipeline.load(args.source, args.name)
    print(
        f"pipeline {pipe.name}: {len(pipe.stages)} stages from {pipe.blubberfile} "
        f"(context {pipe.directory})",
        flush=True,
    )
    results = pipeline.run(
        pipe, only=args.stages, keep_going=args.keep_going, skip_lint=args.skip_lint, env=extra
    )
    pipeline.summary(results)
    return 1 if any(r.status == "failed" for r in results) else 0
