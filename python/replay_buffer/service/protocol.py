"""The replay service's wire format: frame header, message types, array blocks, error frames.

``docs/protocol.md`` is the specification; this module is the one implementation of it that the
server and both clients share. Everything is little-endian. A frame is a 24-byte header followed
by ``length`` payload bytes; arrays travel as raw C-order bytes behind a small descriptor, never
pickled and never element by element.
"""

from __future__ import annotations

import enum
import json
import math
import struct
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from replay_buffer.errors import CapacityError, EmptyBufferError

MAGIC = b"RB"
VERSION = 1
HEADER = struct.Struct("<2sBBIQQ")  # magic, version, type, flags, request id, payload length
HEADER_SIZE = HEADER.size
RESPONSE_BIT = 0x80
ALIGN = 8

MAX_NDIM = 16
MAX_NAME_BYTES = 255
MAX_HELLO_BYTES = 64 * 1024
MAX_ARRAYS = 66  # 64 fields (the core's limit) plus "indices" and "weights"

BLOCK_HEAD = struct.Struct("<II")  # array count, reserved
ARRAY_HEAD = struct.Struct("<HBBB3x")  # name length, dtype code, ndim, flags
SAMPLE_REQUEST = struct.Struct("<qIIdQ")  # batch size, flags, reserved, beta, field mask
ERROR_HEAD = struct.Struct("<HHI")  # error code, type-name length, message length
U64 = struct.Struct("<Q")
SIZE_REPLY = struct.Struct("<QQ")  # size, next key
MASS_REPLY = struct.Struct("<QQdd")  # size, next key, total priority, smallest positive priority

SCALAR_FLAG = 1  # an ARRAY_HEAD flag: this 0-d array stands for a Python int/float/bool
SAMPLE_HAS_BETA = 1  # a SAMPLE_REQUEST flag: beta is given
SAMPLE_WITH_PRIORITIES = 2  # a SAMPLE_REQUEST flag: the reply adds each row's stored priority
SAMPLE_FLAGS = SAMPLE_HAS_BETA | SAMPLE_WITH_PRIORITIES
#: Optional requests a server offers, listed in its handshake reply under "features"; a client
#: checks for one before using it (older servers of protocol 1 list none, and close a connection
#: that sends a type they do not know).
FEATURES = ("priority_mass", "sample_priorities")


class MsgType(enum.IntEnum):
    """Request message types; a successful reply has the same type with RESPONSE_BIT set."""

    HELLO = 1
    ADD = 2
    ADD_BATCH = 3
    SAMPLE = 4
    UPDATE_PRIORITIES = 5
    INFO = 6
    STATS = 7
    SIZE = 8
    CLEAR = 9
    PRIORITY_MASS = 10
    ERROR = 0xFF


DTYPES: tuple[str, ...] = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
)  # fmt: skip
DTYPE_CODES = {name: code for code, name in enumerate(DTYPES, start=1)}
_NUMPY_DTYPES = {code: np.dtype(name).newbyteorder("<") for name, code in DTYPE_CODES.items()}
# Looked up by dtype object: numpy's dtype.name is a slow Python property.
_CODE_OF = {dtype: code for code, dtype in _NUMPY_DTYPES.items()}
_COPY_BELOW = 4096  # smaller arrays are copied into the message; larger ones are referenced
_LITTLE_ENDIAN_HOST = sys.byteorder == "little"


class ProtocolError(ConnectionError):
    """A peer broke the protocol: a malformed or over-limit frame, or a failed handshake."""


class ServiceError(RuntimeError):
    """The server failed in a way that is not one of the errors a local buffer raises."""


# Codes are part of the protocol: never renumber, only append.
ERROR_TYPES: tuple[type[BaseException], ...] = (
    ValueError, TypeError, KeyError, IndexError, EmptyBufferError, CapacityError, TimeoutError,
    MemoryError, OverflowError, AttributeError, PermissionError, ProtocolError, ServiceError,
)  # fmt: skip
ERROR_CODES = {cls: code for code, cls in enumerate(ERROR_TYPES, start=1)}


