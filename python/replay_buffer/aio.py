"""asyncio support: a remote buffer's methods as coroutines, and local work off the event loop.

- :func:`connect` opens an :class:`~replay_buffer.service.async_client.AsyncClient` to a
  ``replay-buffer serve`` process.
- :func:`add_batch`, :func:`sample` and :func:`update_priorities` run a local buffer's method in
  a worker thread and return an awaitable. The C++ core copies with the GIL released, so the
  event loop (and other threads) keep running while a large batch is copied. Arrays passed in
  must not be changed until the call completes.
- :func:`prefetch` keeps the next batches ready in a background thread, for a training loop.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from replay_buffer.service.async_client import AsyncClient, connect

__all__ = [
    "AsyncClient", "Prefetcher", "add_batch", "connect", "prefetch", "sample", "update_priorities",
]  # fmt: skip


class _Sampler(Protocol):
    def sample(self, batch_size: int, *args: Any, **kwargs: Any) -> dict[str, np.ndarray]: ...


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


_DONE = object()  # queued by close(): wakes a consumer waiting in another thread


def _produce(
    buffer: _Sampler,
    batch_size: int,
    beta: float | None,
    batches: queue.Queue[Any],
    stop: threading.Event,
) -> None:
    """Sample into ``batches`` until ``stop`` is set; an error is handed over, then it ends."""
    args = {} if beta is None else {"beta": beta}
    while not stop.is_set():
        try:
            item = buffer.sample(batch_size, **args)
        except BaseException as exc:  # handed to the consumer, who raises it
            item = exc
        while not stop.is_set():
            try:
                batches.put(item, timeout=0.05)  # wakes up to notice a stop
                break
            except queue.Full:
                continue
        if isinstance(item, BaseException):
            return


def _stop(stop: threading.Event, batches: queue.Queue[Any], thread: threading.Thread) -> None:
    stop.set()
    if thread is not threading.current_thread():
        thread.join()
    while True:  # drop the prefetched batches, so their memory goes back to the buffer
        try:
            batches.get_nowait()
        except queue.Empty:
            break
    batches.put_nowait(_DONE)


class Prefetcher:
    """An iterator of sampled batches, the next ``depth`` of them drawn ahead in a thread.

    Iterating never ends on its own; stop with :meth:`close`, by leaving a ``with`` block, or by
    dropping the last reference. An error raised by ``sample`` is raised by the ``next()`` that
    would have returned that batch, and ends the iteration.
    """

    def __init__(
        self, buffer: _Sampler, batch_size: int, depth: int = 2, beta: float | None = None
    ) -> None:
        """Start the background thread; see :func:`prefetch`."""
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive int, got {depth!r}")
        self._batches: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_produce,
            args=(buffer, batch_size, beta, self._batches, self._stop),
            name="replay-buffer-prefetch",
            daemon=True,
        )
        self._finished = False
        self._thread.start()
        self._finalizer = weakref.finalize(self, _stop, self._stop, self._batches, self._thread)

    def __iter__(self) -> Prefetcher:
        """Return the iterator itself."""
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        """Return the next batch, waiting for it if the thread has not drawn it yet."""
        if self._finished:
            raise StopIteration
        item = self._batches.get()
        if item is _DONE:
            self._finished = True
            raise StopIteration
        if isinstance(item, BaseException):
            self.close()
            raise item
        return item

    def close(self) -> None:
        """Stop the thread and wait for it; idempotent."""
        self._finished = True
        self._finalizer()

    def __enter__(self) -> Prefetcher:
        """Return the iterator itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the thread."""
        self.close()


def prefetch(
    buffer: _Sampler, batch_size: int, depth: int = 2, *, beta: float | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Iterate over batches of ``buffer.sample(batch_size)``, ``depth`` of them drawn ahead.

    A background thread samples while the training step runs (the C++ core samples with the GIL
    released), so ``next()`` usually returns at once::

        with prefetch(buffer, batch_size=256, depth=2) as batches:
            for step, batch in zip(range(steps), batches):
                train(batch)

    Works with a local :class:`~replay_buffer.ReplayBuffer` (``buffer.prefetch(...)`` calls this)
    and with a :func:`replay_buffer.connect` client alike.

    Args:
        buffer: Anything with ``sample(batch_size)``.
        batch_size: Rows per batch.
        depth: How many batches to keep ready.
        beta: Passed to ``sample`` for prioritized strategies. Each batch is drawn with the value
            given here, up to ``depth`` batches before it is used.

    Returns:
        A :class:`Prefetcher`: an iterator and context manager with ``close()``.

    """
    return Prefetcher(buffer, batch_size, depth, beta)
