"""What the server does with one request: decode it, call the buffer, encode the reply.

Handlers are plain synchronous functions of (buffer, payload), so the server can run them on the
event loop or in a worker thread, and they raise exactly what the local buffer raises. Nothing
here touches a socket.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from replay_buffer._version import __version__
from replay_buffer.service import protocol as p

if TYPE_CHECKING:
    from replay_buffer.buffer import ReplayBuffer

Parts = list[bytes | memoryview]


@dataclass
class Reply:
    """A handler's result: the payload buffers, and how many transitions it added or sampled."""

    parts: Parts
    rows: int = 0


class _ClearGate:
    """Lets any number of adds run at once, but ``clear()`` only when none is running.

    The buffer forbids ``clear()`` during adds; over the network they can come from any client,
    so the server enforces it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._adds = 0
        self._clearing = False

    @contextmanager
    def adding(self) -> Iterator[None]:
        with self._cond:
            while self._clearing:
                self._cond.wait()
            self._adds += 1
        try:
            yield
        finally:
            with self._cond:
                self._adds -= 1
                if not self._adds:
                    self._cond.notify_all()

    @contextmanager
    def clearing(self) -> Iterator[None]:
        with self._cond:
            while self._clearing or self._adds:
                self._cond.wait()
            self._clearing = True
        try:
            yield
        finally:
            with self._cond:
                self._clearing = False
                self._cond.notify_all()


class Handlers:
    """The request handlers of one served buffer.

    Thread-safe: every method may run in any thread at once (``clear`` waits for running adds).
    """

    def __init__(self, buffer: ReplayBuffer, limits: p.Limits, shm_name: str | None = None) -> None:
        """Serve ``buffer`` within ``limits``."""
        self.buffer = buffer
        self.limits = limits
        self.shm_name = shm_name
        self._fields = list(buffer.fields.items())
        self._field_names = [name for name, _ in self._fields]
        self._field_set = frozenset(self._field_names)
        self._row_bytes = [
            int(np.prod(spec["shape"], dtype=np.int64)) * spec["dtype"].itemsize
            for _, spec in self._fields
        ]
        self.max_row_bytes = sum(self._row_bytes) + 12  # every field, the key and a weight
        self._gate = _ClearGate()
        self.table: dict[int, Callable[[memoryview], Reply]] = {
            p.MsgType.ADD: self.add,
            p.MsgType.ADD_BATCH: self.add_batch,
            p.MsgType.SAMPLE: self.sample,
            p.MsgType.UPDATE_PRIORITIES: self.update_priorities,
            p.MsgType.SIZE: self.size,
            p.MsgType.CLEAR: self.clear,
            p.MsgType.PRIORITY_MASS: self.priority_mass,
        }

    def describe(self) -> dict[str, Any]:
        """Describe the buffer as the handshake does: schema, capacity, strategy, limits."""
        config = asdict(self.buffer.config)
        return {
            "protocol": p.VERSION,
            "server": f"replay_buffer/{__version__}",
            "fields": [
                {
                    "name": name,
                    "dtype": spec["dtype"].name,
                    "shape": list(spec["shape"]),
                    **({"num_values": spec["num_values"]} if "num_values" in spec else {}),
                }
                for name, spec in self._fields
            ],
            "capacity": self.buffer.capacity(),
            "strategy": config.get("strategy", "uniform"),
            "config": config,
            "shm_name": self.shm_name,
            "limits": asdict(self.limits),
            "features": list(p.FEATURES),
        }

    def max_payload(self, msg_type: int) -> int:
        """Return the largest payload a request type can need; longer ones are refused unread."""
        if msg_type in (
            p.MsgType.INFO,
            p.MsgType.STATS,
            p.MsgType.SIZE,
            p.MsgType.CLEAR,
            p.MsgType.PRIORITY_MASS,
        ):
            return 0
        if msg_type == p.MsgType.SAMPLE:
            return p.SAMPLE_REQUEST.size
        if msg_type == p.MsgType.HELLO:
            return p.MAX_HELLO_BYTES
        if msg_type == p.MsgType.ADD:
            return self._block_bytes(1)
        if msg_type == p.MsgType.ADD_BATCH:
            return min(self.limits.max_frame_bytes, self._block_bytes(self.limits.max_batch))
        if msg_type == p.MsgType.UPDATE_PRIORITIES:
            return min(self.limits.max_frame_bytes, 3 * (64 + p.pad(8 * self.limits.max_batch)))
        return -1

    def _block_bytes(self, rows: int) -> int:
        """Upper bound on an array block carrying ``rows`` rows of every field.

        Values may come in a wider dtype than the field's (float64 for float32, ...) and are cast
        by the buffer, so each field is allowed 8 bytes per element.
        """
        per_array = p.ARRAY_HEAD.size + 8 * p.MAX_NDIM + p.pad(p.MAX_NAME_BYTES)
        total = p.BLOCK_HEAD.size
        for (_, spec), row in zip(self._fields, self._row_bytes, strict=True):
            elements = row // spec["dtype"].itemsize
            total += per_array + p.pad(8 * elements * rows)
        return total

    def _arrays(self, payload: memoryview) -> dict[str, np.ndarray]:
        arrays = p.decode_arrays(payload, max_arrays=len(self._fields) + 2)
        return {name: value for name, value, _ in arrays}

    def _check_rows(self, arrays: dict[str, np.ndarray]) -> int:
        rows = 0
        for name, value in arrays.items():
            if value.ndim and value.shape[0] > self.limits.max_batch:
                raise ValueError(
                    f"{name!r} has {value.shape[0]} rows; this server takes at most "
                    f"{self.limits.max_batch} (max_batch)"
                )
            rows = max(rows, value.shape[0] if value.ndim else 0)
        return rows

    def add(self, payload: memoryview) -> Reply:
        """ADD: one transition, each value an array (or a Python scalar, by flag)."""
        named: dict[str, Any] = {
            name: value.item() if flags & p.SCALAR_FLAG else value
            for name, value, flags in p.decode_arrays(payload, len(self._fields) + 2)
        }
        with self._gate.adding():
            key = self.buffer.add(**named)
        return Reply([p.U64.pack(key)], rows=1)

    def add_batch(self, payload: memoryview) -> Reply:
        """ADD_BATCH: arrays with a leading batch axis."""
        arrays = self._arrays(payload)
        rows = self._check_rows(arrays)
        with self._gate.adding():
            first = self.buffer.add_batch(**arrays)
        return Reply([p.U64.pack(first)], rows=rows)

    def sample(self, payload: memoryview) -> Reply:
        """SAMPLE: a batch of the requested fields, then ``indices`` (and ``weights``)."""
        if len(payload) != p.SAMPLE_REQUEST.size:
            raise p.ProtocolError(f"SAMPLE payload must be {p.SAMPLE_REQUEST.size} bytes")
        batch_size, flags, _, beta, mask = p.SAMPLE_REQUEST.unpack(payload)
        if flags & ~p.SAMPLE_FLAGS:
            raise p.ProtocolError(f"bad SAMPLE flags {flags:#x}")
        if mask >> len(self._fields):
            raise p.ProtocolError(f"field mask {mask:#x} names fields the schema does not have")
        wanted = [i for i in range(len(self._fields)) if not mask or mask >> i & 1]
        if batch_size > self.limits.max_batch:
            raise ValueError(
                f"batch_size {batch_size} is over this server's limit of {self.limits.max_batch}"
                " (max_batch)"
            )
        reply_bytes = batch_size * (sum(self._row_bytes[i] for i in wanted) + 12)
        if reply_bytes > self.limits.max_frame_bytes - 4096:
            raise ValueError(
                f"a batch of {batch_size} would be {reply_bytes} bytes, over this server's "
                f"frame limit of {self.limits.max_frame_bytes} (max_frame_bytes)"
            )
        if flags & p.SAMPLE_HAS_BETA:
            batch = self.buffer.sample(batch_size, beta=beta)
        else:
            batch = self.buffer.sample(batch_size)
        names = [self._field_names[i] for i in wanted]
        names += [name for name in batch if name not in self._field_set]
        if flags & p.SAMPLE_WITH_PRIORITIES:
            batch["priorities"] = sampled_priorities(self.buffer, batch["indices"])
            names.append("priorities")
        parts = p.encode_arrays((name, batch[name], 0) for name in names)
        return Reply(parts, rows=batch_size)

    def update_priorities(self, payload: memoryview) -> Reply:
        """UPDATE_PRIORITIES: ``indices``, and ``td_errors`` or ``priorities``; reply the count."""
        named = {name: value for name, value, _ in p.decode_arrays(payload, max_arrays=3)}
        if "indices" not in named or not set(named) <= {"indices", "td_errors", "priorities"}:
            raise p.ProtocolError(
                "UPDATE_PRIORITIES takes 'indices', and 'td_errors' or 'priorities'"
            )
        self._check_rows(named)
        applied = self.buffer.update_priorities(
            named["indices"], named.get("td_errors"), priorities=named.get("priorities")
        )
        return Reply([p.U64.pack(applied)])

    def size(self, payload: memoryview) -> Reply:
        """SIZE: how many transitions the buffer holds, and the next key."""
        return Reply([p.SIZE_REPLY.pack(self.buffer.size(), self.buffer.next_key())])

    def priority_mass(self, payload: memoryview) -> Reply:
        """PRIORITY_MASS: size, next key, the sum of the priorities and the smallest positive one.

        See :func:`priority_mass_of`.
        """
        size, next_key, total, smallest = priority_mass_of(self.buffer)
        return Reply([p.MASS_REPLY.pack(size, next_key, total, smallest)])

    def clear(self, payload: memoryview) -> Reply:
        """CLEAR: forget every transition, once running adds have finished."""
        with self._gate.clearing():
            self.buffer.clear()
        return Reply([])

    def info(self) -> dict[str, Any]:
        """INFO: the handshake's description plus how full the buffer is now."""
        return {
            **self.describe(),
            "size": self.buffer.size(),
            "next_key": self.buffer.next_key(),
            "region_bytes": self.buffer.region_bytes(),
        }


