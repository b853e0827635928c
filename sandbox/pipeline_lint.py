"""A run step's output, read for the one failure offline is to blame for: a lint env whose
pre-commit could not fetch its hook repositories.

inference-services' test variants run `./entrypoint.sh ci-lint ci-unit`, i.e. `tox -e
ci-lint,ci-unit`; `ci-lint` is `pre-commit run --all-files`, which clones each hook repository of
`.pre-commit-config.yaml` from GitHub before it lints anything. Offline that clone fails, and
pre-commit 4.x says so as an unexpected error, exit 3 (pre_commit/error_handler.py), which tox
reports as the env's failure. Captured from outlink's test variant on this machine (tox 4,
pre-commit 4.7.0):

    ci-lint: commands[0]> pre-commit run --all-files --show-diff-on-failure
    [INFO] Initializing environment for https://github.com/pre-commit/pre-commit-hooks.
    An unexpected error has occurred: CalledProcessError: command: ('/usr/bin/git', 'fetch', ...)
    ...
        fatal: unable to access 'https://github.com/pre-commit/pre-commit-hooks/': Could not
        resolve host: github.com
    ...
      ci-lint: FAIL code 3 (5.49=setup[4.88]+cmd[0.61] seconds)

Such a lint did not run: it says nothing about the code. A step whose only failing tox envs are
of this kind is `incomplete`, not `failed`: the pipeline goes on, and exits 3 at the end. A lint
that ran and found something (`FAIL code 1`, no fetch error), a failing unit-test env, or output
this reader does not recognise (no tox summary) stays a failure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# tox 4's line as an env starts a step: "ci-lint: commands[0]> pre-commit run ...".
_TOX_STEP = re.compile(r"^([\w.-]+): (?:commands\[\d+\]|install_deps|install_package\w*)> ")
# tox 4's summary, one line per env: "  ci-lint: FAIL code 3 (...)", "  ci-unit: OK (...)".
_TOX_RESULT = re.compile(r"^\s+([\w.-]+): (OK|SKIP|FAIL code (\d+))\b")
# pre-commit's report of a git command that failed while it fetched a hook repository.
_PRE_COMMIT_GIT = re.compile(
    r"An unexpected error has occurred: CalledProcessError: "
    r"command: \('(?:[^']*/)?git', (?:'-c', '[^']*', )*'(?:fetch|clone)'"
)
# git's own message when the remote cannot be reached (not an auth or missing-revision error).
_GIT_UNREACHABLE = re.compile(
    r"fatal: unable to access '([^']+)': ((?:Could not resolve host|Failed to connect to|"
    r"Connection timed out|Network is unreachable|Could not connect to|Resolving timed out)"
    r"[^\n]*)"
)
PRE_COMMIT_UNEXPECTED = 3  # pre_commit/error_handler.py: 'An unexpected error has occurred'


@dataclass(frozen=True)
class NotRun:
    """A tox env that could not run offline: its env, the hook repository and git's reason."""

    env: str
    url: str
    reason: str


@dataclass
class RunLog:
    """Fed each line of a run step's output; tells which tox envs passed, failed, or could not
    fetch their pre-commit hooks."""

    envs: dict[str, str] = field(default_factory=dict)  # env -> OK | SKIP | FAIL code N
    _env: str | None = None
    _git_failed: set[str] = field(default_factory=set)
    _unreachable: dict[str, tuple[str, str]] = field(default_factory=dict)

    def feed(self, line: str) -> None:
        if m := _TOX_STEP.match(line):
            self._env = m.group(1)
        elif m := _TOX_RESULT.match(line):
            self.envs[m.group(1)] = m.group(2)
        elif self._env is not None:
            if _PRE_COMMIT_GIT.search(line):
                self._git_failed.add(self._env)
            elif (m := _GIT_UNREACHABLE.search(line)) and self._env not in self._unreachable:
                self._unreachable[self._env] = (m.group(1), m.group(2).strip())

    def failed(self) -> list[str]:
        return [env for env, status in self.envs.items() if status.startswith("FAIL")]

    def offline(self) -> list[NotRun]:
        """The tox envs that failed because pre-commit could not fetch their hooks."""
        return [
            NotRun(env, *self._unreachable[env])
            for env in self.failed()
            if self.envs[env] == f"FAIL code {PRE_COMMIT_UNEXPECTED}"
            and env in self._git_failed
            and env in self._unreachable
        ]

    def not_run_offline(self) -> list[NotRun] | None:
        """Those envs when they are all the step's failures; None when some failure is a real
        one, or when the output is not tox's."""
        offline = self.offline()
        if not offline or len(offline) != len(self.failed()):
            return None
        return offline

    @classmethod
    def of(cls, lines: Iterable[str]) -> RunLog:
        log = cls()
        for line in lines:
            log.feed(line.rstrip("\n"))
        return log
