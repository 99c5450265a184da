"""One shard: a Ray actor that owns a buffer and serves it with this project's service.

Ray places the actor, keeps it alive and tells the driver when it dies; the data never goes
through Ray. The actor starts a :class:`~replay_buffer.service.ReplayServer` on its node's
address (a free TCP port) in a thread of its own and reports the URL; every process then talks to
the shard over the socket protocol (docs/protocol.md). Arguments are plain dicts and strings.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from replay_buffer.buffer import ReplayBuffer
from replay_buffer.config import BufferConfig
from replay_buffer.service.server import ReplayServer


class ShardServer:
    """A buffer served on ``tcp://HOST:PORT``; Ray wraps this class as the shard actor.

    Thread-safe: the server runs on its own event loop thread; the methods only read what the
    constructor set, except :meth:`stop`.
    """

    def __init__(
        self, index: int, config: dict[str, Any], fields: dict[str, dict[str, Any]], token: str,
        host: str | None = None,
    ) -> None:
        """Create the shard's buffer and start serving it.

        Args:
            index: The shard's index, 0 to 127.
            config: ``BufferConfig``'s fields.
            fields: ``{name: {"shape": [...], "dtype": "float32"}}``.
            token: The secret clients must present (every shard of a buffer shares one).
            host: Address to listen on; this node's IP address by default.

        """
        import ray

        self.index = index
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
        self.node_id = ray.get_runtime_context().get_node_id()

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def describe(self) -> dict[str, Any]:
        """Return where the shard is: ``index``, ``url``, ``node_id``, ``pid``."""
        return {"index": self.index, "url": self.url, "node_id": self.node_id, "pid": os.getpid()}

    def stop(self, grace: float = 2.0) -> None:
        """Answer what was received, close every connection and the listener."""
        self._run(self.server.close(grace))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
