"""One shard: a Ray actor that owns a buffer and serves it with this project's service.

Ray places the actor, keeps it alive and tells the driver when it dies; the data never goes
through Ray. The actor starts a :class:`~replay_buffer.service.ReplayServer` on its node's
address (a free TCP port) in a thread of its own and reports the URL. With a region name the
buffer lives in named shared memory, which processes on the same node attach (no socket); the
others talk to the shard over the socket protocol (docs/protocol.md). Arguments are plain dicts
and strings.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from replay_buffer.buffer import ReplayBuffer
from replay_buffer.config import BufferConfig
from replay_buffer.errors import CapacityError
from replay_buffer.ray.transport import host_id
from replay_buffer.service.server import ReplayServer

log = logging.getLogger("replay_buffer.ray")


class ShardServer:
    """A buffer served on ``tcp://HOST:PORT``; Ray wraps this class as the shard actor.

    Thread-safe: the server runs on its own event loop thread; the methods only read what the
    constructor set, except :meth:`stop`.
    """

    def __init__(
        self, index: int, config: dict[str, Any], fields: dict[str, dict[str, Any]], token: str,
        host: str | None = None, shm_name: str | None = None,
    ) -> None:
        """Create the shard's buffer and start serving it.

        Args:
            index: The shard's index, 0 to 127.
            config: ``BufferConfig``'s fields.
            fields: ``{name: {"shape": [...], "dtype": "float32"}}``.
            token: The secret clients must present (every shard of a buffer shares one).
            host: Address to listen on; this node's IP address by default.
            shm_name: Create the buffer in the shared-memory region of this name (removed when
                the shard stops or its process exits; a killed shard leaves it, and the first
                process that finds it orphaned removes it). None, or a region ``/dev/shm``
                cannot hold: a private buffer (``shm_error`` in :meth:`describe` says why).

        """
        import ray

        self.index = index
        self.shm_error: str | None = None
        try:
            self.buffer = ReplayBuffer(BufferConfig(**config), fields=fields, shm_name=shm_name)
        except CapacityError as exc:
            log.warning("shard %d: no shared memory (%s); a private buffer instead", index, exc)
            self.shm_error = str(exc)
            self.buffer = ReplayBuffer(BufferConfig(**config), fields=fields)
        self.host = host or ray.util.get_node_ip_address()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"rb-shard-{index}", daemon=True
        )
        self._thread.start()
        host_part = f"[{self.host}]" if ":" in self.host else self.host
        self.server = ReplayServer(
            self.buffer, [f"tcp://{host_part}:0"], token=token.encode(), status_interval=0
        )
        self.url = self._run(self.server.start())[0]
        # None outside a Ray job (a shard server run by hand, or in tests): no node to report
        self.node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def describe(self) -> dict[str, Any]:
        """Return where the shard is: ``index``, ``url``, ``node_id``, ``host``, ``pid``, ``shm``.

        ``shm``: the region's name, None for a private buffer (``shm_error`` then says why, if
        a region was asked for).
        """
        return {
            "index": self.index, "url": self.url, "node_id": self.node_id, "host": host_id(),
            "pid": os.getpid(), "shm": self.buffer.shm_name, "shm_error": self.shm_error,
        }  # fmt: skip

    def stop(self, grace: float = 2.0) -> None:
        """Answer what was received, close every connection and the listener, remove the region.

        Processes that attached the region keep it mapped until they find the shard stopped.
        """
        self._run(self.server.close(grace))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self.buffer.close()
