"""The synchronous client: ``connect(url)`` returns an object with ReplayBuffer's methods.

One socket, blocking I/O. Requests go out with one gather write (arrays are never copied into a
message), replies are received straight into the arrays handed back. ``wait=False`` pipelines:
the call returns a :class:`Pending` at once, so many requests are on the wire together.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from types import TracebackType
from typing import Any

import numpy as np

from replay_buffer.service import codec
from replay_buffer.service import protocol as p
from replay_buffer.service.address import connect_error, open_socket, parse_address

_STAGING_BYTES = 64 * 1024


class Pending:
    """The result of a request sent with ``wait=False``; :meth:`result` waits for it."""

    def __init__(self, client: Client, request_id: int, msg_type: int) -> None:
        """Track request ``request_id`` of ``client``."""
        self._client = client
        self.request_id = request_id
        self.msg_type = msg_type
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None
        self._observed = False

    def done(self) -> bool:
        """Whether the reply has arrived."""
        return self._done

    def result(self) -> Any:
        """Wait for the reply; return what the local method returns, or raise what it raises."""
        self._client._wait_for(self)
        self._observed = True
        if self._error is not None:
            raise self._error
        return self._value

    def _set(self, value: Any, error: BaseException | None) -> None:
        self._value, self._error, self._done = value, error, True


class Client(codec.HandshakeView):
    """A replay server seen as a buffer, with :class:`~replay_buffer.ReplayBuffer`'s methods.

    ``add``, ``add_batch``, ``sample``, ... raise the same errors with the same messages as on a
    local buffer. Thread-safe: calls are serialized on the one connection (open one client per
    thread for parallel requests). Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        """Connect and handshake; see :func:`connect`."""
        self.url = url
        self._address = parse_address(url)
        self._lock = threading.RLock()
        self._pending: deque[Pending] = deque()
        self._next_id = 1
        self._staging = bytearray(_STAGING_BYTES)
        self._start = self._end = 0
        self._closed = False
        self._broken: BaseException | None = None
        self._schema: codec.RemoteSchema | None = None
        try:
            self._sock = open_socket(self._address, connect_timeout)
        except (OSError, RuntimeError) as exc:
            self._closed = True
            raise connect_error(url, exc) from exc
        try:
            self._sock.settimeout(timeout)
            reply = self._call(p.MsgType.HELLO, [codec.hello(token)], True)
            self._schema = codec.RemoteSchema.from_hello(reply)
        except (OSError, RuntimeError) as exc:
            self._sock.close()
            self._closed = True
            raise connect_error(url, exc) from exc
        except BaseException:
            self._sock.close()
            self._closed = True
            raise

    @property
    def closed(self) -> bool:
        """Whether the connection is closed: by :meth:`close`, or broken (lost, timed out)."""
        return self._closed

    # what the server told us

    def capacity(self) -> int:
        """How many transitions the buffer holds when full."""
        return self.schema.capacity

    # the buffer's methods

    def add(self, *values: Any, wait: bool = True, **named: Any) -> Any:
        """Add one transition (positionally in field order, or by name); return its key.

        With ``wait=False`` return a :class:`Pending` at once (a field named ``wait`` must then
        be given positionally).
        """
        return self._call(p.MsgType.ADD, codec.add(self.schema, values, named), wait)

    def add_batch(self, *arrays: Any, wait: bool = True, **named: Any) -> Any:
        """Add arrays with a leading batch axis; return the first key (or a :class:`Pending`)."""
        return self._call(p.MsgType.ADD_BATCH, codec.add_batch(self.schema, arrays, named), wait)

    def sample(
        self,
        batch_size: int,
        beta: float | None = None,
        *,
        fields: list[str] | None = None,
        with_priorities: bool = False,
        wait: bool = True,
    ) -> Any:
        """Sample ``batch_size`` transitions: one array per field, ``indices`` (and ``weights``).

        ``beta`` is passed on for prioritized strategies. ``fields`` limits the reply to some
        fields, to save bandwidth. ``with_priorities`` adds ``priorities``, each row's stored
        priority (float64; 1 on a uniform buffer), from which a caller sampling several buffers
        computes weights from global figures. With ``wait=False`` return a :class:`Pending`.
        """
        request = codec.sample(self.schema, batch_size, beta, fields, with_priorities)
        return self._call(p.MsgType.SAMPLE, [request], wait)

    def sample_into(self, out: dict[str, np.ndarray], beta: float | None = None) -> dict:
        """Fill the caller's arrays (any subset of the fields, ``indices``); return ``out``."""
        rows, names = codec.sample_into_fields(self.schema, out)
        request = codec.sample(self.schema, rows, beta, names or [self.schema.names[0]])
        batch = self._call(p.MsgType.SAMPLE, [request], True)
        for name, array in out.items():
            np.copyto(array, batch[name])
        return out

    def update_priorities(
        self,
        indices: Any,
        td_errors: Any = None,
        *,
        priorities: Any = None,
        wait: bool = True,
    ) -> Any:
        """Set priorities of sampled keys from TD errors (or ``priorities=``); return how many.

        Keys of transitions overwritten since they were sampled are ignored, as locally. With
        ``wait=False`` return a :class:`Pending`.
        """
        parts = codec.update_priorities(self.schema, indices, td_errors, priorities)
        return self._call(p.MsgType.UPDATE_PRIORITIES, parts, wait)

    def size(self) -> int:
        """How many transitions the buffer holds now."""
        return int(self._call(p.MsgType.SIZE, [], True)[0])

    def __len__(self) -> int:
        """Return :meth:`size`."""
        return self.size()

    def is_full(self) -> bool:
        """Whether the buffer holds ``capacity()`` transitions."""
        return self.size() >= self.capacity()

    def next_key(self) -> int:
        """Return the key the next added transition will get."""
        return int(self._call(p.MsgType.SIZE, [], True)[1])

    def priority_mass(self, *, wait: bool = True) -> Any:
        """Return ``(size, next_key, total_priority, min_priority)`` read on the server.

        ``total_priority`` is the sum of the stored priorities (the size for a uniform buffer),
        ``min_priority`` the smallest positive one (1 for uniform; inf when there is none).
        ``ValueError`` for a rank-based buffer, and from a server too old to offer it.
        """
        if "priority_mass" not in self.schema.info.get("features", ()):
            raise ValueError("this server does not offer priority_mass (an older version)")
        return self._call(p.MsgType.PRIORITY_MASS, [], wait)

    def clear(self) -> None:
        """Forget every transition (the server waits for running adds first)."""
        self._call(p.MsgType.CLEAR, [], True)

    def info(self) -> dict[str, Any]:
        """Describe the buffer: schema, config, limits, size, next key, memory."""
        return self._call(p.MsgType.INFO, [], True)

    def stats(self) -> dict[str, Any]:
        """Return the server's counters: inserts, samples, requests, errors, connections."""
        return self._call(p.MsgType.STATS, [], True)

    def flush(self) -> None:
        """Wait for every pipelined request; raise the first error nobody has looked at."""
        with self._lock:
            waiting = list(self._pending)
            for pending in waiting:
                self._wait_for(pending)
        for pending in waiting:
            if pending._error is not None and not pending._observed:
                pending.result()

    def close(self) -> None:
        """Close the connection; pipelined requests not yet answered are abandoned."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._sock.close()

    def __enter__(self) -> Client:
        """Return the client itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Flush pipelined requests (unless leaving with an error), then close."""
        try:
            if exc_type is None and not self._closed:
                self.flush()
        finally:
            self.close()

    def __repr__(self) -> str:
        """Show where the client is connected."""
        state = "closed" if self._closed else "open"
        return f"<replay_buffer.service.Client {self.url} ({state})>"

    # the wire

    def _call(self, msg_type: int, parts: list[bytes | memoryview], wait: bool) -> Any:
        pending = self._submit(msg_type, parts)
        return pending.result() if wait else pending

    def _submit(self, msg_type: int, parts: list[bytes | memoryview]) -> Pending:
        with self._lock:
            self._check_usable()
            limit = self._schema.limits.max_in_flight if self._schema else 1
            while len(self._pending) >= limit:
                self._receive_one()
            pending = Pending(self, self._next_id, msg_type)
            self._next_id += 1
            header = p.pack_header(msg_type, pending.request_id, p.arrays_nbytes(parts))
            try:
                _send_all(self._sock, [header, *parts])
            except OSError as exc:
                self._break(self._farewell() or exc)
                raise self._broken_error() from exc
            except BaseException as exc:  # a frame cut short: the stream is lost
                self._break(exc)
                raise
            self._pending.append(pending)
            return pending

    def _wait_for(self, pending: Pending) -> None:
        with self._lock:
            while not pending.done():
                self._check_usable()
                self._receive_one()

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise self._broken_error()
        if self._closed:
            raise ConnectionError(f"the client for {self.url} is closed")

    def _broken_error(self) -> ConnectionError:
        return ConnectionError(f"connection to {self.url} lost: {self._broken}")

    def _break(self, exc: BaseException) -> None:
        """Give up on a stream that is closed, timed out mid-frame or garbled."""
        self._broken = exc
        self._closed = True
        self._sock.close()
        error = self._broken_error()
        while self._pending:
            self._pending.popleft()._set(None, error)

    def _farewell(self) -> BaseException | None:
        """Return the error a server sent before hanging up on us, if it is there to read."""
        try:
            self._sock.setblocking(False)
            msg_type, _, length = p.unpack_header(self._read(p.HEADER_SIZE))
            if msg_type == p.MsgType.ERROR and length <= p.MAX_HELLO_BYTES:
                return p.decode_error(self._read(length))
        except (OSError, p.ProtocolError):
            pass
        return None

    def _receive_one(self) -> None:
        pending = self._pending[0]
        try:
            msg_type, request_id, length = p.unpack_header(self._read(p.HEADER_SIZE))
            codec.check_reply_length(self._schema, length)
            payload = self._read(length)
            if msg_type == p.MsgType.ERROR:
                error = p.decode_error(payload)
                if request_id != pending.request_id:  # the server gave up on the connection
                    raise error if isinstance(error, ConnectionError) else ConnectionError(error)
                self._pending.popleft()._set(None, error)
            elif request_id != pending.request_id:
                raise p.ProtocolError(
                    f"reply to request {request_id}; expected {pending.request_id}"
                )
            elif msg_type != pending.msg_type | p.RESPONSE_BIT:
                raise p.ProtocolError(f"reply of type {msg_type:#x} to a {pending.msg_type:#x}")
            else:
                self._pending.popleft()._set(codec.decode_reply(pending.msg_type, payload), None)
        except BaseException as exc:  # mid-frame, the stream cannot be resynchronized
            self._break(exc)
            if isinstance(exc, TimeoutError):
                raise TimeoutError(f"no reply from {self.url} in time; connection closed") from exc
            if isinstance(exc, OSError) and not isinstance(exc, p.ProtocolError):
                raise self._broken_error() from exc
            raise

    def _read(self, n: int) -> memoryview:
        """Receive ``n`` bytes into a fresh writable buffer (big ones straight into it)."""
        out = memoryview(np.empty(n, np.uint8) if n >= _STAGING_BYTES // 2 else bytearray(n))
        buffered = min(n, self._end - self._start)
        out[:buffered] = self._staging[self._start : self._start + buffered]
        self._start += buffered
        got = buffered
        while got < n:
            if n - got >= _STAGING_BYTES // 2:
                received = self._sock.recv_into(out[got:])
            else:
                self._start = 0
                self._end = self._sock.recv_into(self._staging)
                received = min(self._end, n - got)
                out[got : got + received] = self._staging[:received]
                self._start = received
            if not received:
                raise ConnectionError("the server closed the connection")
            got += received
        return out


def _send_all(sock: socket.socket, parts: list[bytes | memoryview]) -> None:
    """Send every buffer with as few system calls as the kernel allows, without joining them."""
    if sum(len(part) if isinstance(part, bytes) else part.nbytes for part in parts) < 65536:
        parts = [b"".join(parts)]  # one small buffer beats a gather list of small ones
    views = [memoryview(part).cast("B") for part in parts if len(part)]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= views[0].nbytes:
            sent -= views[0].nbytes
            views.pop(0)
        if sent:
            views[0] = views[0][sent:]


def connect(
    url: str,
    *,
    token: str | None = None,
    timeout: float | None = None,
    connect_timeout: float = 10.0,
) -> Client:
    """Connect to a replay server: ``connect("unix:///tmp/rb.sock")``, ``connect("tcp://h:7777")``.

    Args:
        url: The server's address.
        token: The shared secret, if the server requires one; default: the
            ``REPLAY_BUFFER_TOKEN`` environment variable.
        timeout: Seconds any one call may wait for the server (None: forever). A call that
            times out leaves the connection unusable.
        connect_timeout: Seconds to wait for the connection itself.

    Returns:
        A :class:`Client` with ReplayBuffer's methods.

    Raises:
        PermissionError: the server wants a token and this one is wrong or missing.
        OSError: nothing listens there (ConnectionRefusedError, FileNotFoundError for a Unix
            socket), or the handshake failed (ConnectionError). Every such error names ``url``.

    """
    return Client(url, token=token, timeout=timeout, connect_timeout=connect_timeout)


__all__ = ["Client", "Pending", "connect"]
