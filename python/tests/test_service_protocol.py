"""The wire format on its own: headers, array blocks, errors, addresses, limits."""

import struct

import numpy as np
import pytest

from replay_buffer import CapacityError, EmptyBufferError
from replay_buffer.service import codec
from replay_buffer.service import protocol as p
from replay_buffer.service.address import Address, parse_address


def joined(parts):
    return memoryview(bytearray(b"".join(bytes(part) for part in parts)))


def roundtrip(arrays):
    return p.decode_arrays(joined(p.encode_arrays(arrays)))


def test_header_layout_is_fixed():
    header = p.pack_header(p.MsgType.SAMPLE, 0x0102030405060708, 24)
    assert len(header) == p.HEADER_SIZE == 24
    assert header == b"RB\x01\x04\0\0\0\0" + struct.pack("<QQ", 0x0102030405060708, 24)
    assert p.unpack_header(header) == (p.MsgType.SAMPLE, 0x0102030405060708, 24)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"XB\x01\x01" + bytes(20), "bad frame magic"),
        (b"RB\x02\x01" + bytes(20), "unsupported protocol version 2"),
        (b"RB\x01\x01\x01\0\0\0" + bytes(16), "header flags must be 0"),
    ],
)
def test_bad_headers(header, message):
    with pytest.raises(p.ProtocolError, match=message):
        p.unpack_header(header)


@pytest.mark.parametrize("dtype", p.DTYPES)
@pytest.mark.parametrize("shape", [(), (1,), (3, 5), (2, 3, 1, 7)])
def test_arrays_roundtrip_every_dtype_and_shape(dtype, shape):
    value = (np.arange(int(np.prod(shape))) % 2).astype(dtype).reshape(shape)
    [(name, out, flags)] = roundtrip([("obs", value, 0)])
    assert (name, flags, out.dtype, out.shape) == ("obs", 0, value.dtype, shape)
    np.testing.assert_array_equal(out, value)
    assert out.flags.writeable and out.ctypes.data % 8 == 0  # aligned views, no copy


def test_block_layout_is_8_byte_aligned():
    parts = p.encode_arrays([("ab", np.array([1, 2, 3], np.uint8), 0)])
    data = b"".join(bytes(x) for x in parts)
    assert data == (
        struct.pack("<II", 1, 0)
        + struct.pack("<HBBB3x", 2, p.DTYPE_CODES["uint8"], 1, 0)
        + struct.pack("<Q", 3)
        + b"ab\0\0\0\0\0\0"
        + b"\x01\x02\x03\0\0\0\0\0"
    )


def test_large_arrays_are_referenced_not_copied():
    big = np.arange(10_000, dtype=np.float64)
    parts = p.encode_arrays([("x", big, 0), ("y", np.zeros(2), 0)])
    views = [x for x in parts if isinstance(x, memoryview)]
    assert len(views) == 1 and np.shares_memory(np.asarray(views[0]), big)
    assert p.arrays_nbytes(parts) == len(joined(parts))


def test_non_contiguous_and_big_endian_inputs_are_normalized():
    value = np.arange(24, dtype=">i4").reshape(4, 6)[:, ::2]
    [(_, out, _)] = roundtrip([("v", value, 0)])
    assert out.dtype == np.dtype("<i4")
    np.testing.assert_array_equal(out, value)


def test_scalar_flag_roundtrips():
    [(_, out, flags)] = roundtrip([("r", np.array(0.5), p.SCALAR_FLAG)])
    assert flags == p.SCALAR_FLAG and out.item() == 0.5


def test_unsendable_dtypes():
    for value in (np.zeros(2, np.complex64), np.array(["a"]), np.array([None])):
        with pytest.raises(TypeError, match="cannot be sent"):
            p.encode_arrays([("x", value, 0)])


def block(*records, count=None):
    return memoryview(
        struct.pack("<II", len(records) if count is None else count, 0) + b"".join(records)
    )


def record(name=b"x", code=5, shape=(2,), flags=0, data=None):
    head = struct.pack("<HBBB3x", len(name), code, len(shape), flags)
    head += struct.pack(f"<{len(shape)}Q", *shape) + name + b"\0" * (-len(name) % 8)
    if data is None:
        data = bytes(8 * int(np.prod(shape)))
    return head + data + b"\0" * (-len(data) % 8)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (memoryview(b"\1\0\0"), "shorter than its 8-byte head"),
        (block(count=1000), "array block of 1000 arrays"),
        (block(count=1), "truncated in an array header"),
        (block(record(code=99)), "dtype code 99"),
        (block(record(shape=(1,) * 17)), "17 dimensions"),
        (block(record(name=b"")), "name of 0 bytes"),
        (block(record(flags=2)), "flags 0x2"),
        (block(record(flags=1, shape=(2,))), "flags 0x1"),
        (block(record()[:12]), "truncated in a shape or name"),
        (block(record(name=b"\xff\xfe")), "not UTF-8"),
        (block(record(shape=(2**40, 2**30), data=b"")), "the frame is too short"),
        (block(record(shape=(2**64 - 1,), data=b"")), "the frame is too short"),
        (memoryview(bytes(block(record())) + b"\0" * 8), "8 stray bytes"),
        (block(record(), record()), "appears twice"),
    ],
)
def test_malformed_blocks_are_refused_before_any_allocation(payload, message):
    with pytest.raises(p.ProtocolError, match=message):
        p.decode_arrays(payload)


