"""Run a command with its output in a size-rotated log file: the sandbox's kubelet log handling.

    python -m sandbox.runtime.logpipe --log FILE [--max-bytes N] [--keep K] -- CMD [ARGS...]

The command runs as a child in this process's group (the sandbox signals the whole group), with
stdout and stderr on a pipe. This process copies the pipe into FILE, and when FILE would grow past
`--max-bytes` it shifts FILE.1 … FILE.<keep-1> up by one and starts a new FILE, as the kubelet
rotates container logs. Every file is private (0600). It exits with the child's exit code once
the child has exited and its output is written. SIGTERM/SIGINT/SIGHUP are not acted on here: the
child gets the same signal from the group, and this process keeps draining until it exits.

Standard library only: it must start fast and run next to any isvc.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_KEEP = 3


def rotated(log: Path, keep: int) -> list[Path]:
    """FILE.<keep-1> … FILE.1, FILE: the oldest first (what `logs` reads across)."""
    return [log.with_name(f"{log.name}.{i}") for i in range(keep - 1, 0, -1)] + [log]


class RotatingLog:
    def __init__(self, path: Path, max_bytes: int, keep: int):
        self.path, self.max_bytes, self.keep = path, max_bytes, max(1, keep)
        self.fd = self._open()

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)
        return fd

    def write(self, data: bytes) -> None:
        """Append `data`, rotating first whenever it would not fit; a file is cut at a line end
        where one is in reach (a single line longer than the limit is cut at the limit)."""
        while data:
            room = self.max_bytes - os.fstat(self.fd).st_size
            if len(data) <= room:
                os.write(self.fd, data)
                return
            cut = data.rfind(b"\n", 0, max(room, 0)) + 1
            if cut == 0 and room == self.max_bytes:
                cut = room  # a line longer than a whole file
            if cut:
                os.write(self.fd, data[:cut])
                data = data[cut:]
            self._rotate()

    def _rotate(self) -> None:
        os.close(self.fd)
        files = rotated(self.path, self.keep)
        if self.keep == 1:
            self.path.unlink(missing_ok=True)
        else:
            files[0].unlink(missing_ok=True)
            for older, newer in itertools.pairwise(files):
                if newer.exists():
                    os.replace(newer, older)
        self.fd = self._open()


def _copy(pipe, log: RotatingLog) -> None:
    for chunk in iter(lambda: pipe.read1(65536), b""):
        log.write(chunk)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.runtime.logpipe")
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    parser.add_argument("--keep", type=int, default=DEFAULT_KEEP)
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("give the command after --")
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)  # the child gets it from the group; keep draining
    log = RotatingLog(args.log, args.max_bytes, args.keep)
    try:
        child = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    except OSError as e:
        log.write(f"cannot start {cmd[0]}: {e}\n".encode())
        return 127
    copier = threading.Thread(target=_copy, args=(child.stdout, log), daemon=True)
    copier.start()
    code = child.wait()
    # Forked workers may hold the pipe open after the child exits: wait for what is written.
    copier.join(timeout=1.0)
    code = code if code >= 0 else 128 - code
    log.write(f"--- exited with code {code}\n".encode())
    return code


if __name__ == "__main__":
    sys.exit(main())
