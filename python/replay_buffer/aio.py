"""asyncio support: a remote buffer's methods as coroutines, and local work off the event loop.

- :func:`connect` opens an :class:`~replay_buffer.service.async_client.AsyncClient` to a
  ``replay-buffer serve`` process.
- :func:`add_batch`, :func:`sample` and :func:`update_priorities` run a local buffer's method in
  a worker thread and return an awaitable. The C++ core copies with the GIL released, so the
  event loop (and other threads) keep running while a large batch is copied. Arrays passed in
  must not be changed until the call completes.
- :func:`prefetch` keeps the next batches ready in a background thread, for a training loop
  (:mod:`replay_buffer.prefetch`, re-exported here).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from replay_buffer.prefetch import Prefetcher, prefetch
from replay_buffer.service.async_client import AsyncClient, connect

__all__ = [
    "AsyncClient", "Prefetcher", "add_batch", "connect", "prefetch", "sample", "update_priorities",
]  # fmt: skip


@functools.cache
def _pool(kind: str) -> ThreadPoolExecutor:
    # One pool per kind of call, and no kind can release a call of its own kind (adds wait for
    # samples, samples for adds, updates never wait): however many calls a rate limiter holds
    # back, the calls that would release them never queue behind them.
    return ThreadPoolExecutor(4, thread_name_prefix=f"replay-buffer-aio-{kind}")


async def _off_loop(kind: str, call: Callable[[], Any]) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_pool(kind), call)


async def add_batch(buffer: Any, *arrays: Any, **named: Any) -> int:
    """Await ``buffer.add_batch(*arrays, **named)`` run in a worker thread; return the first key."""
    return await _off_loop("insert", functools.partial(buffer.add_batch, *arrays, **named))


async def sample(buffer: Any, batch_size: int, beta: float | None = None) -> dict[str, np.ndarray]:
    """Await ``buffer.sample(batch_size)`` (with ``beta`` when given) run in a worker thread."""
    args = {} if beta is None else {"beta": beta}
    return await _off_loop("sample", functools.partial(buffer.sample, batch_size, **args))


async def update_priorities(
    buffer: Any, indices: Any, td_errors: Any = None, *, priorities: Any = None
) -> int:
    """Await ``buffer.update_priorities(...)`` run in a worker thread; return how many applied."""
    call = functools.partial(buffer.update_priorities, indices, td_errors, priorities=priorities)
    return await _off_loop("update", call)
