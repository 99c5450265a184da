"""A replay buffer split into shards on a Ray cluster, sampled with the exact global distribution.

See docs/distributed.md. Ray creates the shards (one actor each, each serving its own buffer with
:class:`~replay_buffer.service.ReplayServer`) and places them; everything else — adds, samples,
priority updates — goes straight to the shards: through a shard's shared memory from processes
on its node, over the socket protocol from the others (:mod:`replay_buffer.ray.transport`). This
module imports Ray only to create shards and to find the node a writer runs on, so a process
without Ray can use a buffer given its description (:meth:`ShardedReplayBuffer.describe`).
"""

from __future__ import annotations

import logging
import numbers
import operator
import os
import secrets
import sys
import threading
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from types import TracebackType
from typing import Any

import numpy as np

from replay_buffer.config import BufferConfig
from replay_buffer.errors import EmptyBufferError
from replay_buffer.fields import transition_fields
from replay_buffer.ray.keys import MAX_SHARDS, global_key, global_keys, split_keys
from replay_buffer.ray.transport import (
    SharedMemoryLink,
    SocketLink,
    connect,
    is_local,
    remove_orphaned_region,
)

log = logging.getLogger("replay_buffer.ray")

WRITER_POLICIES = ("local", "round_robin", "least_full", "route")
#: The keyword of add/add_batch that routes a write by episode or environment id.
ROUTE_KEYWORD = "route_key"


class ShardUnavailableWarning(RuntimeWarning):
    """A shard stopped answering: it is left out from now on, and its data is lost."""


