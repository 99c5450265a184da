"""How both clients turn ReplayBuffer calls into request payloads, and replies into results.

The rule is to send what the caller gave and let the server's buffer convert and check it, so a
remote call fails with exactly the error a local one would. Only what cannot travel is refused
here, with the local buffer's wording.
"""

from __future__ import annotations

import numbers
import operator
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from replay_buffer._version import __version__
from replay_buffer.service import protocol as p

#: The environment variable a client reads the server's token from when given none.
TOKEN_ENV = "REPLAY_BUFFER_TOKEN"

Parts = list[bytes | memoryview]
_INT64 = (-(2**63), 2**63)
_UINT64 = (0, 2**64)


@dataclass(frozen=True)
class RemoteSchema:
    """What a client learned in the handshake.

    Attributes:
        fields: ``{name: {"shape": tuple, "dtype": numpy.dtype}}``, in field order, as
            ``ReplayBuffer.fields`` gives it.
        capacity: The buffer's capacity.
        strategy: Its sampling strategy.
        limits: The server's limits.
        info: The whole handshake reply.

    """

    fields: dict[str, dict[str, Any]]
    capacity: int
    strategy: str
    limits: p.Limits
    info: dict[str, Any]

    @classmethod
    def from_hello(cls, reply: Mapping[str, Any]) -> RemoteSchema:
        """Parse a handshake reply.

        Raises:
            ProtocolError: a field is missing or malformed.

        """
        try:
            fields = {
                f["name"]: {
                    "shape": tuple(int(d) for d in f["shape"]),
                    "dtype": np.dtype(f["dtype"]),
                    **({"num_values": int(f["num_values"])} if "num_values" in f else {}),
                }
                for f in reply["fields"]
            }
            limits = p.Limits(**reply["limits"])
            return cls(fields, int(reply["capacity"]), str(reply["strategy"]), limits, dict(reply))
        except (KeyError, TypeError, ValueError) as exc:
            raise p.ProtocolError(f"malformed handshake reply: {exc!r}") from None

    @property
    def names(self) -> list[str]:
        """The field names, in order."""
        return list(self.fields)

    def row_bytes(self, names: Sequence[str]) -> int:
        """Bytes of one row of the named fields."""
        total = 0
        for name in names:
            spec = self.fields[name]
            total += int(np.prod(spec["shape"], dtype=np.int64)) * spec["dtype"].itemsize
        return total


class HandshakeView:
    """What both clients know from the handshake: the remote buffer's schema and strategy."""

    _schema: RemoteSchema | None = None

    @property
    def schema(self) -> RemoteSchema:
        """Everything the handshake said: fields, capacity, strategy, limits."""
        assert self._schema is not None
        return self._schema

    @property
    def strategy(self) -> str:
        """The sampling strategy: ``"uniform"``, ``"prioritized"`` or ``"rank"``."""
        return self.schema.strategy

    @property
    def fields(self) -> dict[str, dict[str, Any]]:
        """The schema, ``{name: {"shape": tuple, "dtype": numpy.dtype}}``, as on a local buffer."""
        return {name: dict(spec) for name, spec in self.schema.fields.items()}


def hello(token: str | None) -> bytes:
    """Encode the handshake request; the token defaults to ``$REPLAY_BUFFER_TOKEN``."""
    request: dict[str, Any] = {"client": f"replay_buffer-python/{__version__}"}
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    if token is not None:
        request["token"] = token
    return p.encode_json(request)


def _named(schema: RemoteSchema, values: Sequence[Any], named: Mapping[str, Any]) -> dict[str, Any]:
    """Match positional values to field names, as ``ReplayBuffer.add`` does."""
    names = schema.names
    if len(values) > len(names):
        raise TypeError(
            f"expected at most {len(names)} positional values ({', '.join(names)}), "
            f"got {len(values)}"
        )
    out = dict(zip(names, values, strict=False))
    for name, value in named.items():
        if name in out:
            raise TypeError(f"field {name!r} given twice")
        out[name] = value
    return out