def priority_mass_of(buffer: ReplayBuffer) -> tuple[int, int, float, float]:
    """Return ``(size, next key, total priority, smallest positive priority)`` of ``buffer``.

    A uniform buffer counts every transition as priority 1. Rank-based buffers refuse it: their
    probabilities depend on ranks within the buffer, so they do not compose across buffers.
    """
    strategy = buffer.strategy
    size, next_key = buffer.size(), buffer.next_key()
    if strategy == "uniform":
        return size, next_key, float(size), (1.0 if size else math.inf)
    if strategy == "prioritized":
        total, smallest = buffer.priority_mass()
        return size, next_key, total, smallest
    raise ValueError(
        "PRIORITY_MASS needs strategy 'prioritized' or 'uniform': rank-based probabilities "
        f"do not compose across buffers (this one is {strategy!r})"
    )


def sampled_priorities(buffer: ReplayBuffer, keys: np.ndarray) -> np.ndarray:
    """Each sampled row's stored priority (1 for a uniform buffer), read after the draw.

    A row overwritten between the draw and this read (only under concurrent adds) has no
    priority any more; it gets the buffer's smallest, i.e. the largest weight, 1.
    """
    if buffer.strategy == "uniform":
        return np.ones(len(keys))
    if buffer.strategy != "prioritized":
        raise ValueError(
            "sample priorities need strategy 'prioritized' or 'uniform': rank-based "
            "probabilities do not compose across buffers (this one is "
            f"{buffer.strategy!r})"
        )
    priorities = buffer.priorities(keys)
    gone = np.isnan(priorities)
    if gone.any():
        priorities[gone] = buffer.priority_mass()[1]
    return priorities
