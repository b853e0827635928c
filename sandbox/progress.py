"""Progress lines for long steps: `• doing X … done (1.2s)` on stderr, and a heartbeat
(`… still X (40s): <the tool's last line>`) while a long subprocess runs."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    print(f"• {what} …", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        yield
    except BaseException:
        print(f"  ✗ {what}: failed after {time.monotonic() - started:.1f}s", file=sys.stderr)
        raise
    print(f"  done ({time.monotonic() - started:.1f}s)", file=sys.stderr)


def heartbeat_interval() -> float:
    """Seconds between heartbeat lines (SANDBOX_PROGRESS_INTERVAL, default 10)."""
    return float(os.environ.get("SANDBOX_PROGRESS_INTERVAL", "10"))


def run_with_heartbeat(
    cmd: list[str],
    env: dict[str, str] | None,
    what: str,
    say: Callable[[str], None] | None,
) -> tuple[int, str]:
    """Run `cmd` (stdout and stderr captured together); while it runs, `say` a line every
    heartbeat_interval() seconds with the time so far and the tool's last line of output.
    Returns (exit code, output). The command is killed if this is interrupted. OSError if it
    cannot start."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    started = time.monotonic()
    try:
        while True:
            try:
                proc.wait(timeout=heartbeat_interval())
                break
            except subprocess.TimeoutExpired:
                if say:
                    last = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
                    tail = f": {last[:120]}" if last else ""
                    say(f"  … still {what} ({time.monotonic() - started:.0f}s){tail}")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    reader.join(5)
    return proc.returncode, "".join(lines)
