"""The replay buffer: a fixed-capacity ring of transitions with a C++ core."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from replay_buffer import _core
from replay_buffer.config import BufferConfig
from replay_buffer.fields import normalize_fields, transition_fields


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
    ) -> None:
        """Create an empty buffer.

        Args:
            config: Capacity, strategy and seed.
            obs_shape: Shape of one observation (the specification's form).
            action_dim: With ``action_type="discrete"`` the number of actions (actions are int64
                indices in ``[0, action_dim)``, not checked); with ``"continuous"`` the length of
                the float32 action vector.
            fields: Any named fields instead: ``{name: {"shape": ..., "dtype": ...}}``.
            obs_dtype: dtype of ``obs`` and ``next_obs``, e.g. ``np.uint8`` for images.
            action_type: ``"discrete"`` or ``"continuous"``.

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
            config.capacity,
            config.seed,
            config.strategy,
            float(config.alpha),
            float(config.beta),
            float(config.eps),
        )
        self.config = config

    def __repr__(self) -> str:
        """Show the fields and how full the buffer is."""
        fields = ", ".join(
            f"{name}: {spec['dtype']}{list(spec['shape'])}" for name, spec in self.fields.items()
        )
        strategy = self.config.strategy
        return f"ReplayBuffer({self.size()}/{self.capacity()}, strategy={strategy!r}, {fields})"
