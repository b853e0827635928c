"""Run CPU-bound inference off the event loop, so health checks stay fast under load."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

# One inference thread: fastText holds the GIL while it predicts, so more threads add contention,
# not throughput. Scale with replicas (processes), as Lift Wing does.
_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")


async def run_cpu(fn: Callable[..., T], *args) -> T:
    return await asyncio.get_running_loop().run_in_executor(_pool, fn, *args)