def _expected(schema: RemoteSchema, name: str) -> str:
    spec = schema.fields.get(name)
    return str(spec["dtype"]) if spec else "a supported dtype"


def _array(schema: RemoteSchema, name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if not p.is_wire_dtype(array.dtype):
        raise TypeError(
            f"field {name!r} has dtype {_expected(schema, name)}; "
            f"cannot safely cast {array.dtype} to it"
        )
    return array


def _scalar(schema: RemoteSchema, name: str, value: bool | int | float) -> np.ndarray:
    """Encode a Python number as a 0-d array the server turns back into the same number."""
    if isinstance(value, bool):
        return np.array(value)
    if isinstance(value, float):
        return np.array(value, np.float64)
    for dtype, (low, high) in ((np.int64, _INT64), (np.uint64, _UINT64)):
        if low <= value < high:
            return np.array(value, dtype)
    raise ValueError(f"field {name!r}: value out of range for {_expected(schema, name)}")


def add(schema: RemoteSchema, values: Sequence[Any], named: Mapping[str, Any]) -> Parts:
    """Encode an ADD request: Python numbers are flagged so they convert as in a local add."""
    arrays = []
    for name, value in _named(schema, values, named).items():
        if type(value) in (bool, int, float):
            arrays.append((name, _scalar(schema, name, value), p.SCALAR_FLAG))
        else:
            arrays.append((name, _array(schema, name, value), 0))
    return p.encode_arrays(arrays)


def add_batch(schema: RemoteSchema, arrays: Sequence[Any], named: Mapping[str, Any]) -> Parts:
    """Encode an ADD_BATCH request, refusing what the server's limits would refuse."""
    encoded = []
    for name, value in _named(schema, arrays, named).items():
        array = _array(schema, name, value)
        if array.ndim and array.shape[0] > schema.limits.max_batch:
            raise ValueError(
                f"{name!r} has {array.shape[0]} rows; this server takes at most "
                f"{schema.limits.max_batch} (max_batch)"
            )
        encoded.append((name, array, 0))
    parts = p.encode_arrays(encoded)
    _check_frame(schema, parts, "add_batch")
    return parts


def update_priorities(schema: RemoteSchema, indices: Any, td_errors: Any, priorities: Any) -> Parts:
    """Encode an UPDATE_PRIORITIES request (what is None is left out, as locally)."""
    given = {"indices": indices, "td_errors": td_errors, "priorities": priorities}
    arrays = [(name, np.asarray(v), 0) for name, v in given.items() if v is not None]
    for name, array, _ in arrays:
        if not p.is_wire_dtype(array.dtype):
            raise TypeError(f"{name} must be numeric; cannot safely cast {array.dtype}")
    parts = p.encode_arrays(arrays)
    _check_frame(schema, parts, "update_priorities")
    return parts


def _check_frame(schema: RemoteSchema, parts: Parts, what: str) -> None:
    size = p.arrays_nbytes(parts)
    if size > schema.limits.max_frame_bytes:
        raise ValueError(
            f"{what} would send {size} bytes, over the server's frame limit of "
            f"{schema.limits.max_frame_bytes} (max_frame_bytes); send smaller batches"
        )


def sample(
    schema: RemoteSchema,
    batch_size: Any,
    beta: float | None,
    names: Sequence[str] | None,
    with_priorities: bool = False,
) -> bytes:
    """Encode a SAMPLE request for all fields, or only ``names`` (plus each row's priority)."""
    try:
        rows = operator.index(batch_size)
    except TypeError:
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}") from None
    if not _INT64[0] <= rows < _INT64[1]:
        raise ValueError(f"batch_size {rows} is out of range")
    mask = 0
    for name in names or ():
        if name not in schema.fields:
            raise KeyError(f"no field named {name!r}; fields are {', '.join(schema.names)}")
        mask |= 1 << schema.names.index(name)
    flags = p.SAMPLE_WITH_PRIORITIES if with_priorities else 0
    if with_priorities and "sample_priorities" not in schema.info.get("features", ()):
        raise ValueError("this server does not offer sample priorities (an older version)")
    if beta is None:
        return p.SAMPLE_REQUEST.pack(rows, flags, 0, 0.0, mask)
    if not isinstance(beta, numbers.Real):
        raise TypeError(f"beta must be a float, got {type(beta).__name__}")
    return p.SAMPLE_REQUEST.pack(rows, flags | p.SAMPLE_HAS_BETA, 0, float(beta), mask)


