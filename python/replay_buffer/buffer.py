"""The replay buffer: a fixed-capacity ring of transitions with a C++ core."""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

import numpy as np

from replay_buffer import _core
from replay_buffer.config import BufferConfig
from replay_buffer.fields import normalize_fields, transition_fields
from replay_buffer.prefetch import Prefetcher


class ReplayBuffer(_core.Buffer):
    """A fixed-capacity ring of transitions, sampled uniformly or by priority; thread-safe.

    Build it from the specification's arguments::

        buffer = ReplayBuffer(BufferConfig(capacity=100_000), obs_shape=(4,), action_dim=2)

    which stores ``obs``, ``action``, ``reward`` (float32), ``next_obs`` and ``done`` (bool), or
    from any named fields::

        buffer = ReplayBuffer(config, fields={"obs": {"shape": (84, 84, 4), "dtype": np.uint8},
                                              "action": {"dtype": np.int64}})

    Methods (implemented in C++; every copy runs with the GIL released):

    - ``add(*values, **named) -> int``: one transition, positionally in field order or by name;
      returns its key.
    - ``add_batch(*arrays, **named) -> int``: arrays with a leading batch axis; returns the
      first key.
    - ``sample(batch_size, beta=None) -> dict``: arrays per field, plus ``indices`` (int64 keys)
      and, for prioritized strategies, ``weights`` (float32 importance weights).
    - ``sample_into(out, beta=None) -> dict``: fills the caller's arrays (any subset of the
      fields, plus optionally ``indices`` and ``weights``) without allocating; returns ``out``.
    - ``update_priorities(indices, td_errors) -> int``: new priorities (|td| + eps) ** alpha for
      sampled keys (or ``priorities=`` p for (p + eps) ** alpha); keys of transitions overwritten
      since they were sampled are ignored; returns how many were applied.
    - ``beta``: the importance-weight exponent, settable (annealing); ``strategy``.
    - ``size()``, ``len(buffer)``, ``capacity()``, ``is_full()``, ``clear()``, ``next_key()``.
    - ``columns() -> dict``: read-only zero-copy views of the stored rows, in slot order.
    - ``fields``: ``{name: {"shape": tuple, "dtype": numpy.dtype}}``.
    - ``priorities(indices) -> ndarray``: the stored priority of each key (NaN once overwritten).
    - ``priority_mass() -> (total, min_positive)``: the sum of the stored priorities and the
      smallest positive one, read together (``"prioritized"`` only; for sharded sampling).
    - ``check_consistency() -> dict``: checks every invariant (see docs/shared_memory.md).

    Shared between processes (see docs/shared_memory.md)::

        buffer = ReplayBuffer(config, obs_shape=(4,), action_dim=2, shm_name="learner0")
        # in any other process on the host:
        same = ReplayBuffer.attach("learner0")

    The creator removes the name on ``close()``, on leaving a ``with`` block, when garbage
    collected, or at interpreter exit, unless ``shm_keep=True``. A shared buffer pickles as its
    name: passed to a ``multiprocessing`` child (any start method), it attaches there.
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
        shm_name: str | None = None,
        shm_keep: bool = False,
        shm_mode: int = 0o600,
    ) -> None:
        """Create an empty buffer, in this process's memory or in named shared memory.

        Args:
            config: Capacity, strategy and seed.
            obs_shape: Shape of one observation (the specification's form).
            action_dim: With ``action_type="discrete"`` the number of actions (actions are int64
                indices in ``[0, action_dim)``, checked on every add); with ``"continuous"`` the
                length of the float32 action vector.
            fields: Any named fields instead: ``{name: {"shape": ..., "dtype": ...}}``.
            obs_dtype: dtype of ``obs`` and ``next_obs``, e.g. ``np.uint8`` for images.
            action_type: ``"discrete"`` or ``"continuous"``.
            shm_name: Create the buffer in the POSIX shared-memory region of this name (letters,
                digits, ``_``, ``-``, ``.``; ``/dev/shm/<name>`` on Linux), which other processes
                open with :meth:`attach`. ``FileExistsError`` if the name is taken.
            shm_keep: Leave the region in place when this buffer is closed; remove it later with
                ``replay-buffer shm rm NAME``. By default the creator removes the name when it
                closes; processes still attached keep working.
            shm_mode: Permissions of the region: ``0o600`` (owner only) by default; ``0o660``
                lets the owner's group attach too.

        """
        if not isinstance(config, BufferConfig):
            raise TypeError(f"config must be a BufferConfig, got {type(config).__name__}")
        if fields is not None:
            if obs_shape is not None or action_dim is not None:
                raise TypeError("give either fields= or obs_shape/action_dim, not both")
        elif obs_shape is None or action_dim is None:
            raise TypeError("give obs_shape and action_dim, or fields=")
        else:
            fields = transition_fields(obs_shape, action_dim, obs_dtype, action_type)
        super().__init__(
            normalize_fields(fields),
            config.core_options(),
            shm_name,
            _check_mode(shm_mode),
            bool(shm_keep),
        )
        self.config = config
        if self.shm_name is not None and not shm_keep:
            _created.add(self)

    @classmethod
    def attach(
        cls, name: str, *, timeout: float = 2.0, allow_other_owner: bool = False
    ) -> ReplayBuffer:
        """Open the shared buffer ``name`` that another process (or this one) created.

        Fields, capacity, strategy, alpha, eps, seed and the current beta come from the region;
        ``config`` is rebuilt from them. Closing an attached buffer only unmaps it here.

        Args:
            name: The ``shm_name`` it was created with.
            timeout: Seconds to wait for a creator that is still initialising it.
            allow_other_owner: Attach even if another user owns the region. Off by default:
                whoever owns it can read and inject transitions, so only opt in for a user you
                trust (e.g. a group-shared ``shm_mode=0o660`` buffer).

        Raises:
            FileNotFoundError: No shared buffer of that name.
            PermissionError: Its mode does not let this process read and write it, or another
                user owns it and ``allow_other_owner`` is false.
            replay_buffer.InvalidRegionError: Not a replay buffer, made by an incompatible
                version, truncated, corrupt, or still not initialised after ``timeout``.

        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if not isinstance(allow_other_owner, bool):
            raise TypeError(
                f"allow_other_owner must be a bool, got {type(allow_other_owner).__name__}"
            )
        buffer = cls.__new__(cls)
        _core.Buffer.__init__(
            buffer, attach=name, timeout=float(timeout), allow_other_owner=allow_other_owner
        )
        buffer.config = BufferConfig.from_core_options(buffer.options)
        return buffer

    def __enter__(self) -> ReplayBuffer:
        """Use the buffer in a ``with`` block, which closes it at the end."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the buffer (the creator of a shared one removes its name, unless kept)."""
        self.close()

    def prefetch(
        self, batch_size: int, depth: int = 2, *, beta: float | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """Iterate over ``sample(batch_size)`` batches, ``depth`` of them drawn ahead in a thread.

        See :func:`replay_buffer.prefetch.prefetch`; close it (or leave its ``with`` block) to stop.
        """
        return Prefetcher(self, batch_size, depth, beta)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickle a shared buffer as its name, so that unpickling attaches to it."""
        name = self.shm_name
        if name is None:
            raise TypeError(
                "a private ReplayBuffer cannot be pickled; create it with shm_name=... to share "
                "it with other processes"
            )
        if self.closed:
            raise ValueError("buffer is closed")
        return (_attach, (name,))

    def __repr__(self) -> str:
        """Show the fields and how full the buffer is."""
        if self.closed:
            return f"ReplayBuffer(closed, shm_name={self.shm_name!r})"
        fields = ", ".join(
            f"{name}: {spec['dtype']}{list(spec['shape'])}" for name, spec in self.fields.items()
        )
        strategy = self.config.strategy
        shared = "" if self.shm_name is None else f", shm_name={self.shm_name!r}"
        return (
            f"ReplayBuffer({self.size()}/{self.capacity()}, strategy={strategy!r}{shared}, "
            f"{fields})"
        )


def _attach(name: str) -> ReplayBuffer:
    """Unpickle a shared buffer: attach to it by name."""
    return ReplayBuffer.attach(name)


def _check_mode(mode: int) -> int:
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise TypeError(f"shm_mode must be an int such as 0o600, got {type(mode).__name__}")
    if not 0 <= mode <= 0o777:
        raise ValueError(f"shm_mode must be permission bits in [0, 0o777], got {oct(mode)}")
    return mode


# Shared buffers this process created and must not leave behind: closed at interpreter exit, as
# garbage collection at exit is not guaranteed to reach them.
_created: weakref.WeakSet[ReplayBuffer] = weakref.WeakSet()


@atexit.register
def _close_created() -> None:
    for buffer in list(_created):
        buffer.close()