@dataclass(frozen=True)
class Limits:
    """What a server accepts; sent to clients in the handshake.

    Attributes:
        max_frame_bytes: Largest payload of any frame, in either direction.
        max_batch: Most rows in one add_batch, sample or update_priorities.
        max_in_flight: Most requests a client may have sent and not yet had answered on one
            connection. A client that keeps to it can never deadlock against the server.

    """

    max_frame_bytes: int = 128 * 2**20
    max_batch: int = 65_536
    max_in_flight: int = 16

    def __post_init__(self) -> None:
        """Reject limits that would make the service unusable or unsafe."""
        for name in ("max_frame_bytes", "max_batch", "max_in_flight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.max_frame_bytes < MAX_HELLO_BYTES:
            raise ValueError(f"max_frame_bytes must be at least {MAX_HELLO_BYTES}")


def pad(n: int) -> int:
    """Round ``n`` up to the protocol's 8-byte alignment."""
    return (n + ALIGN - 1) & ~(ALIGN - 1)


def pack_header(msg_type: int, request_id: int, length: int) -> bytes:
    """Encode a frame header."""
    return HEADER.pack(MAGIC, VERSION, msg_type, 0, request_id, length)


def unpack_header(data: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """Decode and check a frame header: returns ``(type, request_id, length)``.

    Raises:
        ProtocolError: wrong magic, version or flags. Lengths are checked by the caller, who
            knows the limits.

    """
    magic, version, msg_type, flags, request_id, length = HEADER.unpack(data)
    if magic != MAGIC:
        raise ProtocolError(f"bad frame magic {bytes(magic)!r}; expected {MAGIC!r}")
    if version != VERSION:
        raise ProtocolError(f"unsupported protocol version {version}; this side speaks {VERSION}")
    if flags:
        raise ProtocolError(f"header flags must be 0, got {flags:#x}")
    return msg_type, request_id, length


def dtype_code(dtype: np.dtype) -> int:
    """Return the wire code of a NumPy dtype (of either byte order).

    Raises:
        TypeError: the dtype has no wire code (complex, strings, objects, ...).

    """
    code = _CODE_OF.get(dtype) or _CODE_OF.get(dtype.newbyteorder("<"))
    if code is None:
        raise TypeError(f"dtype {dtype} cannot be sent; use one of {', '.join(DTYPES)}")
    return code


def is_wire_dtype(dtype: np.dtype) -> bool:
    """Whether arrays of this dtype can travel (perhaps after swapping bytes)."""
    return dtype in _CODE_OF or dtype.newbyteorder("<") in _CODE_OF


def wire_array(value: np.ndarray) -> np.ndarray:
    """Return ``value`` as a C-contiguous little-endian array, copying only when it is not."""
    order = value.dtype.byteorder
    if order == ">" or (order == "=" and not _LITTLE_ENDIAN_HOST):
        value = value.astype(value.dtype.newbyteorder("<"))
    if not value.flags.c_contiguous:
        value = np.ascontiguousarray(value)
    return value


def encode_arrays(arrays: Iterable[tuple[str, np.ndarray, int]]) -> list[bytes | memoryview]:
    """Encode ``(name, array, flags)`` triples as an array block, ready for a gather write.

    Array data is referenced, not copied: the returned buffers are views of the arrays, which
    must therefore stay unchanged until they are sent.
    """
    parts: list[bytes | memoryview] = [b""]
    pending = b""  # small pieces are joined, so a message is a few buffers, not dozens
    count = 0
    for name, value, flags in arrays:
        value = wire_array(value)
        nbytes = value.nbytes
        length, padded_name = _name(name)
        pending += ARRAY_HEAD.pack(length, dtype_code(value.dtype), value.ndim, flags)
        pending += struct.pack(f"<{value.ndim}Q", *value.shape) + padded_name
        if nbytes < _COPY_BELOW:
            pending += value.tobytes()
        else:
            parts += [pending, memoryview(value).cast("B")]
            pending = b""
        pending += b"\0" * (pad(nbytes) - nbytes)
        count += 1
    parts[0] = BLOCK_HEAD.pack(count, 0)
    if pending:
        parts.append(pending)
    return parts


_NAMES: dict[str, tuple[int, bytes]] = {}


def _name(name: str) -> tuple[int, bytes]:
    """Return a name's UTF-8 length and its zero-padded encoding."""
    known = _NAMES.get(name)
    if known is None:
        encoded = name.encode()
        if not 0 < len(encoded) <= MAX_NAME_BYTES:
            raise ValueError(f"name {name!r} must be 1 to {MAX_NAME_BYTES} UTF-8 bytes")
        known = (len(encoded), encoded + b"\0" * (pad(len(encoded)) - len(encoded)))
        if len(_NAMES) < 1024:  # field names are few; the bound keeps odd callers from growing it
            _NAMES[name] = known
    return known


def decode_arrays(
    payload: memoryview, max_arrays: int = MAX_ARRAYS
) -> list[tuple[str, np.ndarray, int]]:
    """Decode an array block into ``(name, array, flags)`` triples.

    The arrays are views of ``payload`` (no copy). Every count, length and shape is checked
    against the payload's size before any view is made.

    Raises:
        ProtocolError: the block is malformed.

    """
    size = len(payload)
    if size < BLOCK_HEAD.size:
        raise ProtocolError("array block shorter than its 8-byte head")
    count, reserved = BLOCK_HEAD.unpack_from(payload, 0)
    if reserved or count > max_arrays:
        raise ProtocolError(
            f"array block of {count} arrays (at most {max_arrays}), reserved {reserved} (must be 0)"
        )
    offset = BLOCK_HEAD.size
    out = []
    for _ in range(count):
        if offset + ARRAY_HEAD.size > size:
            raise ProtocolError("array block truncated in an array header")
        name_len, code, ndim, flags = ARRAY_HEAD.unpack_from(payload, offset)
        dtype = _NUMPY_DTYPES.get(code)
        if (
            dtype is None
            or ndim > MAX_NDIM
            or not 0 < name_len <= MAX_NAME_BYTES
            or flags & ~SCALAR_FLAG
            or (flags and ndim)
        ):
            raise ProtocolError(
                f"bad array header: dtype code {code}, {ndim} dimensions (at most {MAX_NDIM}), "
                f"name of {name_len} bytes (1 to {MAX_NAME_BYTES}), flags {flags:#x}"
            )
        offset += ARRAY_HEAD.size
        shape_end = offset + 8 * ndim
        name_end = shape_end + ((name_len + 7) & ~7)
        if name_end > size:
            raise ProtocolError("array block truncated in a shape or name")
        shape = _SHAPES[ndim].unpack_from(payload, offset)
        name = _decode_name(bytes(payload[shape_end : shape_end + name_len]))
        elements = math.prod(shape)
        nbytes = elements * dtype.itemsize
        end = name_end + ((nbytes + 7) & ~7)
        if end > size:
            raise ProtocolError(
                f"array {name!r} of shape {shape} needs {nbytes} bytes; the frame is too short"
            )
        value = np.frombuffer(payload, dtype=dtype, count=elements, offset=name_end)
        out.append((name, value.reshape(shape), flags))
        offset = end
    if offset != size:
        raise ProtocolError(f"{size - offset} stray bytes after the last array")
    if len({name for name, _, _ in out}) != count:
        raise ProtocolError("an array name appears twice")
    return out


_SHAPES = [struct.Struct(f"<{ndim}Q") for ndim in range(MAX_NDIM + 1)]
_DECODED: dict[bytes, str] = {}


def _decode_name(raw: bytes) -> str:
    name = _DECODED.get(raw)
    if name is None:
        try:
            name = raw.decode()
        except UnicodeDecodeError:
            raise ProtocolError("array name is not UTF-8") from None
        if len(_DECODED) < 1024:  # field names are few; the bound keeps garbage from growing it
            _DECODED[raw] = name
    return name


def arrays_nbytes(parts: Iterable[bytes | memoryview]) -> int:
    """Total length of encoded buffers."""
    return sum(len(part) if isinstance(part, bytes) else part.nbytes for part in parts)


def encode_json(value: Mapping[str, Any]) -> bytes:
    """Encode a JSON object payload (handshake, info, stats)."""
    # default=str: a config value JSON has no type for travels as its text, not as a failure
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def decode_json(payload: bytes | memoryview) -> dict[str, Any]:
    """Decode a JSON object payload.

    Raises:
        ProtocolError: not UTF-8 JSON, or not an object.

    """
    try:
        value = json.loads(bytes(payload).decode())
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("payload is not valid UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise ProtocolError("JSON payload must be an object")
    return value


def error_type(exc: BaseException) -> type[BaseException]:
    """Return the allow-listed type an error travels as: its nearest listed base class."""
    for cls in type(exc).__mro__:
        if cls in ERROR_CODES:
            return cls
    return ServiceError


def error_message(exc: BaseException) -> str:
    """Return the message to send: ``str(exc)``, without KeyError's extra quotes."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def encode_error(cls: type[BaseException], message: str) -> bytes:
    """Encode an error frame's payload."""
    name = cls.__name__.encode()
    text = message.encode(errors="replace")
    code = ERROR_CODES.get(cls, ERROR_CODES[ServiceError])
    return ERROR_HEAD.pack(code, len(name), len(text)) + name + text


def decode_error(payload: bytes | memoryview) -> BaseException:
    """Turn an error frame's payload back into the exception it describes.

    An unknown code becomes a :class:`ServiceError` naming the remote type.
    """
    if len(payload) < ERROR_HEAD.size:
        return ProtocolError("error frame shorter than its 8-byte head")
    code, name_len, msg_len = ERROR_HEAD.unpack_from(payload, 0)
    if ERROR_HEAD.size + name_len + msg_len != len(payload):
        return ProtocolError("error frame lengths do not add up")
    name = bytes(payload[ERROR_HEAD.size : ERROR_HEAD.size + name_len]).decode(errors="replace")
    message = bytes(payload[ERROR_HEAD.size + name_len :]).decode(errors="replace")
    if 1 <= code <= len(ERROR_TYPES):
        return ERROR_TYPES[code - 1](message)
    return ServiceError(f"{name}: {message}")
