"""How a ShardedReplayBuffer reaches one shard: its shared memory on the same node, else a socket.

Both links offer the calls the sharded buffer makes — ``add``, ``add_batch``, ``sample``,
``update_priorities``, ``priority_mass``, ``capacity``, ``stats``, ``close`` — and the calls that
fan out to several shards (``sample``, ``update_priorities``, ``priority_mass`` with
``wait=False``) return an object with ``result()``: a socket request in flight, or for shared
memory the work itself, done when ``result()`` is called (after every socket request has been
sent, so the local work overlaps the remote round trips).

Which link a shard gets is :func:`is_local`: the same Ray node (by node id) inside a Ray job,
the same host (:func:`host_id`) outside one. A local shard whose region cannot be attached (a
container with its own ``/dev/shm``, another user) is reached over its socket instead.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from replay_buffer import _core
from replay_buffer.buffer import ReplayBuffer
from replay_buffer.service.client import Client
from replay_buffer.service.handlers import priority_mass_of, sampled_priorities

log = logging.getLogger("replay_buffer.ray")

#: Seconds between two checks that a shared shard's creator (the shard actor) still runs.
LIVENESS_INTERVAL = 0.05


def host_id() -> str:
    """Name this host (and boot): equal in two processes that can share ``/dev/shm``, usually.

    The host name plus, on Linux, the boot id. Two containers of one host have different host
    names; a false match is harmless (attaching then fails and the socket is used).
    """
    boot = ""
    try:
        with open("/proc/sys/kernel/random/boot_id") as file:
            boot = file.read().strip()
    except OSError:
        pass
    return f"{socket.gethostname()}/{boot}"


def is_local(shard: Mapping[str, Any], node_id: str | None) -> bool:
    """Whether ``shard`` (a description entry) is on this process's node.

    In a Ray job (``node_id`` given) and for a shard that reports its Ray node: the same node id.
    Otherwise: the same :func:`host_id`. A shard that reports neither is never local.
    """
    if node_id is not None and shard.get("node_id"):
        return bool(shard["node_id"] == node_id)
    return bool(shard.get("host")) and shard.get("host") == host_id()


class Done:
    """A call made locally, run when :meth:`result` is first asked for (as a reply is read)."""

    def __init__(self, call: Callable[[], Any]) -> None:
        """Hold ``call`` until :meth:`result`."""
        self._call: Callable[[], Any] | None = call
        self._value: Any = None

    def result(self) -> Any:
        """Run the call (once) and return its value, or raise its error."""
        if self._call is not None:
            call, self._call = self._call, None
            self._value = call()
        return self._value


class SocketLink(Client):
    """A shard reached over the socket protocol: a :class:`Client` with a transport name."""

    transport = "socket"


class SharedMemoryLink:
    """A shard reached through its shared-memory region, attached in this process.

    The shard counts as failed (``ConnectionError``, as a reset socket) once its creator — the
    shard actor — has exited or died: its region may still be mapped and readable, but the other
    processes of the buffer, reaching it by socket, have dropped it, so writing to it or sampling
    it here would diverge from them. Checked at most every :data:`LIVENESS_INTERVAL` seconds
    before a call. Finding the creator dead, the link removes the region's name (as
    ``replay-buffer shm rm`` would) so that a killed shard leaves nothing in ``/dev/shm``.

    ``stats`` goes to the shard's server over a socket opened when first asked (the control
    path); its counters count socket traffic only. Thread-safe.
    """

    transport = "shm"

    def __init__(self, name: str, url: str, token: str, timeout: float | None) -> None:
        """Attach the region ``name`` (``FileNotFoundError``, ``PermissionError`` if it cannot)."""
        self.name = name
        self.buffer = ReplayBuffer.attach(name)
        self._url, self._token, self._timeout = url, token, timeout
        self._control: Client | None = None
        self._checked = -math.inf  # the first call checks
        self._lock = threading.Lock()
        self._gone: str | None = None

    @property
    def closed(self) -> bool:
        """Whether the link is closed (by :meth:`close`, or its shard found gone)."""
        return self.buffer.closed

    def _alive(self) -> None:
        """Raise ``ConnectionError`` if the region's creator has gone (checked now and then)."""
        if self._gone is None and time.monotonic() - self._checked >= LIVENESS_INTERVAL:
            self._checked = time.monotonic()
            try:
                info = _core.shm_info(self.name)
            except FileNotFoundError:
                self._gone = "its region's name was removed: the shard actor stopped"
            else:
                if info.get("creator_alive") is False:
                    self._gone = f"the shard actor (pid {info['creator_pid']}) died"
                    remove_orphaned_region(self.name)
        if self._gone is not None:
            raise ConnectionError(f"shared shard {self.name}: {self._gone}")

    def add(self, *values: Any, **named: Any) -> int:
        """Add one transition; return the shard's key."""
        self._alive()
        return int(self.buffer.add(*values, **named))

    def add_batch(self, *arrays: Any, **named: Any) -> int:
        """Add a batch; return the shard's first key."""
        self._alive()
        return int(self.buffer.add_batch(*arrays, **named))

    def sample(
        self,
        batch_size: int,
        beta: float | None = None,
        *,
        fields: list[str] | None = None,
        with_priorities: bool = False,
        wait: bool = True,
    ) -> Any:
        """Sample as :meth:`Client.sample` does (the same fields, ``priorities`` on request)."""
        if fields is not None:
            unknown = [name for name in fields if name not in self.buffer.fields]
            if unknown:
                raise KeyError(
                    f"no field named {unknown[0]!r}; fields are {', '.join(self.buffer.fields)}"
                )

        def draw() -> dict[str, np.ndarray]:
            self._alive()
            batch = self.buffer.sample(batch_size, beta)
            if fields is not None:
                batch = {
                    name: array
                    for name, array in batch.items()
                    if name in fields or name not in self.buffer.fields
                }
            if with_priorities:
                batch["priorities"] = sampled_priorities(self.buffer, batch["indices"])
            return batch

        return draw() if wait else Done(draw)

    def update_priorities(
        self, indices: Any, td_errors: Any = None, *, priorities: Any = None, wait: bool = True
    ) -> Any:
        """Set priorities of the shard's keys; return how many were applied."""

        def update() -> int:
            self._alive()
            return int(self.buffer.update_priorities(indices, td_errors, priorities=priorities))

        return update() if wait else Done(update)

    def priority_mass(self, *, wait: bool = True) -> Any:
        """Return ``(size, next_key, total_priority, min_priority)`` as PRIORITY_MASS does."""

        def mass() -> tuple[int, int, float, float]:
            self._alive()
            return priority_mass_of(self.buffer)

        return mass() if wait else Done(mass)

    def capacity(self) -> int:
        """How many transitions the shard holds when full."""
        self._alive()
        return int(self.buffer.capacity())

    def stats(self) -> dict[str, Any]:
        """Return the shard server's STATS (over a socket: the control path), size read here."""
        self._alive()
        with self._lock:
            if self._control is None or self._control.closed:
                self._control = Client(
                    self._url, token=self._token, timeout=self._timeout,
                    connect_timeout=min(self._timeout or 10.0, 10.0),
                )  # fmt: skip
            control = self._control
        return {**control.stats(), "size": self.buffer.size()}

    def close(self) -> None:
        """Unmap the region here and close the control socket (the shard keeps running)."""
        with self._lock:
            control, self._control = self._control, None
        if control is not None:
            control.close()
        self.buffer.close()


