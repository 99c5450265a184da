"""One client connection of the server: frames in, replies out, in order.

Reading is event-driven: small frames are parsed from a staging buffer, large payloads are
received straight into a buffer of their own (the only copies are kernel-to-payload and
payload-to-buffer). A worker task runs the requests in order; a writer task sends the replies,
so the next request runs while a large reply is still going out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any, Protocol

import numpy as np

from replay_buffer.service import protocol as p
from replay_buffer.service.handlers import Reply
from replay_buffer.service.stats import ServerStats

log = logging.getLogger("replay_buffer.service")

STAGING_BYTES = 96 * 1024  # per connection: small frames are parsed from here
DIRECT_MIN_BYTES = 32 * 1024  # payloads this long are received into a buffer of their own
JOIN_BELOW_BYTES = 64 * 1024  # smaller replies go out as one joined write
_REQUESTS = frozenset(t for t in p.MsgType if t != p.MsgType.ERROR)
_KINDS = {t: t.name.lower() for t in _REQUESTS}  # what the stats call each request type
_FAIL = -1  # a queue item: the connection broke the protocol; answer with an error and close

# A queued request: type, id, payload, when its last byte arrived, its frame's size.
_Item = tuple[int, int, Any, float, int]


class Host(Protocol):
    """What a connection needs from its server (:class:`~replay_buffer.service.ReplayServer`)."""

    stats: ServerStats
    limits: p.Limits
    handshake_timeout: float

    def register(self, connection: Connection) -> str | None:
        """Count a new connection in; return why it is refused instead, or None."""

    def unregister(self, connection: Connection) -> bool:
        """Forget a connection; return whether :meth:`register` had counted it in."""

    def max_payload(self, msg_type: int) -> int:
        """Return the largest payload a request of this type may have."""

    def hello(self, payload: bytes) -> Reply:
        """Check a handshake and describe the buffer; raises PermissionError for a bad token."""

    async def dispatch(self, msg_type: int, payload: bytes) -> Reply:
        """Run one authenticated request; raises what the buffer raises."""


class Connection(asyncio.BufferedProtocol):
    """One client connection: frames in, replies out, in order."""

    def __init__(self, server: Host) -> None:
        """Serve one connection of ``server``; asyncio calls the rest."""
        self._server = server
        self._staging = bytearray(STAGING_BYTES)
        self._view = memoryview(self._staging)
        self._start = 0
        self._end = 0
        self._direct: np.ndarray | None = None  # payload being received straight into place
        self._direct_view = memoryview(b"")
        self._direct_filled = 0
        self._direct_header = (0, 0)
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._authenticated = False
        self._hello_seen = False
        self._held = False  # not parsing: waiting for the handshake, a full queue, or shutdown
        self._stopped = False  # parsing no more, ever
        self._writable = asyncio.Event()
        self._writable.set()
        self._transport: asyncio.Transport | None = None
        # Replies wait here for the writer, so the next request runs while one is being sent.
        # One slot: with one reply sending, one waiting and one being made, the core's three
        # reusable sample blocks suffice and no batch needs fresh memory.
        self._replies: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=1)
        self._worker: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._sender: socket.socket | None = None

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Register, refuse when over the connection limit, arm the handshake timer."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        server = self._server
        refusal = server.register(self)
        if refusal is not None:
            server.stats.connection_refused()
            self._stopped = True
            transport.write(self._error_frame(0, p.ServiceError(refusal)))
            transport.close()
            return
        server.stats.connection_opened()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(server.handshake_timeout, self._handshake_expired)
        self._worker = loop.create_task(self._work())
        self._writer = loop.create_task(self._write_replies())

    def connection_lost(self, exc: Exception | None) -> None:
        """Let the worker finish what it is doing and stop."""
        if self._server.unregister(self):
            self._server.stats.connection_closed()
        self._stopped = True
        self._direct = None
        if self._timer:
            self._timer.cancel()
        self._writable.set()
        self._queue.put_nowait(None)

    def pause_writing(self) -> None:
        """Stop answering until the client, which reads slower than we write, catches up."""
        self._writable.clear()

    def resume_writing(self) -> None:
        """Answer again: the client caught up."""
        self._writable.set()

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the next bytes go: the payload being received, else the staging buffer."""
        if self._direct is not None:
            return self._direct_view[self._direct_filled :]
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        """Take the bytes in and hand every complete frame to the worker."""
        if self._direct is not None:
            self._direct_filled += nbytes
            if self._direct_filled == len(self._direct):
                msg_type, request_id = self._direct_header
                payload, self._direct = self._direct, None
                self._enqueue(msg_type, request_id, payload)
            else:
                return
        else:
            self._end += nbytes
        self._parse()

    def eof_received(self) -> bool:
        """Answer what was received, then close: the client has finished sending."""
        self._stopped = True
        self._direct = None
        self._queue.put_nowait(None)
        return True  # keep our side open for the answers; the worker closes it

    # parsing

    def _parse(self) -> None:
        view = self._view
        while not self._held and not self._stopped and self._end - self._start >= p.HEADER_SIZE:
            start = self._start
            try:
                msg_type, request_id, length = p.unpack_header(view[start : start + p.HEADER_SIZE])
            except p.ProtocolError as exc:
                self._fail(0, exc)
                return
            try:
                self._check(msg_type, length)
            except p.ProtocolError as exc:
                self._fail(request_id, exc)
                return
            available = self._end - start - p.HEADER_SIZE
            body = start + p.HEADER_SIZE
            if length >= DIRECT_MIN_BYTES:
                payload = np.empty(length, np.uint8)  # pages are committed only as bytes arrive
                take = min(available, length)
                payload[:take] = np.frombuffer(view[body : body + take], np.uint8)
                self._start = body + take
                if take < length:
                    self._direct, self._direct_view = payload, memoryview(payload)
                    self._direct_filled, self._direct_header = take, (msg_type, request_id)
                    break
                self._enqueue(msg_type, request_id, payload)
            elif available >= length:
                self._start = body + length
                self._enqueue(msg_type, request_id, bytes(view[body : body + length]))
            else:
                break
        if self._start == self._end:
            self._start = self._end = 0
        elif len(self._staging) - self._end < DIRECT_MIN_BYTES + p.HEADER_SIZE:
            remaining = self._end - self._start
            view[:remaining] = view[self._start : self._end]
            self._start, self._end = 0, remaining

    def _check(self, msg_type: int, length: int) -> None:
        if not self._hello_seen:
            if msg_type != p.MsgType.HELLO:
                raise p.ProtocolError("the first frame must be HELLO")
        elif msg_type == p.MsgType.HELLO:
            raise p.ProtocolError("HELLO may only be sent once")
        if msg_type not in _REQUESTS:
            raise p.ProtocolError(f"unknown message type {msg_type:#x}")
        limit = self._server.max_payload(msg_type)
        if length > limit or length > self._server.limits.max_frame_bytes:
            name = p.MsgType(msg_type).name
            raise p.ProtocolError(f"{name} payload of {length} bytes is over the limit of {limit}")

    def _enqueue(self, msg_type: int, request_id: int, payload: Any) -> None:
        size = p.HEADER_SIZE + len(payload)
        self._queue.put_nowait((msg_type, request_id, payload, time.perf_counter(), size))
        if msg_type == p.MsgType.HELLO:
            self._hello_seen = True
            self._hold()  # nothing more is read until the client has proved who it is
        elif self._queue.qsize() >= self._server.limits.max_in_flight:
            self._hold()

    def _hold(self) -> None:
        self._held = True
        if self._transport and not self._transport.is_closing():
            self._transport.pause_reading()

    def _release(self) -> None:
        if self._held and not self._stopped:
            self._held = False
            if self._transport and not self._transport.is_closing():
                self._transport.resume_reading()
            self._parse()  # frames that arrived before the hold

    def _fail(self, request_id: int, exc: p.ProtocolError) -> None:
        self._stopped = True
        if self._transport and not self._transport.is_closing():
            self._transport.pause_reading()
        self._queue.put_nowait((_FAIL, request_id, exc, time.perf_counter(), p.HEADER_SIZE))

    def _handshake_expired(self) -> None:
        if not self._authenticated and self._transport:
            log.info("closing a connection that did not complete its handshake in time")
            self.abort()

    # answering

    async def _work(self) -> None:
        """Run the requests in order, handing each result to the writer."""
        try:
            while True:
                item = await self._queue.get()
                if item is None or self._transport is None or self._transport.is_closing():
                    break
                msg_type, request_id, payload, arrived, size = item
                if msg_type == _FAIL:
                    await self._replies.put(item)
                    break
                result = await self._run(msg_type, payload)
                await self._replies.put((msg_type, request_id, result, arrived, size))
                if not self._authenticated:
                    break
                if self._held and self._queue.qsize() < self._server.limits.max_in_flight:
                    self._release()
        finally:
            await self._replies.put(None)

    async def _write_replies(self) -> None:
        """Send the results in order, then close the connection."""
        try:
            while (item := await self._replies.get()) is not None:
                msg_type, request_id, result, arrived, size = item
                if self._transport is None or self._transport.is_closing():
                    continue  # the client is gone; drain what the worker still hands over
                if msg_type == _FAIL:
                    log.info("closing a connection: %s", result)
                sent = await self._answer(msg_type, request_id, result)
                self._report(msg_type, result, size, sent, arrived)
                await self._writable.wait()
        finally:
            if self._transport and not self._transport.is_closing():
                self._transport.close()
            if self._sender is not None:
                self._sender.close()

    async def _run(self, msg_type: int, payload: Any) -> Reply | BaseException:
        try:
            if msg_type == p.MsgType.HELLO:
                reply = self._server.hello(payload)
                self._authenticated = True
                if self._timer:
                    self._timer.cancel()
                return reply
            return await self._server.dispatch(msg_type, payload)
        except Exception as exc:  # every error goes back to the client, typed
            return exc

    async def _answer(self, msg_type: int, request_id: int, result: Reply | BaseException) -> int:
        """Send a reply or an error frame; return its size."""
        if isinstance(result, BaseException):
            frame = self._error_frame(request_id, result)
            self._write(frame)
            return len(frame)
        length = p.arrays_nbytes(result.parts)
        header = p.pack_header(msg_type | p.RESPONSE_BIT, request_id, length)
        if length < JOIN_BELOW_BYTES:
            self._write(b"".join([header, *result.parts]))
        else:
            await self._send_large([header, *result.parts])
        return p.HEADER_SIZE + length

    def _report(
        self, msg_type: int, result: Reply | BaseException, size: int, sent: int, arrived: float
    ) -> None:
        """Tell the server's stats about one answered frame."""
        failed = isinstance(result, BaseException)
        self._server.stats.request(
            _KINDS.get(msg_type, "invalid"),
            bytes_in=size,
            bytes_out=sent,
            seconds=time.perf_counter() - arrived,
            error_type=p.error_type(result).__name__ if failed else None,
            rows=0 if failed else result.rows,
        )

    async def _send_large(self, parts: list[bytes | memoryview]) -> None:
        """Send a big reply from its arrays, sparing the copy into the transport's buffer.

        Only while the transport has nothing buffered, so bytes cannot overtake each other;
        the socket is a duplicate of the transport's descriptor, used for sending only.
        """
        transport = self._transport
        if transport is None or transport.is_closing() or transport.get_write_buffer_size():
            for part in parts:
                self._write(part)
            return
        if self._sender is None:
            fd = os.dup(transport.get_extra_info("socket").fileno())
            self._sender = socket.socket(fileno=fd)
            self._sender.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            for part in parts:
                await loop.sock_sendall(self._sender, part)
        except OSError:
            transport.abort()  # the client is gone mid-reply

    def _write(self, data: bytes | memoryview) -> None:
        if self._transport is None or self._transport.is_closing():
            return  # the client is gone; what it asked for is done, the answer has nowhere to go
        self._transport.write(data)

    @staticmethod
    def _error_frame(request_id: int, exc: BaseException) -> bytes:
        payload = p.encode_error(p.error_type(exc), p.error_message(exc))
        return p.pack_header(p.MsgType.ERROR, request_id, len(payload)) + payload

    # shutdown

    def finish(self) -> asyncio.Task[None]:
        """Read nothing more; the worker answers what was received, then closes."""
        self._stopped = True
        self._direct = None
        if self._transport and not self._transport.is_closing():
            self._transport.pause_reading()
        self._queue.put_nowait(None)
        assert self._writer is not None
        return self._writer

    def abort(self) -> None:
        """Drop the connection at once, and the reply it may be stuck sending."""
        if self._transport:
            self._transport.abort()
        for task in (self._worker, self._writer):
            if task:
                task.cancel()