def sample_into_fields(schema: RemoteSchema, out: Mapping[str, Any]) -> tuple[int, list[str]]:
    """Check ``out`` as ``ReplayBuffer.sample_into`` does; return the batch size and fields."""
    if not out:
        raise ValueError("sample_into needs at least one output array")
    rows: int | None = None
    names = []
    extras = {"indices": np.dtype(np.int64)}
    if schema.strategy != "uniform":
        extras["weights"] = np.dtype(np.float32)
    for name, array in out.items():
        if name in schema.fields:
            dtype, shape = schema.fields[name]["dtype"], schema.fields[name]["shape"]
            names.append(name)
        elif name in extras:
            dtype, shape = extras[name], ()
        else:
            raise KeyError(
                f"sample_into: no field named '{name}'; fields are {', '.join(schema.names)}, "
                "and " + ", ".join(f"'{extra}'" for extra in extras)
            )
        if not isinstance(array, np.ndarray):
            raise TypeError(
                f"sample_into: '{name}' must be a numpy.ndarray, got {type(array).__name__}"
            )
        if array.dtype != dtype:
            raise TypeError(f"sample_into: '{name}' must have dtype {dtype}, got {array.dtype}")
        leading = rows if rows is not None else (array.shape[0] if array.ndim else -1)
        if leading < 0 or array.shape != (leading, *shape):
            expected = str((rows, *shape)) if rows is not None else _batched(shape)
            raise ValueError(f"sample_into: '{name}' must have shape {expected}, got {array.shape}")
        if not array.flags.c_contiguous:
            raise ValueError(f"sample_into: '{name}' must be C-contiguous")
        if not array.flags.writeable:
            raise ValueError(f"sample_into: '{name}' is read-only")
        rows = leading
    assert rows is not None
    if rows == 0:
        raise ValueError("sample_into: output arrays have 0 rows")
    return rows, names


def _batched(shape: tuple[int, ...]) -> str:
    return "(batch" + "".join(f", {d}" for d in shape) + (",)" if not shape else ")")


def check_reply_length(schema: RemoteSchema | None, length: int) -> None:
    """Refuse a reply longer than the server's own frame limit, before allocating for it."""
    limit = schema.limits.max_frame_bytes if schema else p.MAX_HELLO_BYTES
    if length > limit:
        raise p.ProtocolError(f"reply of {length} bytes is over the frame limit {limit}")


def decode_reply(msg_type: int, payload: memoryview) -> Any:
    """Turn a successful reply's payload into what the local method returns."""
    if msg_type in (p.MsgType.ADD, p.MsgType.ADD_BATCH, p.MsgType.UPDATE_PRIORITIES):
        return _unpack(p.U64, payload)[0]
    if msg_type == p.MsgType.SAMPLE:
        return {name: value for name, value, _ in p.decode_arrays(payload)}
    if msg_type == p.MsgType.SIZE:
        return _unpack(p.SIZE_REPLY, payload)
    if msg_type == p.MsgType.PRIORITY_MASS:
        return _unpack(p.MASS_REPLY, payload)
    if msg_type in (p.MsgType.HELLO, p.MsgType.INFO, p.MsgType.STATS):
        return p.decode_json(payload)
    if len(payload):
        raise p.ProtocolError(f"{p.MsgType(msg_type).name} reply must be empty")
    return None


def _unpack(layout: Any, payload: memoryview) -> tuple[Any, ...]:
    if len(payload) != layout.size:
        raise p.ProtocolError(f"reply of {len(payload)} bytes; expected {layout.size}")
    return layout.unpack(payload)
