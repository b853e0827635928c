"""The console's actions, each one or more runs of the CLI itself (`python -m sandbox ...`).

Running the CLI, rather than calling into it, keeps every action exactly what the user would
type: the same argument checks, the same state lock, the same signal handling and roll-back
(which needs a main thread), and the same output, which the page shows as it comes. One action
runs at a time; the output of the last ones is kept for the page to read.

The sandbox does not record the options `up` was given, so `restart` and `start` rebuild them
from what the state does record: the gateway's port and body limit, and the MediaWiki replay
server's mode, remembered while the console runs (stopping the last isvc stops the gateway too).
(`--env` and `--model-source` given to the first `up` are not on record.)
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from sandbox import catalog
from sandbox.errors import RunError
from sandbox.hints import prog
from sandbox.runtime import lifecycle, processes, state, targets

KEPT_JOBS = 20
ACTIONS = ("start", "restart", "stop", "rebuild-model")


# The last options seen on record, per target: stopping the last isvc stops the gateway and the
# replay server too, and a later start from the page should bring them back as they were.
_last_options: dict[str, list[str]] = {}


def _up_options(st: state.State, target: str) -> list[str]:
    args: list[str] = []
    if st.gateway:
        args += ["--port", str(st.gateway.port)]
        if st.gateway.max_body_bytes is not None:
            args += ["--max-body-bytes", str(st.gateway.max_body_bytes)]
    mw = st.mediawiki.get(target) or next(iter(st.mediawiki.values()), None)
    if mw is not None:
        args += ["--mediawiki", str(lifecycle.replay_mode(mw))]
    if st.gateway:
        _last_options[target] = args
    return ["--target", target, *(args if st.gateway else _last_options.get(target, args))]


def commands(action: str, isvc: str, default_target: str = "local") -> list[list[str]]:
    """The CLI command lines (without the program) that carry out `action` on `isvc`."""
    catalog.get(isvc)  # an unknown isvc is a CatalogError, as on the command line
    if action not in ACTIONS:
        raise RunError(f"unknown action {action!r}; one of: {', '.join(ACTIONS)}")
    st = state.read()
    target = targets.running(isvc) or default_target
    down = ["down", isvc, "--target", target]
    up = ["up", isvc, *_up_options(st, target)]
    running = targets.running(isvc) is not None
    if action == "stop":
        return [down]
    if action == "start":
        return [up]
    if action == "restart":
        return [down, up] if running else [up]
    # rebuild-model: the training script again, then the isvc restaged from the new file.
    build = ["models", "build", isvc, "--force"]
    return [build, down, up] if running else [build]


@dataclass
class Job:
    id: int
    action: str
    isvc: str
    steps: list[list[str]]
    started: float = field(default_factory=time.time)
    output: list[str] = field(default_factory=list)
    returncode: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "isvc": self.isvc,
            "commands": [shlex.join([prog(), *s]) for s in self.steps],
            "started": self.started,
            "output": "".join(self.output),
            "done": self.returncode is not None,
            "returncode": self.returncode,
        }


def child_env() -> dict[str, str]:
    """The console's environment for the CLI it runs, without the sandbox's process mark: the
    commands it runs are the console's, not isvc processes (`status` must not call them orphans);
    what they start gets the mark from `processes.spawn` as always."""
    env = {k: v for k, v in os.environ.items() if k != processes.MARK_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Jobs:
    def __init__(self) -> None:
        self.jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._running: Job | None = None
        self._tasks: set[asyncio.Task] = set()

    def start(self, action: str, isvc: str, default_target: str) -> Job:
        if self._running is not None:
            raise RunError(
                f"another action is running ({self._running.action} {self._running.isvc}); "
                "wait for it to finish"
            )
        job = Job(next(self._ids), action, isvc, commands(action, isvc, default_target))
        self.jobs[job.id] = job
        for old in sorted(self.jobs)[:-KEPT_JOBS]:
            del self.jobs[old]
        self._running = job
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: Job) -> None:
        try:
            for step in job.steps:
                job.output.append(f"$ {shlex.join([prog(), *step])}\n")
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "sandbox",
                    *step,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                    env=child_env(),
                    limit=4 * 1024 * 1024,  # the longest output line read whole
                )
                assert proc.stdout is not None
                async for line in proc.stdout:
                    job.output.append(line.decode(errors="replace"))
                code = await proc.wait()
                if code != 0:
                    job.returncode = code
                    return
            job.returncode = 0
        except Exception as e:  # shown on the page, never a traceback
            job.output.append(f"the console could not run the command: {e}\n")
            job.returncode = 1
        finally:
            self._running = None
