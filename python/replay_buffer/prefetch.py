"""Prefetching: the next sampled batches drawn ahead in a background thread.

:func:`prefetch` works with anything that has ``sample(batch_size)``: a local
:class:`~replay_buffer.ReplayBuffer` (``buffer.prefetch(...)`` calls it) or a client of the replay
service alike. Also available as ``replay_buffer.aio.prefetch``.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Protocol

import numpy as np

__all__ = ["Prefetcher", "prefetch"]


class _Sampler(Protocol):
    def sample(self, batch_size: int, *args: Any, **kwargs: Any) -> dict[str, np.ndarray]: ...


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
