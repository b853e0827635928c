"""Progress lines for long steps: `• doing X … done (1.2s)` on stderr."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator


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