class ShardedReplayBuffer:
    """A buffer of ``num_shards`` shards, each a Ray actor serving ``capacity / num_shards``.

    ``sample`` draws across shards exactly as one buffer holding everything would: uniformly in
    proportion to the shards' sizes, or by priority in proportion to each shard's total priority
    (then stratified within the shard), with importance weights from the global figures.
    ``update_priorities`` sends each key to its shard, one message per shard. Keys carry their
    shard (:mod:`replay_buffer.ray.keys`).

    The object pickles as its description (addresses, token, policy), never its data: pass it to
    Ray tasks and actors, and it reconnects there (attaching the shards of its node). Thread-safe:
    calls from several threads share one link per shard (a connection, or an attached region).
    """

    def __init__(
        self,
        config: BufferConfig,
        obs_shape: int | tuple[int, ...] | None = None,
        action_dim: int | None = None,
        *,
        fields: Mapping[str, Mapping[str, Any]] | None = None,
        obs_dtype: Any = np.float32,
        action_type: str = "discrete",
        num_shards: int | None = None,
        placement: str | Sequence[str] = "spread",
        writer_policy: str = "local",
        actor_options: Mapping[str, Any] | None = None,
        timeout: float | None = 60.0,
        shared_memory: bool = True,
    ) -> None:
        """Create the shards on the Ray cluster this process is connected to (``ray.init``).

        Args:
            config: The whole buffer's configuration; each shard gets ``capacity / num_shards``
                (the first ``capacity % num_shards`` one more), its own seed derived from
                ``seed``, and the rate limit scaled as docs/distributed.md says.
            obs_shape: As for :class:`~replay_buffer.ReplayBuffer`.
            action_dim: As for :class:`~replay_buffer.ReplayBuffer`.
            fields: As for :class:`~replay_buffer.ReplayBuffer`.
            obs_dtype: As for :class:`~replay_buffer.ReplayBuffer`.
            action_type: As for :class:`~replay_buffer.ReplayBuffer`.
            num_shards: How many shards, 1 to 128; by default one per alive node.
            placement: ``"spread"``: shard i on the i-th alive node (cycling), pinned there;
                ``"pack"``: wherever Ray's default scheduler puts them; or a list of Ray node
                ids, one per shard.
            writer_policy: Which shard an add goes to (see :meth:`add`): ``"local"`` (a shard on
                the writer's node, else round-robin), ``"round_robin"``, ``"least_full"``, or
                ``"route"`` (by the ``route_key=`` an add gives, e.g. an episode or env id).
            actor_options: Passed to Ray's ``.options()`` for every shard actor (e.g. a
                placement group's ``scheduling_strategy``); overrides ``placement``.
            timeout: Seconds to wait for the shards to start, and for each reply later (None:
                for ever).
            shared_memory: Each shard creates its buffer in a named shared-memory region, which
                processes on its node attach instead of using the socket. False: private
                buffers, every process uses the socket. A shard whose region cannot be made
                (``/dev/shm`` too small) falls back to a private buffer and says so.

        Raises:
            ValueError: a rank-based strategy (its probabilities do not compose across shards),
                a bad shard count, placement or policy.
            RuntimeError: Ray is not initialised.

        """
        import ray

        if not isinstance(config, BufferConfig):
            raise TypeError(f"config must be a BufferConfig, got {type(config).__name__}")
        if config.strategy not in ("uniform", "prioritized"):
            raise ValueError(
                f"a sharded buffer samples with strategy 'uniform' or 'prioritized', not "
                f"{config.strategy!r}: rank-based probabilities depend on every item's rank, so "
                "they cannot be composed from shards"
            )
        _check_policy(writer_policy)
        if not ray.is_initialized():
            raise RuntimeError("call ray.init() (or ray.init(address=...)) before creating shards")
        if fields is None:
            if obs_shape is None or action_dim is None:
                raise TypeError("give obs_shape and action_dim, or fields=")
            fields = transition_fields(obs_shape, action_dim, obs_dtype, action_type)
        elif obs_shape is not None or action_dim is not None:
            raise TypeError("give either fields= or obs_shape/action_dim, not both")
        plain_fields = _plain_fields(fields)
        if ROUTE_KEYWORD in plain_fields:
            raise ValueError(f"a field may not be named {ROUTE_KEYWORD!r}: add() takes it")
        nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
        if num_shards is None:
            num_shards = len(nodes) if isinstance(placement, str) else len(placement)
        num_shards = operator.index(num_shards)
        if not 1 <= num_shards <= MAX_SHARDS:
            raise ValueError(f"num_shards must be 1 to {MAX_SHARDS}, got {num_shards}")
        if num_shards > config.capacity:
            raise ValueError(f"capacity {config.capacity} cannot be split into {num_shards} shards")
        options = _placements(placement, num_shards, nodes)
        token = secrets.token_hex(16)
        region_prefix = f"rbshard_{secrets.token_hex(6)}_" if shared_memory else None
        shard_class = ray.remote(_shard_class())
        actors = []
        for index in range(num_shards):
            actor_opts: dict[str, Any] = {"num_cpus": 0, "max_restarts": 0, **options[index]}
            actor_opts.update(actor_options or {})
            shard_config = asdict(shard_config_of(config, index, num_shards))
            shm_name = None if region_prefix is None else f"{region_prefix}{index}"
            actors.append(
                shard_class.options(**actor_opts).remote(
                    index, shard_config, plain_fields, token, shm_name=shm_name
                )
            )
        try:
            shards = ray.get([actor.describe.remote() for actor in actors], timeout=timeout)
        except BaseException:
            for actor in actors:
                ray.kill(actor)
            raise
        self._actors: list[Any] = actors
        self._setup(
            {
                "shards": shards,
                "token": token,
                "strategy": config.strategy,
                "beta": config.beta,
                "writer_policy": writer_policy,
                "timeout": timeout,
                "dead": [],
            }
        )

    # description, pickling, connecting

    @classmethod
    def from_description(cls, description: Mapping[str, Any]) -> ShardedReplayBuffer:
        """Use the shards a :meth:`describe` result names, from any process (Ray not needed)."""
        buffer = cls.__new__(cls)
        buffer._actors = []
        buffer._setup(description)
        return buffer

    def describe(self) -> dict[str, Any]:
        """Return what another process needs to use these shards: JSON-serialisable.

        It includes the shards' shared token: hand it only to processes you trust.
        """
        return {
            "shards": [dict(shard) for shard in self._shards],
            "token": self._token,
            "strategy": self.strategy,
            "beta": self.beta,
            "writer_policy": self.writer_policy,
            "timeout": self._timeout,
            "dead": sorted(self._dead),
        }

    def _setup(self, description: Mapping[str, Any]) -> None:
        shards = sorted(description["shards"], key=lambda shard: shard["index"])
        if [shard["index"] for shard in shards] != list(range(len(shards))):
            raise ValueError("a description must list shards 0 to N-1")
        _check_policy(description["writer_policy"])
        self._shards: list[dict[str, Any]] = [dict(shard) for shard in shards]
        self._token: str = description["token"]
        self.strategy: str = description["strategy"]
        #: The importance-weight exponent sample uses when given none (settable: anneal it).
        self.beta: float = float(description["beta"])
        self.writer_policy: str = description["writer_policy"]
        self._timeout: float | None = description.get("timeout")
        self._dead: set[int] = set(description.get("dead", ()))
        self._clients: dict[int, SocketLink | SharedMemoryLink] = {}
        self._lock = threading.Lock()
        # Which shard gets how much of a batch; "sample_seed" (tests) makes it repeatable. It is
        # never passed on by describe(): processes sharing one seed would draw alike.
        self._rng = np.random.default_rng(description.get("sample_seed"))
        self._next_writer = os.getpid()
        self._local: list[int] | None = None
        self._failures = 0
        self._issued: dict[int, int] = {}  # each shard's next key, as last heard

    def __reduce__(self) -> tuple[Callable[..., ShardedReplayBuffer], tuple[dict[str, Any]]]:
        """Pickle as the description (addresses, token, policy), never connections or data."""
        return (ShardedReplayBuffer.from_description, (self.describe(),))

    @property
    def num_shards(self) -> int:
        """How many shards the buffer was made of (dead ones included)."""
        return len(self._shards)

    @property
    def live_shards(self) -> list[int]:
        """Indices of the shards this process has not seen fail."""
        return [i for i in range(len(self._shards)) if i not in self._dead]

    def _client(self, shard: int) -> SocketLink | SharedMemoryLink:
        with self._lock:
            client = self._clients.get(shard)
            if client is None:
                client = connect(self._shards[shard], self._token, self._timeout, _current_node())
                self._clients[shard] = client
            return client

    def transport(self, shard: int) -> str:
        """How this process reaches ``shard``: ``"shm"`` (its region, attached) or ``"socket"``.

        Connects to the shard if this process has not yet. ``"shm"`` for a shard on this node
        (same Ray node id; outside Ray, same host) that created its buffer in shared memory.
        """
        if shard not in range(len(self._shards)):
            raise IndexError(f"shard {shard} is not 0 to {len(self._shards) - 1}")
        return self._client(shard).transport

    def _mark_dead(self, shard: int, exc: BaseException) -> None:
        with self._lock:
            if shard in self._dead:
                return
            self._dead.add(shard)
            self._failures += 1
            client = self._clients.pop(shard, None)
        if client is not None:
            client.close()
        message = (
            f"replay shard {shard} at {self._where(shard)} failed ({exc}); sampling "
            f"continues from {len(self.live_shards)} other shard(s), writers move to them, and "
            "the transitions it held are lost"
        )
        log.warning(message)
        warnings.warn(message, ShardUnavailableWarning, stacklevel=3)

    def _where(self, shard: int) -> str:
        description = self._shards[shard]
        if description.get("shm"):
            return f"{description['url']} (shared memory {description['shm']})"
        return str(description["url"])

    def _fail(self, shard: int, exc: BaseException) -> None:
        """Mark the shard failed, unless ``exc`` is a rate limiter's TimeoutError: raise that.

        A TimeoutError the shard sent (its rate limit held the call back too long) leaves the
        connection usable and the shard alive. One raised because no reply came within
        ``timeout`` closed the connection: that is what a dead or partitioned host looks like.
        """
        if isinstance(exc, TimeoutError):
            client = self._clients.get(shard)
            if client is not None and not client.closed:
                raise exc
        self._mark_dead(shard, exc)

    def _fan_out(
        self, shards: Sequence[int], call: Callable[[int, Any], Any]
    ) -> tuple[dict[int, Any], bool]:
        """Send one request to each shard, then collect the replies (the requests overlap).

        Returns the replies by shard and whether any shard failed (it is then marked dead).
        Errors the shards raised (not connection failures) propagate.
        """
        pending: dict[int, Any] = {}
        failed = False
        for shard in shards:
            try:
                pending[shard] = call(shard, self._client(shard))
            except _FAILURES as exc:
                self._fail(shard, exc)
                failed = True
        replies: dict[int, Any] = {}
        error: BaseException | None = None
        for shard, request in pending.items():
            try:
                replies[shard] = request.result()
            except _FAILURES as exc:
                self._fail(shard, exc)
                failed = True
            except Exception as exc:  # the shard's own error: raised once all replies are in
                error = error or exc
        if error is not None:
            raise error
        return replies, failed

    def _live_or_raise(self) -> list[int]:
        live = self.live_shards
        if not live:
            raise ConnectionError(
                f"all {len(self._shards)} shards of the replay buffer have failed; their data "
                "is lost"
            )
        return live

    # writing

    def add(self, *values: Any, route_key: Any = None, **named: Any) -> int:
        """Add one transition to the shard the writer policy picks; return its global key.

        ``route_key`` (policy ``"route"``): an episode or environment id; the same id always goes
        to the same shard while the set of live shards is unchanged. A shard that fails is left
        out and the add goes to the next one.
        """
        return self._write("add", route_key, values, named)

    def add_batch(self, *arrays: Any, route_key: Any = None, **named: Any) -> int:
        """Add a batch to one shard (a batch never straddles shards); return the first key.

        The rows get consecutive global keys. ``route_key`` as for :meth:`add`.
        """
        return self._write("add_batch", route_key, arrays, named)

    def _write(
        self, method: str, route_key: Any, values: Sequence[Any], named: Mapping[str, Any]
    ) -> int:
        tried: set[int] = set()
        while True:
            shard = self._writer_shard(route_key, tried)
            try:
                first = getattr(self._client(shard), method)(*values, **named)
            except _FAILURES as exc:
                self._fail(shard, exc)
                tried.add(shard)
                continue
            return global_key(shard, int(first))

    def _writer_shard(self, route_key: Any, tried: set[int]) -> int:
        live = [shard for shard in self._live_or_raise() if shard not in tried]
        if not live:
            raise ConnectionError("every live shard failed this write")
        policy = self.writer_policy
        if policy == "route":
            if route_key is None:
                raise TypeError("writer_policy 'route' needs route_key= (an episode or env id)")
            return live[zlib.crc32(repr(route_key).encode()) % len(live)]
        if policy == "local":
            local = [shard for shard in self._local_shards() if shard in live]
            if local:
                return local[os.getpid() % len(local)]
        if policy == "least_full":
            sizes, _ = self._fan_out(live, _ask_mass)
            if sizes:
                return min(sizes, key=lambda shard: (sizes[shard][0], shard))
            return self._writer_shard(route_key, tried | set(live))
        with self._lock:
            self._next_writer += 1
            return live[self._next_writer % len(live)]

    def _local_shards(self) -> list[int]:
        """Shards on this process's node: the same Ray node id, or outside Ray the same host."""
        if self._local is None:
            node = _current_node()
            self._local = [shard["index"] for shard in self._shards if is_local(shard, node)]
        return self._local

    # sampling

    def sample(
        self, batch_size: int, beta: float | None = None, *, fields: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Draw ``batch_size`` transitions with replacement from all shards, as one buffer would.

        Each shard's share of the batch is drawn multinomially by its mass (its size, or its
        total priority); within a shard the draw is the shard's own (stratified by priority).
        Returns the fields, ``indices`` (global keys) and, for ``"prioritized"``, ``weights``:
        (N P(i))^-beta / max_j (N P(j))^-beta over the whole buffer. Rows come grouped by shard.

        Raises:
            EmptyBufferError: every live shard is empty.
            ConnectionError: every shard has failed.

        """
        try:
            rows = operator.index(batch_size)
        except TypeError:
            raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}") from None
        if rows < 1:
            raise ValueError(f"batch_size must be at least 1, got {rows}")
        if beta is None:
            beta = self.beta
        elif not isinstance(beta, numbers.Real) or not beta >= 0 or not np.isfinite(beta):
            raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
        while True:
            live = self._live_or_raise()
            masses, failed = self._fan_out(live, _ask_mass)
            if failed:
                continue
            shards = sorted(masses)
            totals = np.array([masses[s][2] for s in shards], dtype=np.float64)
            sizes = np.array([masses[s][0] for s in shards], dtype=np.float64)
            if not sizes.sum():
                raise EmptyBufferError("cannot sample from an empty buffer: every shard is empty")
            self._issued.update({s: int(masses[s][1]) for s in shards})
            shares = totals if totals.sum() > 0 else sizes  # all priorities 0: uniform, weights 1
            counts = self._rng.multinomial(rows, shares / shares.sum())
            chosen = {s: int(n) for s, n in zip(shards, counts, strict=True) if n}
            replies, failed = self._fan_out(
                list(chosen),
                lambda shard, client, chosen=chosen: client.sample(
                    chosen[shard], fields=fields, with_priorities=True, wait=False
                ),
            )
            if failed:
                continue
            smallest = min(masses[s][3] for s in shards)
            return self._assemble(replies, beta, smallest)

    def _assemble(
        self, replies: Mapping[int, dict[str, np.ndarray]], beta: float, smallest: float
    ) -> dict[str, np.ndarray]:
        shards = sorted(replies)
        first = replies[shards[0]]
        out = {
            name: np.concatenate([replies[s][name] for s in shards])
            for name in first
            if name not in ("indices", "weights", "priorities")
        }
        out["indices"] = np.concatenate([global_keys(s, replies[s]["indices"]) for s in shards])
        if self.strategy == "prioritized":
            priorities = np.concatenate([replies[s]["priorities"] for s in shards])
            # The smallest priority anywhere: the shards' minima, and the drawn rows' own (a
            # priority updated between the two requests may be smaller than what the shard said).
            smallest = min(smallest, float(priorities.min()))
            if np.isfinite(smallest) and smallest > 0:
                ratio = priorities / smallest  # P(i) / P_min: the total cancels
                out["weights"] = np.power(ratio, -beta).astype(np.float32)
            else:
                out["weights"] = np.ones(len(priorities), np.float32)
        return out

    # priorities

    def update_priorities(
        self, indices: Any, td_errors: Any = None, *, priorities: Any = None
    ) -> int:
        """Set priorities of sampled keys, one message per shard; return how many were applied.

        Checked whole before anything is sent (a bad value changes nothing anywhere). Keys of
        transitions overwritten since, and keys of shards that have failed, are ignored.
        """
        if self.strategy != "prioritized":
            raise ValueError("update_priorities needs a prioritized buffer (strategy 'uniform')")
        if (td_errors is None) == (priorities is None):
            raise TypeError("update_priorities takes td_errors or priorities=, exactly one")
        keys = np.asarray(indices)
        given = "td_errors" if td_errors is not None else "priorities"
        values = np.asarray(td_errors if td_errors is not None else priorities)
        if keys.ndim != 1 or keys.dtype.kind not in "iu":
            raise TypeError(
                f"indices must be a 1-d array of integer keys, got {keys.dtype} {keys.shape}"
            )
        if values.ndim != 1 or values.dtype.kind not in "iuf":
            raise TypeError(f"{given} must be a 1-d array of numbers, got {values.dtype}")
        if len(keys) != len(values):
            raise ValueError(f"got {len(keys)} indices and {len(values)} {given}")
        values = values.astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ValueError(f"{given}[{bad[0]}] is {values[bad[0]]}; values must be finite")
        if given == "priorities" and (values < 0).any():
            first = int(np.flatnonzero(values < 0)[0])
            raise ValueError(f"priorities[{first}] is {values[first]}; priorities must be >= 0")
        if keys.dtype.kind == "i" and (keys < 0).any():
            first = int(np.flatnonzero(keys < 0)[0])
            raise IndexError(f"indices[{first}] is {keys[first]}, not a key (keys are >= 0)")
        shard_of, local = split_keys(keys)
        if shard_of.size and int(shard_of.max()) >= len(self._shards):
            first = int(np.flatnonzero(shard_of >= len(self._shards))[0])
            raise IndexError(
                f"indices[{first}] names shard {shard_of[first]}; this buffer has "
                f"{len(self._shards)}"
            )
        groups = {
            int(s): np.flatnonzero(shard_of == s)
            for s in np.unique(shard_of)
            if int(s) not in self._dead
        }
        self._check_issued(groups, local)
        replies, _ = self._fan_out(
            list(groups),
            lambda shard, client: client.update_priorities(
                local[groups[shard]], **{given: values[groups[shard]]}, wait=False
            ),
        )
        return int(sum(replies.values()))

    def _check_issued(self, groups: Mapping[int, np.ndarray], local: np.ndarray) -> None:
        """Refuse keys a shard never handed out before any shard applies anything.

        Each shard refuses them itself, but only for its own part, after the others have applied
        theirs. The next key each shard will hand out is known from the last sample's masses;
        only a key at or past it (added since) costs a round trip to be sure.
        """
        unsure = [s for s, rows in groups.items() if local[rows].max() >= self._issued.get(s, 0)]
        if unsure:
            masses, _ = self._fan_out(unsure, _ask_mass)
            self._issued.update({s: int(mass[1]) for s, mass in masses.items()})
        for shard, rows in groups.items():
            if shard not in self._issued:
                continue  # failed just now: its keys are ignored
            beyond = rows[local[rows] >= self._issued[shard]]
            if beyond.size:
                first = int(beyond.min())
                raise IndexError(
                    f"indices[{first}] is a key shard {shard} never handed out (its next add "
                    f"gets local key {self._issued[shard]})"
                )

    # size and stats

    def size(self) -> int:
        """Transitions held by the live shards."""
        sizes, _ = self._fan_out(self.live_shards, _ask_mass)
        return int(sum(reply[0] for reply in sizes.values()))

    def __len__(self) -> int:
        """Return :meth:`size`."""
        return self.size()

    def capacity(self) -> int:
        """Return the live shards' capacity together."""
        total = 0
        for shard in self.live_shards:
            try:
                total += self._client(shard).capacity()
            except _FAILURES as exc:
                self._fail(shard, exc)
        return total

    def stats(self) -> dict[str, Any]:
        """Figures of the whole buffer and each live shard's service STATS.

        ``shards``, ``live_shards``, ``dead_shards`` (indices), ``shard_failures`` (shards this
        process saw fail), ``size``, ``capacity``, ``per_shard`` ({index: STATS reply}),
        ``transports`` ({index: ``"shm"`` or ``"socket"``}, as :meth:`transport`). A STATS reply
        counts the shard server's socket traffic only (not this or other processes' shared
        memory calls); its ``size`` is the buffer's.
        """
        per_shard: dict[int, Any] = {}
        for shard in self.live_shards:
            try:
                per_shard[shard] = self._client(shard).stats()
            except _FAILURES as exc:
                self._fail(shard, exc)
        return {
            "shards": len(self._shards),
            "live_shards": sorted(per_shard),
            "dead_shards": sorted(self._dead),
            "shard_failures": self._failures,
            "size": sum(s["size"] for s in per_shard.values()),
            "capacity": sum(s["capacity"] for s in per_shard.values()),
            "per_shard": per_shard,
            "transports": {
                shard: link.transport
                for shard in per_shard
                if (link := self._clients.get(shard)) is not None
            },
        }

    # life

    def close(self) -> None:
        """Close this process's connections (the shards keep running)."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def shutdown(self) -> None:
        """Stop and remove every shard actor (only in the process that created them).

        Also removes the regions killed shards left, where they are visible from this process
        (shards on this host); others stay until ``replay-buffer shm rm`` on their host.
        """
        self.close()
        if not self._actors:
            raise RuntimeError("only the process that created the shards can shut them down")
        import ray

        for index, actor in enumerate(self._actors):
            if index not in self._dead:
                try:
                    ray.get(actor.stop.remote(), timeout=10)
                except Exception as exc:  # a dead actor: nothing to stop
                    log.debug("shard %d did not stop cleanly: %s", index, exc)
            ray.kill(actor)
        self._actors = []
        for shard in self._shards:
            if shard.get("shm"):
                remove_orphaned_region(shard["shm"])

    def __enter__(self) -> ShardedReplayBuffer:
        """Use the buffer in a ``with`` block; leaving it closes this process's connections."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close this process's connections."""
        self.close()

    def __repr__(self) -> str:
        """Show the shards and which have failed."""
        return (
            f"ShardedReplayBuffer({len(self._shards)} shards, strategy={self.strategy!r}, "
            f"writer_policy={self.writer_policy!r}, dead={sorted(self._dead)})"
        )


_FAILURES = (ConnectionError, OSError, EOFError)




def _ask_mass(shard: int, client: SocketLink | SharedMemoryLink) -> Any:
    """Send PRIORITY_MASS: (size, next key, total priority, smallest priority)."""
    return client.priority_mass(wait=False)


def _check_policy(policy: str) -> None:
    if policy not in WRITER_POLICIES:
        raise ValueError(
            f"writer_policy must be one of {', '.join(WRITER_POLICIES)}, got {policy!r}"
        )


def _plain_fields(fields: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Fields as plain lists and dtype names, to travel to the shard actors."""
    out: dict[str, dict[str, Any]] = {}
    for name, spec in fields.items():
        shape = spec.get("shape", ())
        dims = [shape] if isinstance(shape, (int, np.integer)) else shape
        plain: dict[str, Any] = {
            "shape": [int(d) for d in dims],
            "dtype": np.dtype(spec.get("dtype", np.float32)).name,
        }
        if "num_values" in spec:
            plain["num_values"] = int(spec["num_values"])
        out[str(name)] = plain
    return out


