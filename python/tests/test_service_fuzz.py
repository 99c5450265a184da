"""Random and mutated frames thrown at a running server: it answers in frames or hangs up, and
what the buffer already held is never changed."""

import itertools
import socket
import struct

import numpy as np
import pytest
from service_support import ThreadedServer, frame, hello_frame, raw_connect, read_frame

from replay_buffer import BufferConfig, ReplayBuffer
from replay_buffer.service import connect
from replay_buffer.service import protocol as p

from conftest import assert_rows_consistent, counter_transition

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

KNOWN_ROWS = 100
CAPACITY = 1 << 17  # inserts by the tests below never wrap round onto the known rows


@pytest.fixture(scope="module")
def served():
    buffer = ReplayBuffer(BufferConfig(capacity=CAPACITY, seed=0), obs_shape=(4,), action_dim=2)
    for i in range(KNOWN_ROWS):
        buffer.add(**counter_transition(i))
    known = {name: column[:KNOWN_ROWS].copy() for name, column in buffer.columns().items()}
    server = ThreadedServer(buffer, limits=p.Limits(max_batch=1024, max_in_flight=4))
    yield server, buffer
    server.stop()
    for name, column in buffer.columns().items():
        np.testing.assert_array_equal(column[:KNOWN_ROWS], known[name])


def valid_frames():
    rows = [counter_transition(i) for i in range(3)]
    batch = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    add_batch = b"".join(bytes(x) for x in p.encode_arrays((k, v, 0) for k, v in batch.items()))
    add = b"".join(
        bytes(x) for x in p.encode_arrays((k, np.asarray(v), 0) for k, v in rows[0].items())
    )
    update = b"".join(
        bytes(x)
        for x in p.encode_arrays([("indices", np.arange(2), 0), ("td_errors", np.ones(2), 0)])
    )
    return [
        frame(p.MsgType.ADD_BATCH, add_batch),
        frame(p.MsgType.ADD, add),
        frame(p.MsgType.SAMPLE, p.SAMPLE_REQUEST.pack(8, 0, 0, 0.0, 0)),
        frame(p.MsgType.UPDATE_PRIORITIES, update),
        frame(p.MsgType.SIZE),
        frame(p.MsgType.INFO),
        frame(p.MsgType.STATS),
    ]


VALID = valid_frames()


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "field"]))
        if kind == "flip" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif kind == "insert":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(max_size=16))
        elif len(data) >= p.HEADER_SIZE:  # a header field set to a plausible number
            offset, fmt = draw(st.sampled_from([(3, "<B"), (8, "<Q"), (16, "<Q")]))
            value = draw(st.sampled_from([0, 1, 7, 8, 24, 2**31, 2**63, 2**64 - 1, len(data)]))
            struct.pack_into(fmt, data, offset, value % (256 if fmt == "<B" else 2**64))
    return bytes(data)


def has_clear(data):
    """A well-formed CLEAR empties the buffer legitimately; such a draw is not a fault."""
    return p.pack_header(p.MsgType.CLEAR, 0, 0)[:4] in data


REPLIES: dict[int, int] = {}  # frames the fuzzed connections got back, by type


def exchange(path, data, handshake):
    sock = raw_connect(path, timeout=2)
    try:
        if handshake:
            sock.sendall(hello_frame())
            assert read_frame(sock)[0] == p.MsgType.HELLO | p.RESPONSE_BIT
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return  # the server already hung up on an earlier part
        for _ in range(64):  # every byte that comes back is a whole, well-formed frame
            reply = read_frame(sock)
            if reply is None:
                return
            msg_type = reply[0]
            REPLIES[msg_type] = REPLIES.get(msg_type, 0) + 1
            assert msg_type == p.MsgType.ERROR or msg_type & p.RESPONSE_BIT
            if msg_type == p.MsgType.ERROR:
                assert isinstance(p.decode_error(reply[2]), Exception)
    except TimeoutError:
        pytest.fail("the server neither answered nor hung up")
    finally:
        sock.close()


settings = hypothesis.settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)


@settings
@hypothesis.given(data=st.binary(max_size=300), handshake=st.booleans())
def test_random_bytes(served, data, handshake):
    hypothesis.assume(not has_clear(data))
    exchange(served[0].path, data, handshake)


@settings
@hypothesis.given(frames=st.lists(mutated(), min_size=1, max_size=3))
def test_mutated_frames(served, frames):
    data = b"".join(frames)
    hypothesis.assume(not has_clear(data))
    exchange(served[0].path, data, handshake=True)


def big_frames():
    """Valid requests of every size class: small, staged, and received straight into place."""
    out = []
    for request_id, rows in enumerate((1, 50, 800), start=1):  # 800 rows: 36 KB
        items = [counter_transition(i) for i in range(rows)]
        batch = {k: np.array([r[k] for r in items]) for k in items[0]}
        payload = b"".join(bytes(x) for x in p.encode_arrays((k, v, 0) for k, v in batch.items()))
        out.append(frame(p.MsgType.ADD_BATCH, payload, request_id))
    out.append(frame(p.MsgType.SAMPLE, p.SAMPLE_REQUEST.pack(64, 0, 0, 0.0, 0), 4))
    return b"".join(out)


BIG = big_frames()


@hypothesis.settings(settings, max_examples=100)
@hypothesis.given(cuts=st.lists(st.integers(1, len(BIG) - 1), max_size=12, unique=True))
def test_frames_split_anywhere_are_read_whole(served, cuts):
    sock = raw_connect(served[0].path, timeout=5)
    try:
        sock.sendall(hello_frame())
        read_frame(sock)
        edges = [0, *sorted(cuts), len(BIG)]
        for start, end in itertools.pairwise(edges):
            sock.sendall(BIG[start:end])
        replies = [read_frame(sock)[:2] for _ in range(4)]
    finally:
        sock.close()
    assert replies == [
        (p.MsgType.ADD_BATCH | p.RESPONSE_BIT, 1),
        (p.MsgType.ADD_BATCH | p.RESPONSE_BIT, 2),
        (p.MsgType.ADD_BATCH | p.RESPONSE_BIT, 3),
        (p.MsgType.SAMPLE | p.RESPONSE_BIT, 4),
    ]


def test_server_still_answers_and_rows_are_intact(served):
    server, buffer = served
    with connect(server.unix_url, timeout=10) as client:
        assert client.size() >= KNOWN_ROWS
        batch = client.sample(256)
    assert REPLIES.get(p.MsgType.ERROR, 0) > 50  # the fuzz reached the server's checks
    assert sum(REPLIES.values()) > REPLIES[p.MsgType.ERROR]  # and some frames were valid
    known = batch["indices"] < KNOWN_ROWS
    assert_rows_consistent({k: v[known] for k, v in batch.items()})