ERRORS = [
    ValueError("field 'obs': expected shape (4,), got (3,)"),
    TypeError("field 'action' has dtype int64; got a float"),
    KeyError("sample_into: no field named 'x'"),
    IndexError("index 5"),
    EmptyBufferError("cannot sample from an empty buffer"),
    CapacityError("too big"),
    TimeoutError("rate limiter: no sample within 1.0 s"),
    MemoryError("out"),
    OverflowError("big"),
    AttributeError("no attribute 'update_priorities'"),
    PermissionError("token"),
    p.ProtocolError("bad"),
    p.ServiceError("odd"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_errors_travel_with_their_type_and_message(error):
    payload = p.encode_error(p.error_type(error), p.error_message(error))
    back = p.decode_error(payload)
    assert type(back) is type(error) and str(back) == str(error)


def test_unlisted_errors_travel_as_their_nearest_listed_base():
    class Special(KeyError):
        pass

    assert p.error_type(Special("x")) is KeyError
    assert p.error_type(ZeroDivisionError("x")) is p.ServiceError
    unknown = struct.pack("<HHI", 999, 3, 2) + b"Foohi"
    assert str(p.decode_error(unknown)) == "Foo: hi"
    assert isinstance(p.decode_error(b"\0"), p.ProtocolError)


def test_json_payloads():
    assert p.decode_json(p.encode_json({"a": [1]})) == {"a": [1]}
    for bad in (b"\xff", b"[1]", b"{"):
        with pytest.raises(p.ProtocolError):
            p.decode_json(bad)


def test_sample_request_layout():
    schema = codec.RemoteSchema.from_hello(
        {
            "fields": [
                {"name": "a", "dtype": "uint8", "shape": []},
                {"name": "b", "dtype": "float32", "shape": [2]},
            ],
            "capacity": 10,
            "strategy": "uniform",
            "limits": {"max_frame_bytes": 2**20, "max_batch": 100, "max_in_flight": 4},
        }
    )
    assert codec.sample(schema, 32, None, ["b"]) == struct.pack("<qIIdQ", 32, 0, 0, 0.0, 0b10)
    assert codec.sample(schema, 8, 0.4, None) == struct.pack("<qIIdQ", 8, 1, 0, 0.4, 0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        codec.sample(schema, 2.0, None, None)
    with pytest.raises(KeyError, match="no field named 'zz'"):
        codec.sample(schema, 2, None, ["zz"])
    with pytest.raises(p.ProtocolError, match="malformed handshake"):
        codec.RemoteSchema.from_hello({"fields": []})


def test_limits_are_checked():
    assert p.Limits().max_in_flight == 16
    for bad in ({"max_batch": 0}, {"max_in_flight": True}, {"max_frame_bytes": 1000}):
        with pytest.raises(ValueError):
            p.Limits(**bad)


@pytest.mark.parametrize(
    ("url", "address", "loopback"),
    [
        ("unix:///tmp/rb.sock", Address("unix", path="/tmp/rb.sock"), True),
        ("unix://rel.sock", Address("unix", path="rel.sock"), True),
        ("tcp://127.0.0.1:7777", Address("tcp", host="127.0.0.1", port=7777), True),
        ("tcp://localhost:0", Address("tcp", host="localhost", port=0), True),
        ("tcp://[::1]:80", Address("tcp", host="::1", port=80), True),
        ("tcp://0.0.0.0:7777", Address("tcp", host="0.0.0.0", port=7777), False),
        ("tcp://example.com:7777", Address("tcp", host="example.com", port=7777), False),
    ],
)
def test_addresses(url, address, loopback):
    assert parse_address(url) == address
    assert address.is_loopback() is loopback
    assert str(address) == url


@pytest.mark.parametrize(
    "url", ["http://x:1", "tcp://host", "tcp://host:99999", "unix://", "tcp://h:1/path", "x"]
)
def test_bad_addresses(url):
    with pytest.raises(ValueError):
        parse_address(url)