def shard_config_of(config: BufferConfig, index: int, num_shards: int) -> BufferConfig:
    """Return shard ``index``'s configuration: its part of the capacity, seed and rate limit.

    Capacity: ``capacity // num_shards``, the first ``capacity % num_shards`` shards one more.
    Seed: ``seed + index`` (mod 2**64), so shards draw independently. Rate limit: the same
    ``samples_per_insert`` and ``error_buffer`` per shard (the ratio holds globally when writes and
    samples spread evenly), ``min_size_to_sample`` divided among the shards (rounded up).
    """
    capacity = config.capacity // num_shards + (index < config.capacity % num_shards)
    min_size = -(-config.min_size_to_sample // num_shards)
    return replace(
        config,
        capacity=capacity,
        seed=(config.seed + index) % 2**64,
        min_size_to_sample=min(min_size, capacity),
    )


def _placements(
    placement: str | Sequence[str], num_shards: int, nodes: list[str]
) -> list[dict[str, Any]]:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if placement == "pack":
        return [{} for _ in range(num_shards)]
    if placement == "spread":
        targets = [nodes[i % len(nodes)] for i in range(num_shards)]
    elif isinstance(placement, str):
        raise ValueError(
            f"placement must be 'spread', 'pack' or a list of node ids, got {placement!r}"
        )
    else:
        targets = list(placement)
        if len(targets) != num_shards:
            raise ValueError(f"placement lists {len(targets)} nodes for {num_shards} shards")
    return [
        {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node, soft=False)}
        for node in targets
    ]


def _shard_class() -> type:
    from replay_buffer.ray.shard import ShardServer

    return ShardServer


def _current_node() -> str | None:
    ray = sys.modules.get("ray")  # a process in a Ray job has imported it; others need not
    if ray is None or not ray.is_initialized():
        return None
    return str(ray.get_runtime_context().get_node_id())

