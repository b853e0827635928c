"""Run a locust test headless against an ingress, with progress, into a results folder.

Locust runs in a venv of its own test's pins (`sandbox.venvs`), in its own session, so a
Ctrl-C reaches this process only: locust is then asked to stop, and killed if it does not within
`STOP_GRACE_S`. It is stopped with SIGINT, on which headless locust writes its HTML report, then
its CSVs, and fires `quitting` (production's comparison); on SIGTERM it skips the report
(locust 2.31.5 main.py).

The run time is timed here, from the first row of locust's history: locust's own `--run-time`
timer starts from its event loop's cached clock, which is as old as the locustfile's import, so a
locustfile that loads data at import (production's read their CSVs, a few seconds) runs for that
much less. `--run-time` is still given, later, as a backstop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox import venvs
from sandbox.errors import RunError
from sandbox.load import report
from sandbox.load.suite import LoadTest
from sandbox.runtime.lifecycle import signals_interrupt

PLOT_SCRIPT = Path(__file__).with_name("plot.py")
PROGRESS_EVERY_S = 5.0
STOP_GRACE_S = 15.0
# How long past --run-time locust may take to stop before it is stopped.
OVERRUN_S = 60.0
LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class Settings:
    host: str  # the target's ingress base URL
    users: int | None
    spawn_rate: float | None
    run_time_s: int | None


@dataclass(frozen=True)
class Outputs:
    folder: Path
    prefix: str

    @property
    def stats(self) -> Path:
        return self.folder / f"{self.prefix}_stats.csv"

    @property
    def history(self) -> Path:
        return self.folder / f"{self.prefix}_stats_history.csv"

    @property
    def failures(self) -> Path:
        return self.folder / f"{self.prefix}_failures.csv"

    @property
    def html(self) -> Path:
        return self.folder / "report.html"

    @property
    def log(self) -> Path:
        return self.folder / "locust.log"

    @property
    def plot(self) -> Path:
        return self.folder / "plot.png"


def venv_python(test: LoadTest) -> Path:
    return venvs.python_of(venvs.ensure(test.requirements))


def command(python: Path, test: LoadTest, settings: Settings, out: Outputs) -> list[str]:
    """Locust's command line: the test's own configuration (production's locust.conf, read from
    its folder), overridden only where the user or the sandbox must."""
    cmd = [str(python), "-m", "locust", "-f", str(test.locustfile), "--headless", "--only-summary"]
    cmd += ["--host", settings.host]
    users = _given(settings.users, test.defaults.get("users"))
    rate = _given(settings.spawn_rate, test.defaults.get("spawn_rate"))
    run_time = duration(test, settings)
    if users is not None:
        cmd += ["--users", str(int(users))]
    if rate is not None:
        cmd += ["--spawn-rate", f"{rate:g}"]
    if run_time is not None:
        cmd += ["--run-time", f"{int(run_time + OVERRUN_S)}s"]  # timed here; a backstop
    cmd += ["--csv", str(out.folder / out.prefix), "--html", str(out.html)]
    return cmd


def duration(test: LoadTest, settings: Settings) -> float | None:
    """Seconds of load (None: what the test's own configuration says)."""
    return _given(settings.run_time_s, test.defaults.get("run_time"))


def _given(value: float | None, default: float | None) -> float | None:
    return value if value is not None else default


def environment(test: LoadTest) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in venvs.LEAKY_ENV}
    env.update(test.env)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # write nothing into the checkout
    if test.kind == "production":
        env["PYTHONPATH"] = str(test.cwd)  # as production's Makefile runs it
    return env


def run(test: LoadTest, settings: Settings, out: Outputs, expected_s: float) -> int:
    """Run locust to its end, printing progress; its exit code. Raises RunError when it wrote no
    stats (with its log's tail)."""
    python = venv_python(test)
    out.folder.mkdir(parents=True, exist_ok=True)
    cmd = command(python, test, settings, out)
    seconds = duration(test, settings)
    started = time.monotonic()
    stop_at: float | None = None
    interrupted = False
    with signals_interrupt(), out.log.open("wb") as log:  # SIGTERM, SIGHUP: as Ctrl-C
        proc = subprocess.Popen(
            cmd,
            cwd=test.cwd,
            env=environment(test),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_sigint_default,
        )
        try:
            last = 0.0
            while proc.poll() is None:
                time.sleep(0.25)
                now = time.monotonic()
                if seconds is not None and stop_at is None and report.read_history(out.history):
                    stop_at = now + seconds  # the load has started
                if stop_at is not None and now >= stop_at and not interrupted:
                    interrupted = True
                    _signal(proc, signal.SIGINT)  # as --run-time would: report, CSVs, quitting
                if now - last >= PROGRESS_EVERY_S:
                    last = now
                    p = report.latest_progress(out.history)
                    if p is not None:
                        print(p.line(), file=sys.stderr, flush=True)
                if now > started + expected_s + OVERRUN_S * 2:
                    print("  ✗ locust did not stop in time: stopping it", file=sys.stderr)
                    stop(proc)
        except BaseException:
            stop(proc)
            print(f"  locust stopped; what it measured is in {out.folder}", file=sys.stderr)
            raise
    if not out.stats.is_file():
        raise RunError(
            f"locust exited {proc.returncode} without results. Its output ({out.log}):\n"
            + tail(out.log)
        )
    return proc.returncode


def _sigint_default() -> None:
    """In locust's process: SIGINT acted on even when this command was started with it ignored
    (`cmd &` in a script, nohup): it is how locust is stopped with its results written."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signal(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def stop(proc: subprocess.Popen) -> None:
    """Ask locust's session to stop (SIGINT: it still writes its results), then kill it: nothing
    it started is left running."""
    if proc.poll() is not None:
        return
    _signal(proc, signal.SIGINT)
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        _signal(proc, signal.SIGKILL)
        proc.wait()


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no output)"
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


def plot(test: LoadTest, out: Outputs, title: str) -> Path:
    """Draw the run's plot with the test's venv; its path. RunError when it cannot be drawn."""
    python = venv_python(test)
    proc = subprocess.run(
        [str(python), str(PLOT_SCRIPT), str(out.history), str(out.plot), title],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in venvs.LEAKY_ENV},
        timeout=120,
    )
    if proc.returncode != 0 or not out.plot.is_file():
        raise RunError(f"the plot could not be drawn: {(proc.stderr or proc.stdout).strip()}")
    return out.plot
