"""A run step's lint that could not fetch its pre-commit hooks offline is told apart from a lint
that ran and failed, from real output (tests/unit/fixtures/pipeline/):

- `outlink-ci-lint-offline.txt`: outlink's test variant (inference-services@bce944c, tox 4.67.16,
  pre-commit 4.7.0), `tox -e ci-lint` on this offline machine;
- `outlink-ci-lint-offline-ci-unit-failed.txt`: its entrypoint (`tox -e ci-lint,ci-unit`) with
  the container's own network (`--mediawiki live`): ci-lint offline and 4 unit tests failing
  (pytest's tracebacks between are left out: they quote the isvc's code);
- `outlink-ci-lint-offline-ci-unit-passed.txt`: the same through `ml-sandbox pipeline` and the
  replay server, ci-unit green (the run step's lines, without the `│` the runner adds);
- `tox-ci-lint-found-something.txt`: tox 4.67.16 and pre-commit 4.7.0 on a tiny repo whose
  local pygrep hook finds a TODO: a lint that ran and failed."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from sandbox import pipeline
from sandbox.pipeline_lint import NotRun, RunLog

FIXTURES = Path(__file__).parent / "fixtures" / "pipeline"
OFFLINE = NotRun(
    "ci-lint",
    "https://github.com/pre-commit/pre-commit-hooks/",
    "Could not resolve host: github.com",
)


def _log(name: str) -> RunLog:
    return RunLog.of((FIXTURES / name).read_text().splitlines())


def test_a_lint_that_could_not_fetch_its_hooks_is_not_run() -> None:
    log = _log("outlink-ci-lint-offline.txt")
    assert log.envs == {"ci-lint": "FAIL code 3"}
    assert log.not_run_offline() == [OFFLINE]


def test_with_the_unit_tests_green_the_step_is_only_unverified() -> None:
    log = _log("outlink-ci-lint-offline-ci-unit-passed.txt")
    assert log.envs == {"ci-lint": "FAIL code 3", "ci-unit": "OK"}
    assert log.not_run_offline() == [OFFLINE]


def test_a_real_failure_beside_an_offline_lint_stays_a_failure() -> None:
    log = _log("outlink-ci-lint-offline-ci-unit-failed.txt")
    assert log.envs == {"ci-lint": "FAIL code 3", "ci-unit": "FAIL code 1"}
    assert log.not_run_offline() is None
    assert log.offline() == [OFFLINE]  # still named in the failed stage's notes


def test_a_lint_that_ran_and_found_something_is_a_failure() -> None:
    log = _log("tox-ci-lint-found-something.txt")
    assert log.envs == {"ci-lint": "FAIL code 1", "ci-unit": "OK"}
    assert log.offline() == [] and log.not_run_offline() is None


@pytest.mark.parametrize(
    "lines",
    [
        # Not tox's output: nothing says which part failed.
        ["fatal: unable to access 'https://github.com/x/': Could not resolve host: github.com"],
        # pre-commit could not fetch, but for a reason the network is not to blame for.
        [
            "ci-lint: commands[0]> pre-commit run --all-files",
            "An unexpected error has occurred: CalledProcessError: command: "
            "('/usr/bin/git', 'fetch', 'origin', '--tags')",
            "    fatal: unable to access 'https://github.com/x/': The requested URL returned "
            "error: 403",
            "  ci-lint: FAIL code 3 (1.0 seconds)",
        ],
    ],
)
def test_anything_else_is_a_failure(lines: list[str]) -> None:
    assert RunLog.of(lines).not_run_offline() is None


def _results(*statuses: str) -> list[pipeline.StageResult]:
    return [pipeline.StageResult(f"s{i}", status=s) for i, s in enumerate(statuses)]


def test_exit_codes() -> None:
    assert pipeline.exit_code(_results("ok", "ok")) == 0
    assert pipeline.exit_code(_results("incomplete", "ok")) == 3
    assert pipeline.exit_code(_results("incomplete", "failed")) == 1
    assert pipeline.exit_code(_results("failed", "skipped")) == 1


def test_the_summary_names_what_did_not_run() -> None:
    results = _results("incomplete", "ok")
    results[0].notes.append("ci-lint: NOT RUN (offline: ...)")
    out = io.StringIO()
    pipeline.summary(results, out)
    text = out.getvalue()
    assert "  s0: ci-lint: NOT RUN (offline: ...)" in text
    assert "pipeline NOT VERIFIED: passed, except checks that could not run offline (s0;" in text


def test_the_run_gitconfig_sends_each_mirrored_url_to_its_clone(tmp_path: Path) -> None:
    from sandbox.images.blubber import mirrors

    url = 'https://example.org/a;b#c"d'  # gitconfig comment characters and a quote
    text, used = mirrors.run_gitconfig({url: tmp_path})
    [mirror] = used
    assert mirror.mount_path.startswith(mirrors.MOUNT_DIR + "/")
    # git's own reading of it
    config = tmp_path / "gitconfig"
    config.write_text(text)
    got = subprocess.run(
        ["git", "config", "--file", str(config), "--get-regexp", r"^(url\..*\.insteadof|safe\.)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert got == [
        f"safe.directory {mirror.mount_path}",
        f"safe.directory {mirror.mount_path}/.git",
        f"url.file://{mirror.mount_path}.insteadof {url}",
    ]
