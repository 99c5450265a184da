"""The server's counters: one object that every connection reports into.

Connections call :meth:`ServerStats.request` once per answered frame and
:meth:`~ServerStats.connection_opened` / :meth:`~ServerStats.connection_closed` /
:meth:`~ServerStats.connection_refused`; the status line and STATS read the totals. Figures are
kept per kind of request (:class:`OperationStats`), so a new figure (a latency histogram, say) is
one more field there, filled in :meth:`ServerStats.request`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

INSERT_KINDS = frozenset(("add", "add_batch"))
SAMPLE_KINDS = frozenset(("sample",))


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

    """

    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    rows: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as JSON-ready values."""
        return {
            "requests": self.requests,
            "errors": dict(self.errors),
            "rows": self.rows,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "seconds": self.seconds,
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
        }
