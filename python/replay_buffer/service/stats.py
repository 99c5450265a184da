"""The server's counters: one object that every connection reports into.

Connections call :meth:`ServerStats.request` once per answered frame and
:meth:`~ServerStats.connection_opened` / :meth:`~ServerStats.connection_closed` /
:meth:`~ServerStats.connection_refused`; the status line and STATS read the totals. Figures are
kept per kind of request (:class:`OperationStats`), so a new figure (a latency histogram, say) is
one more field there, filled in :meth:`ServerStats.request`.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

INSERT_KINDS = frozenset(("add", "add_batch"))
SAMPLE_KINDS = frozenset(("sample",))

#: Upper bounds (seconds) of the request latency histogram's buckets; one more bucket counts the
#: rest. Prometheus histograms of the requests use the same bounds.
LATENCY_BOUNDS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def bucket_quantile(counts: list[int], bounds: tuple[float, ...], fraction: float) -> float | None:
    """Return the value below which ``fraction`` of a histogram's counts lie, or None if empty.

    ``counts[i]`` counts values in ``(bounds[i-1], bounds[i]]`` (the first from 0, the last one,
    past the bounds, from ``bounds[-1]``); the answer is interpolated linearly inside its bucket,
    and a quantile in the last bucket is reported as ``bounds[-1]``.
    """
    total = sum(counts)
    if total == 0:
        return None
    target = fraction * total
    below = 0
    for i, n in enumerate(counts):
        if n and below + n >= target:
            if i >= len(bounds):
                return bounds[-1]
            low = bounds[i - 1] if i else 0.0
            return low + (bounds[i] - low) * (target - below) / n
        below += n
    return bounds[-1]


@dataclass
class OperationStats:
    """Totals for one kind of request since the server started.

    Attributes:
        requests: Frames of this kind answered (successfully or with an error).
        errors: Error replies, by the error type sent to the client.
        rows: Transitions the successful ones moved (added, or sampled).
        bytes_in: Bytes of the request frames, headers included.
        bytes_out: Bytes of the reply frames, headers included.
        seconds: Time from each frame's arrival to its reply being handed to the socket, summed.
        latency: That time's histogram: ``latency[i]`` counts requests that took at most
            ``LATENCY_BOUNDS[i]`` (and more than the bound before); the last, longer ones.

    """

    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    rows: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as JSON-ready values, with latency p50 and p99 (None: no request)."""
        return {
            "requests": self.requests,
            "errors": dict(self.errors),
            "rows": self.rows,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "seconds": self.seconds,
            "latency_buckets": list(self.latency),
            "latency_p50_s": bucket_quantile(self.latency, LATENCY_BOUNDS, 0.5),
            "latency_p99_s": bucket_quantile(self.latency, LATENCY_BOUNDS, 0.99),
        }


class ServerStats:
    """Counters since the server started. Not thread-safe: call it from the event loop only."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """Start counting now."""
        self._clock = clock
        self.started = clock()
        #: Connections open now.
        self.connections = 0
        #: Connections ever accepted, refused ones included.
        self.connections_total = 0
        #: Connections refused for being over the limit.
        self.connections_refused = 0
        #: Figures per kind of request ("add", "sample", ..., "invalid" for broken frames).
        self.operations: dict[str, OperationStats] = {}

    def connection_opened(self) -> None:
        """Count a connection that was accepted."""
        self.connections += 1
        self.connections_total += 1

    def connection_closed(self) -> None:
        """Count the end of a connection that :meth:`connection_opened` counted."""
        self.connections -= 1

    def connection_refused(self) -> None:
        """Count a connection turned away (over the connection limit)."""
        self.connections_total += 1
        self.connections_refused += 1

    def request(
        self,
        kind: str,
        bytes_in: int,
        bytes_out: int,
        seconds: float,
        error_type: str | None = None,
        rows: int = 0,
    ) -> None:
        """Count one answered frame.

        Args:
            kind: What it asked for: ``"add"``, ``"sample"``, ... (the message type's name in
                lower case), or ``"invalid"`` for a frame that broke the protocol.
            bytes_in: Size of the request frame.
            bytes_out: Size of the reply frame.
            seconds: From the frame's arrival to its reply being handed to the socket.
            error_type: The error type sent back, or None for a success.
            rows: Transitions a successful request added or sampled.

        """
        stats = self.operations.get(kind)
        if stats is None:
            stats = self.operations[kind] = OperationStats()
        stats.requests += 1
        stats.bytes_in += bytes_in
        stats.bytes_out += bytes_out
        stats.seconds += seconds
        stats.latency[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1
        if error_type is None:
            stats.rows += rows
        else:
            stats.errors[error_type] += 1

    @property
    def inserts(self) -> int:
        """Transitions added through the service."""
        return sum(self.operations[k].rows for k in INSERT_KINDS if k in self.operations)

    @property
    def samples(self) -> int:
        """Transitions sampled through the service."""
        return sum(self.operations[k].rows for k in SAMPLE_KINDS if k in self.operations)

    def snapshot(self) -> dict[str, Any]:
        """Return the totals and the per-kind figures, as STATS sends them."""
        ops = self.operations.values()
        return {
            "uptime_s": self._clock() - self.started,
            "inserts": self.inserts,
            "samples": self.samples,
            "requests": sum(op.requests for op in ops),
            "errors": sum(sum(op.errors.values()) for op in ops),
            "connections": self.connections,
            "connections_total": self.connections_total,
            "connections_refused": self.connections_refused,
            "bytes_in": sum(op.bytes_in for op in ops),
            "bytes_out": sum(op.bytes_out for op in ops),
            "operations": {kind: op.as_dict() for kind, op in sorted(self.operations.items())},
            "latency_bounds_s": list(LATENCY_BOUNDS),
        }
