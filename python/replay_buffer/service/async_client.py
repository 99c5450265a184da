"""The asyncio client: ``await connect(url)`` returns ReplayBuffer's methods as coroutines.

Any number of calls may be in flight on one connection at once (``asyncio.gather`` them): each
request carries an id, and a reader task hands every reply to the call that sent its id. Calls
beyond the server's ``max_in_flight`` wait for a slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import TracebackType
from typing import Any

import numpy as np

from replay_buffer.service import codec
from replay_buffer.service import protocol as p
from replay_buffer.service.address import Address, connect_error, parse_address

_STAGING_BYTES = 64 * 1024
_JOIN_BELOW = 64 * 1024  # smaller requests are joined into one send; larger go part by part


class AsyncClient(codec.HandshakeView):
    """A replay server seen as a buffer whose methods are coroutines.

    ``await client.add_batch(...)``, ``await client.sample(32)``, ... raise the same errors with
    the same messages as the local buffer's methods. Create it with :func:`connect`; use it as an
    async context manager, or ``await client.close()``. Use it from one event loop only.
    """

    def __init__(self, url: str, sock: socket.socket, timeout: float | None) -> None:
        """Wrap a connected non-blocking socket; use :func:`connect` instead."""
        self.url = url
        #: Seconds a call waits for its reply before raising TimeoutError (None: forever).
        self.timeout = timeout
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._waiters: dict[int, tuple[int, asyncio.Future[Any]]] = {}
        self._next_id = 1
        self._send_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(1)  # until the handshake says how many
        self._staging = bytearray(_STAGING_BYTES)
        self._start = self._end = 0
        self._broken: BaseException | None = None
        self._schema: codec.RemoteSchema | None = None
        self._reader = self._loop.create_task(self._read_loop())

    async def _handshake(self, token: str | None) -> None:
        reply = await self._request(p.MsgType.HELLO, [codec.hello(token)])
        self._schema = codec.RemoteSchema.from_hello(reply)
        self._slots = asyncio.Semaphore(self._schema.limits.max_in_flight)

    async def add(self, *values: Any, **named: Any) -> int:
        """Add one transition (positionally in field order, or by name); return its key."""
        return await self._request(p.MsgType.ADD, codec.add(self.schema, values, named))

    async def add_batch(self, *arrays: Any, **named: Any) -> int:
        """Add arrays with a leading batch axis; return the first key."""
        return await self._request(p.MsgType.ADD_BATCH, codec.add_batch(self.schema, arrays, named))

    async def sample(
        self,
        batch_size: int,
        beta: float | None = None,
        *,
        fields: list[str] | None = None,
        with_priorities: bool = False,
    ) -> dict[str, np.ndarray]:
        """Sample ``batch_size`` transitions: one array per field, ``indices`` (and ``weights``).

        ``beta`` is passed on for prioritized strategies; ``fields`` limits the reply to some
        fields; ``with_priorities`` adds each row's stored priority, as the sync client's.
        """
        request = codec.sample(self.schema, batch_size, beta, fields, with_priorities)
        return await self._request(p.MsgType.SAMPLE, [request])

    async def priority_mass(self) -> tuple[int, int, float, float]:
        """Return ``(size, next_key, total_priority, min_priority)``, as the sync client's."""
        if "priority_mass" not in self.schema.info.get("features", ()):
            raise ValueError("this server does not offer priority_mass (an older version)")
        return await self._request(p.MsgType.PRIORITY_MASS, [])  # type: ignore[no-any-return]

    async def sample_into(
        self, out: dict[str, np.ndarray], beta: float | None = None
    ) -> dict[str, np.ndarray]:
        """Fill the caller's arrays (any subset of the fields, ``indices``); return ``out``."""
        rows, names = codec.sample_into_fields(self.schema, out)
        request = codec.sample(self.schema, rows, beta, names or [self.schema.names[0]])
        batch = await self._request(p.MsgType.SAMPLE, [request])
        for name, array in out.items():
            np.copyto(array, batch[name])
        return out

    async def update_priorities(
        self, indices: Any, td_errors: Any = None, *, priorities: Any = None
    ) -> int:
        """Set priorities of sampled keys from TD errors (or ``priorities=``); return how many."""
        parts = codec.update_priorities(self.schema, indices, td_errors, priorities)
        return await self._request(p.MsgType.UPDATE_PRIORITIES, parts)

    async def size(self) -> int:
        """How many transitions the buffer holds now."""
        return int((await self._request(p.MsgType.SIZE, []))[0])

    async def capacity(self) -> int:
        """How many transitions the buffer holds when full."""
        return self.schema.capacity

    async def is_full(self) -> bool:
        """Whether the buffer holds ``capacity()`` transitions."""
        return await self.size() >= self.schema.capacity

    async def next_key(self) -> int:
        """Return the key the next added transition will get."""
        return int((await self._request(p.MsgType.SIZE, []))[1])

    async def clear(self) -> None:
        """Forget every transition (the server waits for running adds first)."""
        await self._request(p.MsgType.CLEAR, [])

    async def info(self) -> dict[str, Any]:
        """Describe the buffer: schema, config, limits, size, next key, memory."""
        return await self._request(p.MsgType.INFO, [])

    async def stats(self) -> dict[str, Any]:
        """Return the server's counters: inserts, samples, requests, errors, connections."""
        return await self._request(p.MsgType.STATS, [])

    async def close(self) -> None:
        """Close the connection; calls still waiting fail with ConnectionError."""
        self._fail(ConnectionError(f"the client for {self.url} is closed"))
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def __aenter__(self) -> AsyncClient:
        """Return the client itself."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the client."""
        await self.close()

    def __repr__(self) -> str:
        """Show where the client is connected."""
        state = "closed" if self._broken else "open"
        return f"<replay_buffer.aio.AsyncClient {self.url} ({state})>"

    # the wire

    async def _request(self, msg_type: int, parts: list[bytes | memoryview]) -> Any:
        async with self._slots:
            if self._broken is not None:
                raise self._broken
            request_id = self._next_id
            self._next_id += 1
            future: asyncio.Future[Any] = self._loop.create_future()
            self._waiters[request_id] = (msg_type, future)
            header = p.pack_header(msg_type, request_id, p.arrays_nbytes(parts))
            async with self._send_lock:
                try:
                    await self._send([header, *parts])
                except BaseException as exc:  # a frame cut short: the stream is lost
                    self._fail(ConnectionError(f"connection to {self.url} lost: {exc!r}"))
                    raise
            try:
                return await asyncio.wait_for(future, self.timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no reply from {self.url} within {self.timeout} s") from None
            finally:
                self._waiters.pop(request_id, None)  # a late reply is then dropped

    async def _send(self, parts: list[bytes | memoryview]) -> None:
        if p.arrays_nbytes(parts) < _JOIN_BELOW:
            await self._loop.sock_sendall(self._sock, b"".join(parts))
            return
        for part in parts:
            await self._loop.sock_sendall(self._sock, part)

    async def _read_loop(self) -> None:
        try:
            while True:
                msg_type, request_id, length = p.unpack_header(await self._read(p.HEADER_SIZE))
                codec.check_reply_length(self._schema, length)
                payload = await self._read(length)
                waiter = self._waiters.get(request_id)
                if msg_type == p.MsgType.ERROR:
                    error = p.decode_error(payload)
                    if waiter is None and request_id == 0:
                        raise error  # about the connection: the server gave up on it
                    if waiter and not waiter[1].done():
                        waiter[1].set_exception(error)
                    continue
                if waiter is None or waiter[1].done():
                    continue  # its caller timed out or was cancelled
                sent_type, future = waiter
                if msg_type != sent_type | p.RESPONSE_BIT:
                    raise p.ProtocolError(f"reply of type {msg_type:#x} to a {sent_type:#x}")
                future.set_result(codec.decode_reply(sent_type, payload))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc if isinstance(exc, p.ProtocolError) else _lost(self.url, exc))

    def _fail(self, error: BaseException) -> None:
        if self._broken is None:
            self._broken = error
            self._sock.close()
        for _, future in self._waiters.values():
            if not future.done():
                future.set_exception(self._broken)
        self._waiters.clear()

    async def _read(self, n: int) -> memoryview:
        """Receive ``n`` bytes into a fresh writable buffer (big ones straight into it)."""
        out = memoryview(np.empty(n, np.uint8) if n >= _STAGING_BYTES // 2 else bytearray(n))
        buffered = min(n, self._end - self._start)
        out[:buffered] = self._staging[self._start : self._start + buffered]
        self._start += buffered
        got = buffered
        while got < n:
            if n - got >= _STAGING_BYTES // 2:
                received = await self._loop.sock_recv_into(self._sock, out[got:])
            else:
                self._start = 0
                self._end = await self._loop.sock_recv_into(self._sock, self._staging)
                received = min(self._end, n - got)
                out[got : got + received] = self._staging[:received]
                self._start = received
            if not received:
                raise ConnectionError("the server closed the connection")
            got += received
        return out


def _lost(url: str, exc: BaseException) -> ConnectionError:
    return ConnectionError(f"connection to {url} lost: {exc}")


async def _open(address: Address, timeout: float) -> socket.socket:
    loop = asyncio.get_running_loop()
    if address.scheme == "unix":
        targets: list[tuple[int, Any]] = [(socket.AF_UNIX, address.path)]
    else:
        infos = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
        targets = [(family, addr) for family, _, _, _, addr in infos]
    error: OSError = OSError(f"cannot resolve {address}")
    for family, target in targets:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, target), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            sock.close()
            error = (
                exc if isinstance(exc, OSError) else TimeoutError(f"timed out after {timeout} s")
            )
            continue
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise error


