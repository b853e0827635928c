"""Detached processes: rotated private logs, the sandbox's mark, and never signalling a process
that is not proven ours."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox.runtime import logpipe, processes

pytestmark = pytest.mark.unit


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SANDBOX_RUN_DIR", str(tmp_path / "run"))
    return tmp_path / "run"


def _wait_dead(rec: processes.ProcessRecord, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while processes.alive(rec):
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_logpipe_rotates_by_size_and_keeps_a_few_files(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    script = "import sys\nfor i in range(400): print(f'line {i:04d} ' + 'x' * 40)"
    code = logpipe.main(
        [
            "--log",
            str(log),
            "--max-bytes",
            "2000",
            "--keep",
            "3",
            "--",
            sys.executable,
            "-c",
            script,
        ]
    )
    assert code == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["x.log", "x.log.1", "x.log.2"]
    assert all((tmp_path / f).stat().st_size <= 2000 for f in files)
    assert all((tmp_path / f).stat().st_mode & 0o777 == 0o600 for f in files)
    text = processes.tail(log, 1000)
    assert "line 0399" in text and "--- exited with code 0" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("line ")]
    assert lines == sorted(lines)  # read across the rotation, oldest first


def test_logpipe_passes_the_exit_code_through(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    assert logpipe.main(["--log", str(log), "--", sys.executable, "-c", "raise SystemExit(3)"]) == 3
    assert "exited with code 3" in log.read_text()


def test_spawn_marks_the_process_and_tail_since_shows_one_run(run_dir: Path) -> None:
    log = run_dir / "logs" / "a.log"
    first = processes.spawn([sys.executable, "-c", "print('first run')"], log, env=dict(os.environ))
    _wait_dead(first)
    second = processes.spawn(
        [sys.executable, "-c", "import time; print('second run', flush=True); time.sleep(30)"],
        log,
        env=dict(os.environ),
    )
    try:
        # The mark is in the environment the child execs with: wait out the fork-to-exec window.
        deadline = time.monotonic() + 10
        while not processes.carries_mark(second.pid):
            assert time.monotonic() < deadline, "the spawned process never carried the mark"
            time.sleep(0.01)
        while "second run" not in processes.tail(log, 50, since=second.log_offset):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        this_run = processes.tail(log, 50, since=second.log_offset)
        assert "first run" not in this_run
        assert "first run" in processes.tail(log, 50)
        assert (run_dir / "logs").stat().st_mode & 0o777 == 0o700
        assert log.stat().st_mode & 0o777 == 0o600
    finally:
        processes.stop(second)
    assert not processes.alive(second)


def test_stop_never_signals_a_process_group_that_is_not_ours(run_dir: Path) -> None:
    """A recorded pid whose process is gone, and now names another program's process group
    (after a reboot, say), must not get that group killed (finding 12)."""
    foreign = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        stale = processes.ProcessRecord(
            pid=foreign.pid, start_ticks=1, log=str(run_dir / "x.log"), cmd=["gone"]
        )
        assert not processes.alive(stale)  # the start time says: not our process
        processes.stop(stale)
        time.sleep(0.2)
        assert foreign.poll() is None, "stop() killed a process that is not ours"
    finally:
        foreign.kill()
        foreign.wait()


def test_stop_kills_the_marked_leftovers_of_a_dead_leader(run_dir: Path) -> None:
    """A crashed server's forked workers (same group, same mark) are stopped with it."""
    log = run_dir / "logs" / "w.log"
    code = (
        "import os, time, sys\n"
        "if os.fork() == 0:\n    time.sleep(60)\n    sys.exit(0)\n"
        "print('forked', flush=True)\ntime.sleep(60)\n"
    )
    rec = processes.spawn([sys.executable, "-c", code], log, env=dict(os.environ))
    deadline = time.monotonic() + 10
    while len(processes.group_members(rec.pid)) < 3:  # logpipe, the server, its worker
        assert time.monotonic() < deadline
        time.sleep(0.05)
    members = processes.group_members(rec.pid)
    os.kill(rec.pid, signal.SIGKILL)  # the leader dies; its group lives on
    _wait_dead(rec)
    processes.stop(rec)
    time.sleep(0.2)
    assert [p for p in members if processes._start_ticks(p) is not None] == []


def test_orphans_are_marked_processes_the_state_does_not_know(run_dir: Path) -> None:
    log = run_dir / "logs" / "o.log"
    rec = processes.spawn(
        [sys.executable, "-c", "import time; time.sleep(60)"], log, env=dict(os.environ)
    )
    try:
        assert processes.orphans([rec]) == []
        found = processes.orphans([])
        assert rec.pid in {o.pid for o in found}
        processes.stop_orphans(found)
        _wait_dead(rec, timeout=10)
    finally:
        processes.stop(rec)