def remove_orphaned_region(name: str) -> bool:
    """Remove the region ``name`` if it is visible here and its creator is dead; say if it was.

    The rule of ``replay-buffer shm rm`` without ``--force``: a region whose creator runs, or
    whose creator cannot be judged from here, is left alone.
    """
    try:
        if _core.shm_info(name).get("creator_alive") is not False:
            return False
        _core.shm_unlink(name)
    except (OSError, ValueError) as exc:  # gone already, not ours, not a buffer
        log.debug("left region %s alone: %s", name, exc)
        return False
    log.info("removed %s, the region of a shard whose actor died", name)
    return True


def connect(
    shard: Mapping[str, Any], token: str, timeout: float | None, node_id: str | None
) -> SocketLink | SharedMemoryLink:
    """Open the link to ``shard``: its shared memory if it is local and attachable, else TCP."""
    name = shard.get("shm")
    if name and is_local(shard, node_id):
        try:
            return SharedMemoryLink(name, shard["url"], token, timeout)
        except (OSError, ValueError) as exc:  # not here after all, another user's, corrupt
            log.info(
                "shard %s: cannot attach its shared memory %s here (%s); using %s",
                shard["index"], name, exc, shard["url"],
            )  # fmt: skip
    return SocketLink(
        shard["url"], token=token, timeout=timeout, connect_timeout=min(timeout or 10.0, 10.0)
    )

