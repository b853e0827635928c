"""The inference worker recovers: a killed worker is replaced and later requests succeed."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from sandbox.serving.executor import INLINE_MAX_COST, Offload

pytestmark = pytest.mark.unit


def _pid() -> int:
    return os.getpid()


def test_a_killed_worker_is_replaced() -> None:
    offload = Offload()
    offload.start()

    async def scenario() -> list[int]:
        first = await offload.run(_pid, cost=INLINE_MAX_COST)
        assert first != os.getpid()  # ran in the worker
        os.kill(first, signal.SIGKILL)  # what the OOM killer does
        answers = [await offload.run(_pid, cost=INLINE_MAX_COST) for _ in range(5)]
        return [first, *answers]

    try:
        first, *after = asyncio.run(scenario())
    finally:
        assert offload._pool is not None
        offload._pool.shutdown()
    assert len(after) == 5 and first not in after and os.getpid() not in after
