"""Run CPU-bound inference without blocking the event loop, so health checks stay fast under load.

fastText holds the GIL while it predicts, so a thread would not free the loop: big inputs go to a
worker process forked after the model is loaded (it shares the model's pages copy-on-write).
Handing work to another process costs more than a prediction on a short input, so small work
runs inline: it blocks the loop for less time than the hand-off would take.

Use: `offload = Offload()`; in `load()`, set the module-level model, then `offload.start()`;
in `predict()`, `await offload.run(module_level_fn, *args, cost=len(input))`.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("kserve")

# Input size (characters, tokens) under which a prediction takes well under a millisecond.
INLINE_MAX_COST = 2000


def _noop() -> None:
    return None


def _die_with_parent() -> None:
    """Worker initializer: the kernel SIGKILLs the worker when the model server dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Offload:
    def __init__(self, workers: int = 1):
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Fork the workers now: after the model is loaded, before the server starts threads."""
        ctx = multiprocessing.get_context("fork")
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=ctx, initializer=_die_with_parent
        )
        for _ in range(self.workers):
            self._pool.submit(_noop).result()

    async def run(self, fn: Callable[..., T], *args, cost: int) -> T:
        """`fn(*args)`: inline when `cost` is small, else in a worker. `fn` must be a module-level
        function (workers find it by name) that reads the model from a module global.

        A worker that died (killed, OOM-killed) breaks the pool: it is replaced by a fresh fork
        and the request is tried once more, so later requests succeed again."""
        pool = self._pool
        if cost < INLINE_MAX_COST or pool is None:
            return fn(*args)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, fn, *args)
        except BrokenProcessPool:
            if self._pool is pool:  # the first request to notice replaces it
                log.warning("an inference worker died; forking a new one")
                pool.shutdown(wait=False, cancel_futures=True)
                self.start()
            assert self._pool is not None
            return await loop.run_in_executor(self._pool, fn, *args)
