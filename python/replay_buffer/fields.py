"""Field specifications: the named arrays a transition is made of."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

SUPPORTED_DTYPES = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
)  # fmt: skip

FieldSpec = tuple[str, str, tuple[int, ...], int]


def _shape(name: str, shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(int(d) for d in shape)
    except TypeError:
        raise TypeError(f"field {name!r}: shape must be a tuple of ints, got {shape!r}") from None
    if any(d < 1 for d in dims):
        raise ValueError(f"field {name!r}: every dimension must be at least 1, got {dims}")
    return dims


def _dtype(name: str, dtype: Any) -> str:
    try:
        resolved = np.dtype(dtype).name
    except TypeError:
        raise TypeError(f"field {name!r}: {dtype!r} is not a NumPy dtype") from None
    if resolved not in SUPPORTED_DTYPES:
        raise TypeError(
            f"field {name!r}: dtype {resolved} is not supported; use one of "
            + ", ".join(SUPPORTED_DTYPES)
        )
    return resolved


def _num_values(name: str, value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"field {name!r}: num_values must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"field {name!r}: num_values must be at least 1, got {value}")
    return int(value)


def normalize_fields(fields: Mapping[str, Mapping[str, Any]]) -> list[FieldSpec]:
    """Turn ``{"obs": {"shape": (4,), "dtype": np.float32}, ...}`` into checked field specs.

    ``shape`` defaults to ``()`` (a scalar) and may be an int; ``dtype`` defaults to float32 and
    may be anything ``numpy.dtype`` accepts. ``num_values`` (integer fields only) makes every add
    check that values lie in ``[0, num_values)``, as for discrete actions.
    """
    if not isinstance(fields, Mapping) or not fields:
        raise ValueError(
            "fields must be a non-empty mapping of name -> {'shape': ..., 'dtype': ...}"
        )
    specs = []
    for name, spec in fields.items():
        if not isinstance(name, str):
            raise TypeError(f"field names must be str, got {name!r}")
        if not isinstance(spec, Mapping):
            raise TypeError(
                f"field {name!r}: expected a dict with 'shape' and 'dtype', got {spec!r}"
            )
        unknown = set(spec) - {"shape", "dtype", "num_values"}
        if unknown:
            raise ValueError(
                f"field {name!r}: unknown keys {sorted(unknown)}; use 'shape', 'dtype', "
                "'num_values'"
            )
        specs.append(
            (
                name,
                _dtype(name, spec.get("dtype", np.float32)),
                _shape(name, spec.get("shape", ())),
                _num_values(name, spec.get("num_values")),
            )
        )
    return specs


def transition_fields(
    obs_shape: Any, action_dim: int, obs_dtype: Any, action_type: str
) -> dict[str, dict[str, Any]]:
    """Describe the specification's transition: obs, action, reward, next_obs, done.

    ``action_type="discrete"``: ``action`` is an int64 scalar, the index of one of ``action_dim``
    actions. ``"continuous"``: ``action`` is a float32 vector of length ``action_dim``.
    """
    if isinstance(action_dim, bool) or not isinstance(action_dim, (int, np.integer)):
        raise TypeError(f"action_dim must be an int, got {action_dim!r}")
    if action_dim < 1:
        raise ValueError(f"action_dim must be at least 1, got {action_dim}")
    if action_type == "discrete":
        action: dict[str, Any] = {"shape": (), "dtype": np.int64, "num_values": int(action_dim)}
    elif action_type == "continuous":
        action = {"shape": (int(action_dim),), "dtype": np.float32}
    else:
        raise ValueError(f"action_type must be 'discrete' or 'continuous', got {action_type!r}")
    obs = {"shape": obs_shape, "dtype": obs_dtype}
    return {
        "obs": obs,
        "action": action,
        "reward": {"shape": (), "dtype": np.float32},
        "next_obs": obs,
        "done": {"shape": (), "dtype": np.bool_},
    }
