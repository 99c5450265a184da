"""The replay server: one buffer served over Unix and TCP sockets by an asyncio event loop.

Each connection (:mod:`replay_buffer.service.connection`) reads frames as they arrive and
answers them in order. A request runs on the event loop only when it is small and can never
wait (a worker-thread handoff costs more than such a call); every other request runs in a worker
thread of its lane, where the C++ core copies with the GIL released.

A rate-limited add waits for samples, a sample waits for adds (or for the buffer to fill), and
a clear waits for the adds in progress. The rule is that no request ever queues behind one it
could release. So each lane holds one kind of request, and no kind can release a request of its
own kind: adds release samples, samples release adds, updates never wait. However many requests
wait in the insert lane, samples, updates and clears still get threads, and the event loop runs
nothing that could wait at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import signal
import socket
import stat
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from replay_buffer.service import protocol as p
from replay_buffer.service.address import Address, parse_address
from replay_buffer.service.connection import Connection
from replay_buffer.service.handlers import Handlers, Reply
from replay_buffer.service.stats import ServerStats

if TYPE_CHECKING:
    from replay_buffer.buffer import ReplayBuffer

log = logging.getLogger("replay_buffer.service")

INLINE_MAX_BYTES = 64 * 1024  # requests moving less data than this may run on the event loop
# The worker lane of each request that does not run on the event loop (see the module doc).
LANES = {
    p.MsgType.ADD: "insert",
    p.MsgType.ADD_BATCH: "insert",
    p.MsgType.SAMPLE: "sample",
    p.MsgType.UPDATE_PRIORITIES: "update",
    p.MsgType.CLEAR: "clear",
}


class ReplayServer:
    """Serves one buffer on any number of ``unix://`` and ``tcp://`` addresses.

    Use it from a running event loop: ``await server.start()``, then ``await server.close()``
    (stops accepting, answers every request already received, closes, removes socket files).
    :func:`run` does all of that for the ``serve`` command, until SIGINT or SIGTERM.
    """

    def __init__(
        self,
        buffer: ReplayBuffer,
        listen: Sequence[str],
        *,
        limits: p.Limits | None = None,
        token: bytes | None = None,
        shm_name: str | None = None,
        status_interval: float = 10.0,
        max_connections: int = 1024,
        workers: int = 4,
        handshake_timeout: float = 10.0,
    ) -> None:
        """Prepare to serve ``buffer``; nothing listens until :meth:`start`.

        Args:
            buffer: The buffer to serve.
            listen: URLs such as ``unix:///run/rb.sock`` or ``tcp://127.0.0.1:7777`` (port 0:
                any free port; :meth:`start` returns the ones it got).
            limits: Frame size, batch and pipelining limits.
            token: Shared secret clients must present in the handshake. Required when any TCP
                address is not a loopback address.
            shm_name: Shared-memory name of the buffer, announced to clients.
            status_interval: Seconds between status lines in the log; 0 turns them off.
            max_connections: Connections beyond this many are refused with an error frame.
            workers: Threads per lane: for inserts, samples, priority updates and clears that
                do not run on the event loop (threads are started when first needed).
            handshake_timeout: Seconds a new connection has to complete its handshake.

        Raises:
            ValueError: a bad address, or a non-loopback TCP address without a token.

        """
        self.addresses = [parse_address(url) for url in listen]
        if not self.addresses:
            raise ValueError("give at least one address to listen on")
        exposed = [str(a) for a in self.addresses if not a.is_loopback()]
        if exposed and not token:
            raise ValueError(
                f"refusing to listen on {', '.join(exposed)} without a token: a non-loopback "
                "address needs a shared secret (--token-file or --token-env)"
            )
        self.limits = limits or p.Limits()
        self.handlers = Handlers(buffer, self.limits, shm_name)
        min_size, samples_per_insert, _, _ = buffer.rate_limit
        # What the buffer's rate limiter can make wait, and so must never run on the event loop.
        self._adds_may_wait = samples_per_insert > 0
        self._samples_may_wait = samples_per_insert > 0 or min_size > 0
        self.stats = ServerStats()
        self.token = token
        self.status_interval = status_interval
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self._lanes = {
            lane: ThreadPoolExecutor(workers, thread_name_prefix=f"rb-{lane}")
            for lane in sorted(set(LANES.values()))
        }
        self._listeners: list[asyncio.Server] = []
        self._socket_files: list[tuple[str, int]] = []
        self.connections: set[Connection] = set()
        self._status_task: asyncio.Task[None] | None = None
        self.bound: list[str] = []

    async def start(self) -> list[str]:
        """Open every listener; returns the URLs actually bound (with real port numbers)."""
        loop = asyncio.get_running_loop()
        try:
            for address in self.addresses:
                if address.scheme == "unix":
                    sock = self._unix_socket(address.path)
                    server = await loop.create_unix_server(lambda: Connection(self), sock=sock)
                    self.bound.append(str(address))
                else:
                    server = await loop.create_server(
                        lambda: Connection(self), address.host, address.port, backlog=1024
                    )
                    ports = {s.getsockname()[1] for s in server.sockets}
                    self.bound += [str(Address("tcp", host=address.host, port=n)) for n in ports]
                self._listeners.append(server)
        except BaseException:
            await self.close()
            raise
        if self.status_interval > 0:
            self._status_task = asyncio.create_task(self._status_loop())
        return self.bound

    def _unix_socket(self, path: str) -> socket.socket:
        """Listen on a Unix socket at ``path``, made mode 0600 before anyone can connect."""
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise FileExistsError(f"{path} exists and is not a socket; not replacing it")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(path)
                except ConnectionRefusedError:
                    os.unlink(path)  # left behind by a server that died
                else:
                    raise OSError(f"another server is already listening on unix://{path}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            os.chmod(path, 0o600)  # nobody can connect before listen(), so this is in time
            sock.listen(1024)
        except BaseException:
            sock.close()
            raise
        self._socket_files.append((path, os.stat(path).st_ino))
        return sock

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting, answer requests already received (up to ``grace`` s), clean up."""
        for server in self._listeners:
            server.close()
        for path, inode in self._socket_files:
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == inode:  # still ours, not a newer server's
                    os.unlink(path)
        self._socket_files.clear()
        if self._status_task:
            self._status_task.cancel()
        # Requests the rate limiter holds back would keep their worker (and this shutdown) for up
        # to their timeout: they end now, with an error to their client.
        self.handlers.buffer.cancel_waits()
        workers = [conn.finish() for conn in list(self.connections)]
        if workers:
            await asyncio.wait(workers, timeout=grace)
            for conn in list(self.connections):
                conn.abort()
        for server in self._listeners:
            await server.wait_closed()
        self._listeners.clear()
        for lane in self._lanes.values():
            lane.shutdown(wait=False, cancel_futures=True)

    # what a Connection asks of its server

    def register(self, connection: Connection) -> str | None:
        """Count a new connection in; return why it is refused instead, or None."""
        if len(self.connections) >= self.max_connections:
            return f"the server is at its limit of {self.max_connections} connections"
        self.connections.add(connection)
        return None

    def unregister(self, connection: Connection) -> bool:
        """Forget a connection; return whether :meth:`register` had counted it in."""
        if connection not in self.connections:
            return False
        self.connections.discard(connection)
        return True

    def max_payload(self, msg_type: int) -> int:
        """Return the largest payload a request of this type may have; longer ones are refused."""
        return self.handlers.max_payload(msg_type)

    async def dispatch(self, msg_type: int, payload: bytes) -> Reply:
        """Run one authenticated request; raises what the buffer raises."""
        if msg_type == p.MsgType.INFO:
            return Reply([p.encode_json(self.handlers.info())])
        if msg_type == p.MsgType.STATS:
            return Reply([p.encode_json(self.stats_reply())])
        handler = self.handlers.table[msg_type]
        view = memoryview(payload)
        if self._runs_inline(msg_type, view):
            return handler(view)
        lane = self._lanes[LANES[msg_type]]
        return await asyncio.get_running_loop().run_in_executor(lane, handler, view)

    def _runs_inline(self, msg_type: int, payload: memoryview) -> bool:
        """Whether to run a request on the event loop: it is small and can never wait.

        A worker thread costs 100-250 µs a request in handoffs; for large copies that is noise,
        and the copy then overlaps with the event loop serving others.
        """
        if msg_type in (p.MsgType.SIZE, p.MsgType.PRIORITY_MASS):
            return True
        if msg_type == p.MsgType.SAMPLE:
            if self._samples_may_wait:
                return False
            if len(payload) != p.SAMPLE_REQUEST.size:
                return True  # malformed: the handler says so at once
            batch = p.SAMPLE_REQUEST.unpack(payload)[0]
            return batch * self.handlers.max_row_bytes < INLINE_MAX_BYTES
        if msg_type in (p.MsgType.ADD, p.MsgType.ADD_BATCH):
            return not self._adds_may_wait and len(payload) < INLINE_MAX_BYTES
        if msg_type == p.MsgType.UPDATE_PRIORITIES:
            return len(payload) < INLINE_MAX_BYTES
        return False  # CLEAR waits for the adds in progress

    def stats_reply(self) -> dict[str, Any]:
        """STATS: the buffer's size and capacity, and the server's counters."""
        buffer = self.handlers.buffer
        return {"size": buffer.size(), "capacity": buffer.capacity(), **self.stats.snapshot()}

    def hello(self, payload: bytes) -> Reply:
        """Check a client's handshake and describe the buffer to it.

        Raises:
            PermissionError: the server has a token and the client did not present it.

        """
        request = p.decode_json(payload)
        if self.token is not None:
            given = request.get("token")
            if not isinstance(given, str) or not hmac.compare_digest(given.encode(), self.token):
                raise PermissionError(
                    "the server requires a token; the one given is wrong or missing"
                )
        return Reply([p.encode_json(self.handlers.describe())])

    async def _status_loop(self) -> None:
        stats = self.stats
        before = (time.monotonic(), stats.inserts, stats.samples)
        while True:
            await asyncio.sleep(self.status_interval)
            now = (time.monotonic(), stats.inserts, stats.samples)
            elapsed = max(now[0] - before[0], 1e-9)
            buffer = self.handlers.buffer
            log.info(
                "size %d/%d | %.0f inserts/s | %.0f samples/s | %d clients",
                buffer.size(),
                buffer.capacity(),
                (now[1] - before[1]) / elapsed,
                (now[2] - before[2]) / elapsed,
                stats.connections,
            )
            before = now


def _install_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)


async def serve(server: ReplayServer, grace: float = 10.0) -> None:
    """Run ``server`` until SIGINT or SIGTERM, then shut it down cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    _install_signals(loop, stop.set)
    bound = await server.start()
    log.info("serving %r", server.handlers.buffer)
    for url in bound:
        log.info("listening on %s", url)
    await stop.wait()
    log.info("shutting down: answering requests already received, then closing")
    await server.close(grace)
    log.info("stopped")