async def connect(
    url: str,
    *,
    token: str | None = None,
    timeout: float | None = None,
    connect_timeout: float = 10.0,
) -> AsyncClient:
    """Open an asyncio connection to the replay server at ``url``; await it for the client.

    Args:
        url: ``unix:///path/to.sock`` or ``tcp://host:port``.
        token: The shared secret, if the server requires one; default: the
            ``REPLAY_BUFFER_TOKEN`` environment variable.
        timeout: Seconds any one call may wait for its reply (None: forever). A call that times
            out raises TimeoutError; the connection stays usable.
        connect_timeout: Seconds to wait for the connection itself.

    Raises:
        PermissionError: the server wants a token and this one is wrong or missing.
        OSError: nothing listens there (ConnectionRefusedError, FileNotFoundError for a Unix
            socket), or the handshake failed (ConnectionError). Every such error names ``url``.

    """
    address = parse_address(url)
    try:
        sock = await _open(address, connect_timeout)
    except (OSError, RuntimeError) as exc:
        raise connect_error(url, exc) from exc
    client = AsyncClient(url, sock, timeout)
    try:
        await client._handshake(token)
    except (OSError, RuntimeError) as exc:
        await client.close()
        raise connect_error(url, exc) from exc
    except BaseException:
        await client.close()
        raise
    return client
