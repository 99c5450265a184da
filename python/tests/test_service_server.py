"""A real `replay-buffer serve` process driven by the sync and asyncio clients."""

import asyncio
import itertools
import os
import signal
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from service_support import (
    ServerProcess,
    ThreadedServer,
    frame,
    hello_frame,
    raw_connect,
    read_frame,
)

from replay_buffer import BufferConfig, EmptyBufferError, ReplayBuffer, aio
from replay_buffer.service import connect
from replay_buffer.service import protocol as p
from replay_buffer.service.config import from_dict, tomllib
from replay_buffer.service.server import ReplayServer
from replay_buffer.tools.serve import build_parser, config_from_args, main

from conftest import assert_rows_consistent, cartpole, counter_transition

needs_toml = pytest.mark.skipif(tomllib is None, reason="TOML needs Python 3.11+ or tomli")


@pytest.fixture(scope="module")
def server():
    process = ServerProcess()
    yield process
    assert process.stop() == 0


@pytest.fixture(params=["unix", "tcp"])
def client(server, request):
    with connect(getattr(server, f"{request.param}_url"), timeout=20) as c:
        c.clear()
        yield c


def batch_of(start, rows):
    items = [counter_transition(i) for i in range(start, start + rows)]
    return {name: np.array([item[name] for item in items]) for name in items[0]}


def test_handshake_describes_the_buffer(client):
    local = cartpole()
    assert client.fields == local.fields
    assert client.capacity() == 1000
    assert client.schema.strategy == "uniform"
    assert repr(client).endswith("(open)>")


def test_every_operation(client):
    assert client.size() == 0 and len(client) == 0 and not client.is_full()
    with pytest.raises(EmptyBufferError, match="cannot sample from an empty buffer"):
        client.sample(4)
    first = client.next_key()
    assert client.add(**counter_transition(0)) == first
    row = counter_transition(1)
    assert client.add(*row.values()) == first + 1  # positional, Python scalars
    assert client.add_batch(**batch_of(2, 30)) == first + 2
    assert client.add_batch(*batch_of(32, 8).values()) == first + 32
    assert client.size() == 40 and client.next_key() == first + 40
    batch = client.sample(64)
    assert set(batch) == {*client.fields, "indices"}
    assert batch["obs"].shape == (64, 4) and batch["obs"].dtype == np.float32
    assert batch["indices"].dtype == np.int64 and batch["obs"].flags.writeable
    assert_rows_consistent(batch)
    assert set(client.sample(8, fields=["obs", "reward"])) == {"obs", "reward", "indices"}
    out = {"reward": np.zeros(16, np.float32), "indices": np.zeros(16, np.int64)}
    assert client.sample_into(out) is out
    np.testing.assert_array_equal(out["indices"] - first, out["reward"])
    info = client.info()
    assert (info["size"], info["capacity"], info["protocol"]) == (40, 1000, p.VERSION)
    stats = client.stats()
    assert stats["inserts"] >= 40 and stats["samples"] >= 64 + 8 + 16
    client.clear()
    assert client.size() == 0 and client.next_key() == first + 40


def test_is_full_and_overwrite(client):
    client.add_batch(**batch_of(0, 1000))
    assert client.is_full() and client.size() == 1000
    client.add_batch(**batch_of(1000, 10))
    assert client.size() == 1000


BAD_CALLS = [
    ("add", (), {**counter_transition(0), "obs": np.zeros(3)}),
    ("add", (), {**counter_transition(0), "obs": np.zeros(4, np.complex64)}),
    ("add", (), {**counter_transition(0), "obs": None}),
    ("add", (), {**counter_transition(0), "action": 0.5}),
    ("add", (), {**counter_transition(0), "action": 2**70}),
    ("add", (), {**counter_transition(0), "done": 2}),
    ("add", (), {**counter_transition(0), "extra": 1}),
    ("add", (), {"obs": np.zeros(4)}),
    ("add", tuple(counter_transition(0).values()) + (1,), {}),
    ("add", (np.zeros(4),), {"obs": np.zeros(4)}),
    ("add_batch", (), {**batch_of(0, 4), "reward": np.zeros(3)}),
    ("add_batch", (), {**batch_of(0, 4), "action": np.zeros(4)}),
    ("add_batch", (), {k: v[:0] for k, v in batch_of(0, 4).items()}),
    ("sample", (0,), {}),
    ("sample", (-3,), {}),
    ("sample_into", ({},), {}),
    ("sample_into", ({"nope": np.zeros(3)},), {}),
    ("sample_into", ({"obs": np.zeros((3, 4))},), {}),
    ("sample_into", ({"obs": np.zeros((3, 5), np.float32)},), {}),
    ("sample_into", ({"reward": np.zeros(3, np.float32), "done": np.zeros(2, bool)},), {}),
    ("sample_into", ({"reward": np.zeros(3, np.float32)[::-1][::2]},), {}),
    ("sample_into", ({"reward": [0.0]},), {}),
    ("sample_into", ({"weights": np.zeros(3, np.float32)},), {}),
    ("sample", (3,), {"beta": 0.5}),
    ("update_priorities", ([0], [1.0]), {}),
]


def local_error(method, args, kwargs):
    buffer = cartpole()
    buffer.add(**counter_transition(0))
    with pytest.raises(Exception) as caught:
        getattr(buffer, method)(*args, **kwargs)
    return caught.value


@pytest.mark.parametrize(("method", "args", "kwargs"), BAD_CALLS)
def test_errors_are_the_local_ones(client, method, args, kwargs):
    expected = local_error(method, args, kwargs)
    client.add(**counter_transition(0))
    before = client.next_key(), client.size()
    with pytest.raises(type(expected)) as caught:
        getattr(client, method)(*args, **kwargs)
    assert type(caught.value) is type(expected)
    assert str(caught.value) == str(expected)
    assert (client.next_key(), client.size()) == before
    assert_rows_consistent(client.sample(8))  # and the connection still works


def test_async_client_errors_are_the_local_ones(server):
    async def run():
        async with await aio.connect(server.unix_url) as c:
            await c.add(**counter_transition(0))
            for method, args, kwargs in BAD_CALLS:
                expected = local_error(method, args, kwargs)
                with pytest.raises(type(expected)) as caught:
                    await getattr(c, method)(*args, **kwargs)
                assert (type(caught.value), str(caught.value)) == (type(expected), str(expected))

    asyncio.run(run())


@pytest.fixture(scope="module", params=["prioritized", "rank"])
def prioritized(request):
    process = ServerProcess("--strategy", request.param, "--alpha", "0.7", "--beta", "0.4")
    yield process, request.param
    assert process.stop() == 0


def local_prioritized(strategy):
    config = BufferConfig(capacity=1000, seed=0, strategy=strategy, alpha=0.7, beta=0.4)
    buffer = ReplayBuffer(config, obs_shape=(4,), action_dim=2)
    buffer.add(**counter_transition(0))
    return buffer


PRIORITY_BAD_CALLS = [
    ("update_priorities", ([0, 1], [1.0]), {}),
    ("update_priorities", ([0], [np.nan]), {}),
    ("update_priorities", ([0], [1.0]), {"priorities": [1.0]}),
    ("update_priorities", ([0],), {}),
    ("update_priorities", ([0.5], [1.0]), {}),
    ("update_priorities", ([0],), {"priorities": [-1.0]}),
    ("sample", (4,), {"beta": -1.0}),
    ("sample_into", ({"zz": np.zeros(3)},), {}),
    ("sample_into", ({"weights": np.zeros(3)},), {}),
]


def test_prioritized_service(prioritized):
    process, strategy = prioritized
    with connect(process.tcp_url) as c:
        assert c.strategy == strategy and c.info()["config"]["alpha"] == 0.7
        c.add_batch(**batch_of(0, 100))
        batch = c.sample(32, beta=0.5)
        assert batch["weights"].dtype == np.float32 and batch["weights"].shape == (32,)
        assert_rows_consistent(batch)
        assert c.update_priorities(batch["indices"], np.abs(batch["reward"]) + 1) == 32
        assert c.update_priorities(batch["indices"][:4], priorities=np.ones(4)) == 4
        pending = c.update_priorities(batch["indices"][:2], np.ones(2), wait=False)
        assert pending.result() == 2
        out = {"weights": np.zeros(8, np.float32), "indices": np.zeros(8, np.int64)}
        c.sample_into(out, beta=1.0)
        assert (out["weights"] > 0).all() and (out["weights"] <= 1).all()
        local = local_prioritized(strategy)
        for method, args, kwargs in PRIORITY_BAD_CALLS:
            with pytest.raises(Exception) as expected:
                getattr(local, method)(*args, **kwargs)
            with pytest.raises(type(expected.value)) as caught:
                getattr(c, method)(*args, **kwargs)
            assert str(caught.value) == str(expected.value)

    async def run():
        async with await aio.connect(process.unix_url) as a:
            batch = await a.sample(16, beta=0.3)
            assert await a.update_priorities(batch["indices"], np.ones(16)) == 16

    asyncio.run(run())


def test_sync_pipelining(client):
    first = client.next_key()
    pending = [client.add_batch(**batch_of(i * 4, 4), wait=False) for i in range(100)]
    samples = [client.sample(8, wait=False) for _ in range(20)]
    bad = client.sample(0, wait=False)
    more = client.add(**counter_transition(400), wait=False)
    assert [p_.result() for p_ in pending] == [first + 4 * i for i in range(100)]
    for s in samples:
        assert_rows_consistent(s.result())
    assert more.result() == first + 400
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        bad.result()
    unseen = client.sample(0, wait=False)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        client.flush()
    assert unseen.done()


def test_async_client_every_operation_and_pipelining(server):
    async def run():
        async with await aio.connect(server.tcp_url) as c:
            await c.clear()
            assert c.fields == cartpole().fields and await c.capacity() == 1000
            first = await c.next_key()
            keys = await asyncio.gather(*(c.add_batch(**batch_of(4 * i, 4)) for i in range(200)))
            assert sorted(keys) == [first + 4 * i for i in range(200)]
            assert await c.add(*counter_transition(800).values()) == first + 800
            assert await c.size() == 801 and not await c.is_full()
            batches = await asyncio.gather(*(c.sample(16) for _ in range(50)))
            for batch in batches:
                assert_rows_consistent(batch)
            out = {"obs": np.zeros((5, 4), np.float32), "reward": np.zeros(5, np.float32)}
            await c.sample_into(out)
            np.testing.assert_array_equal(out["obs"][:, 0], out["reward"])
            assert (await c.info())["size"] == 801
            assert (await c.stats())["inserts"] >= 801
            await c.clear()
            assert await c.size() == 0

    asyncio.run(run())


class SlowSampling(ReplayBuffer):
    def sample(self, *args, **kwargs):
        time.sleep(0.5)
        return super().sample(*args, **kwargs)


def test_async_timeout_keeps_the_connection():
    buffer = SlowSampling(BufferConfig(capacity=10, seed=0), obs_shape=(4,), action_dim=2)
    buffer.add(**counter_transition(0))
    server = ThreadedServer(buffer)

    async def run():
        async with await aio.connect(server.unix_url, timeout=0.05) as c:
            with pytest.raises(TimeoutError, match="no reply"):
                await c.sample(1)
            c.timeout = 10
            assert await c.size() == 1  # the late sample reply was dropped, not taken for this

    try:
        asyncio.run(run())
    finally:
        server.stop()


def test_sixty_four_concurrent_clients(server):
    errors = []

    def work(n):
        try:
            with connect(server.unix_url if n % 2 else server.tcp_url, timeout=30) as c:
                for i in range(10):
                    c.add_batch(**batch_of(n * 1000 + i * 8, 8))
                    assert_rows_consistent(c.sample(16))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    with connect(server.unix_url) as c:
        wait_until_alone(c)


def test_sixty_four_concurrent_async_clients(server):
    async def one(n):
        async with await aio.connect(server.unix_url, timeout=30) as c:
            await c.add_batch(**batch_of(n * 100, 8))
            return (await c.sample(8))["indices"].shape

    async def run():
        return await asyncio.gather(*(one(n) for n in range(64)))

    assert asyncio.run(run()) == [(8,)] * 64


def test_stalled_client_does_not_block_others(server):
    with connect(server.unix_url, timeout=10) as c:
        c.add_batch(**batch_of(0, 16))
        stalled = raw_connect(server.path)
        stalled.sendall(hello_frame())
        assert read_frame(stalled)[0] == p.MsgType.HELLO | p.RESPONSE_BIT
        # Half of a 1 MB add_batch frame, then silence.
        stalled.sendall(p.pack_header(p.MsgType.ADD_BATCH, 5, 1 << 20) + b"\0" * 1000)
        idle = raw_connect(server.path)  # never even says hello
        deaf = never_reads_its_replies(server.path)
        try:
            for _ in range(20):
                assert_rows_consistent(c.sample(32))
                c.add_batch(**batch_of(16, 16))
        finally:
            stalled.close()
            idle.close()
            deaf.close()


def never_reads_its_replies(path):
    """A client that asks for ~50 MB of samples and reads none of it."""
    sock = raw_connect(path)
    sock.sendall(hello_frame())
    read_frame(sock)
    request = p.SAMPLE_REQUEST.pack(65536, 0, 0, 0.0, 0)
    sock.sendall(b"".join(frame(p.MsgType.SAMPLE, request, i) for i in range(1, 17)))
    return sock


def test_shutdown_with_a_client_that_never_reads():
    process = ServerProcess("--grace", "1")
    with connect(process.unix_url) as c:
        c.add_batch(**batch_of(0, 64))
    deaf = never_reads_its_replies(process.path)
    time.sleep(0.2)
    start = time.monotonic()
    try:
        assert process.stop() == 0
        assert time.monotonic() - start < 10
    finally:
        deaf.close()


def test_vanishing_and_garbage_clients_leave_the_buffer_intact(server):
    with connect(server.unix_url, timeout=10) as c:
        c.clear()
        c.add_batch(**batch_of(0, 50))
        before = c.size(), c.next_key()
        good_payload = b"".join(
            bytes(x) for x in p.encode_arrays((k, v, 0) for k, v in batch_of(0, 4).items())
        )
        cases = [
            hello_frame() + frame(p.MsgType.ADD_BATCH, good_payload)[: 24 + 40],  # mid-frame
            hello_frame() + frame(p.MsgType.ADD_BATCH, good_payload)[:10],  # mid-header
            b"GET / HTTP/1.1\r\n\r\n" + os.urandom(100),  # garbage instead of a handshake
            hello_frame() + os.urandom(64),
        ]
        for data in cases:
            sock = raw_connect(server.path)
            sock.sendall(data)
            sock.close()
        for data in cases[2:]:  # these get an error frame, then the server hangs up
            sock = raw_connect(server.path)
            sock.sendall(data)
            replies = []
            while (reply := read_frame(sock)) is not None:
                replies.append(reply[0])
            assert replies[-1] == p.MsgType.ERROR
            sock.close()
        assert (c.size(), c.next_key()) == before
        assert_rows_consistent(c.sample(64))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (frame(p.MsgType.ADD), "the first frame must be HELLO"),
        (b"XX" + hello_frame()[2:], "bad frame magic"),
        (hello_frame()[:2] + b"\x09" + hello_frame()[3:], "unsupported protocol version 9"),
        (hello_frame() + hello_frame(), "HELLO may only be sent once"),
        (hello_frame() + frame(0x42), "unknown message type 0x42"),
        (hello_frame() + frame(p.MsgType.SIZE, b"x"), "SIZE payload of 1 bytes is over the limit"),
        (
            hello_frame() + p.pack_header(p.MsgType.ADD_BATCH, 7, 2**40),
            "ADD_BATCH payload of 1099511627776 bytes is over the limit",
        ),
    ],
)
def test_protocol_violations_get_an_error_then_close(server, data, message):
    sock = raw_connect(server.path)
    sock.sendall(data)
    replies = []
    while (reply := read_frame(sock)) is not None:
        replies.append(reply)
    sock.close()
    msg_type, _, payload = replies[-1]
    assert msg_type == p.MsgType.ERROR
    error = p.decode_error(payload)
    assert isinstance(error, p.ProtocolError) and message in str(error)


def test_malformed_payload_keeps_the_connection(server):
    sock = raw_connect(server.path)
    sock.sendall(hello_frame())
    read_frame(sock)
    sock.sendall(frame(p.MsgType.ADD_BATCH, b"\x01\0\0\0\0\0\0\0" + b"\xff" * 8, request_id=3))
    msg_type, request_id, payload = read_frame(sock)
    assert (msg_type, request_id) == (p.MsgType.ERROR, 3)
    assert isinstance(p.decode_error(payload), p.ProtocolError)
    sock.sendall(frame(p.MsgType.SIZE, request_id=4))
    assert read_frame(sock)[:2] == (p.MsgType.SIZE | p.RESPONSE_BIT, 4)
    sock.close()


def test_unix_socket_is_private(server):
    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600


@pytest.fixture(scope="module")
def limited():
    process = ServerProcess(
        "--max-batch", "64", "--max-frame-bytes", "65536", "--max-connections", "3"
    )
    yield process
    assert process.stop() == 0


def test_limits(limited):
    with connect(limited.unix_url) as c:
        assert c.schema.limits == p.Limits(max_frame_bytes=65536, max_batch=64)
        with pytest.raises(ValueError, match="at most 64 \\(max_batch\\)"):
            c.add_batch(**batch_of(0, 65))
        c.add_batch(**batch_of(0, 64))
        with pytest.raises(ValueError, match="over this server's limit of 64"):
            c.sample(65)
        with pytest.raises(ValueError, match="over the server's frame limit"):
            c.add_batch(obs=np.zeros((64, 4, 64)))
        # Over the limit without the client's checks: the server refuses it unread.
        sock = raw_connect(limited.path)
        sock.sendall(hello_frame() + p.pack_header(p.MsgType.ADD_BATCH, 2, 65537))
        read_frame(sock)
        assert "over the limit" in str(p.decode_error(read_frame(sock)[2]))
        assert read_frame(sock) is None
        sock.close()
        assert_rows_consistent(c.sample(64))


def wait_until_alone(client):
    """Wait until the server has seen earlier clients go (closing is asynchronous)."""
    deadline = time.monotonic() + 10
    while client.stats()["connections"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_connection_limit(limited):
    with connect(limited.unix_url) as first:
        wait_until_alone(first)
        with connect(limited.tcp_url), connect(limited.unix_url):
            with pytest.raises(ConnectionError, match="limit of 3 connections"):
                connect(limited.unix_url)
    deadline = time.monotonic() + 10
    while True:  # the slots come back once the server has seen those clients go
        try:
            with connect(limited.unix_url) as c:
                wait_until_alone(c)
            break
        except ConnectionError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_token_required(tmp_path):
    process = ServerProcess("--token-env", "RB_TEST_TOKEN", env={"RB_TEST_TOKEN": "s3cret"})
    try:
        for token in (None, "wrong", ""):
            with pytest.raises(PermissionError, match="requires a token"):
                connect(process.unix_url, token=token)
        with connect(process.tcp_url, token="s3cret") as c:
            assert c.size() == 0
        os.environ["REPLAY_BUFFER_TOKEN"] = "s3cret"
        try:
            with connect(process.unix_url) as c:
                assert c.size() == 0
        finally:
            del os.environ["REPLAY_BUFFER_TOKEN"]

        async def wrong():
            await aio.connect(process.unix_url, token="nope")

        with pytest.raises(PermissionError):
            asyncio.run(wrong())
    finally:
        assert process.stop() == 0


def test_non_loopback_needs_a_token(tmp_path, capsys):
    buffer = cartpole()
    with pytest.raises(
        ValueError, match="refusing to listen on tcp://0.0.0.0:7777 without a token"
    ):
        ReplayServer(buffer, ["tcp://0.0.0.0:7777"])
    ReplayServer(buffer, ["tcp://0.0.0.0:7777"], token=b"x")  # constructing binds nothing
    with pytest.raises(SystemExit) as exit_:
        main(["--capacity", "10", "--obs-shape", "4", "--action-dim", "2",
              "--listen", "tcp://10.1.2.3:7777"])  # fmt: skip
    assert exit_.value.code == 2
    assert "without a token" in capsys.readouterr().err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_shutdown_answers_what_it_received_and_cleans_up(signum):
    process = ServerProcess()
    client = connect(process.unix_url, timeout=20)
    client.add_batch(**batch_of(0, 64))
    pending = [client.sample(64, wait=False) for _ in range(16)]
    pending[0].result()
    assert process.stop(signum) == 0
    answered = 0
    for item in pending[1:]:
        try:
            assert_rows_consistent(item.result())
            answered += 1
        except ConnectionError:
            pass
    assert answered >= 1  # what had arrived was answered; nothing came back garbled
    assert not os.path.exists(process.path)
    assert any("stopped" in line for line in process.log)
    with pytest.raises(ConnectionError):
        client.size()
    client.close()


@needs_toml
def test_status_line_and_toml_config(tmp_path):
    config = tmp_path / "replay.toml"
    config.write_text(
        """
[buffer]
capacity = 500
seed = 1

[fields.obs]
shape = [2, 3]
dtype = "uint8"

[fields.reward]

[server]
status_interval = 0.2
max_batch = 128
"""
    )
    process = ServerProcess("--config", str(config), "--status-interval", "0.2", schema=[])
    try:
        with connect(process.tcp_url) as c:
            assert c.fields == {
                "obs": {"shape": (2, 3), "dtype": np.dtype(np.uint8)},
                "reward": {"shape": (), "dtype": np.dtype(np.float32)},
            }
            assert c.capacity() == 500 and c.schema.limits.max_batch == 128
            c.add_batch(obs=np.ones((10, 2, 3), np.uint8), reward=np.arange(10.0))
            deadline = time.monotonic() + 10
            while not any("inserts/s" in line for line in process.log):
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        assert process.stop() == 0
    assert any("size 10/500" in line for line in process.log)


@needs_toml
def test_config_flags_override_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[buffer]\ncapacity = 5\n[transition]\nobs_shape = [4]\naction_dim = 2\n")
    args = build_parser().parse_args(
        ["--config", str(path), "--capacity", "9", "--obs-dtype", "uint8", "--listen",
         "unix:///tmp/x.sock", "--max-batch", "7"]
    )  # fmt: skip
    config = config_from_args(args)
    assert config.buffer == {"capacity": 9}
    assert config.fields["obs"] == {"shape": [4], "dtype": "uint8"}
    assert config.listen == ("unix:///tmp/x.sock",) and config.limits.max_batch == 7
    args = build_parser().parse_args(["--config", str(path), "--field", "x:int16:2,2"])
    assert config_from_args(args).fields == {"x": {"dtype": "int16", "shape": [2, 2]}}
    for bad, message in [
        (["--capacity", "5"], "no schema: give --obs-shape and --action-dim"),
        (["--capacity", "5", "--field", "x:float32", "--action-dim", "2"], "not both"),
        (["--field", "x:float32"], "--capacity is required"),
    ]:
        with pytest.raises(ValueError, match=message):
            config_from_args(build_parser().parse_args(bad))


def test_prefetch_over_the_network(server):
    with connect(server.unix_url) as c:
        c.add_batch(**batch_of(0, 32))
        with aio.prefetch(c, 16, depth=3) as batches:
            for batch in itertools.islice(batches, 10):
                assert_rows_consistent(batch)


def test_handshake_timeout_and_in_process_server():
    server = ThreadedServer(cartpole(), handshake_timeout=0.2)
    try:
        idle = raw_connect(server.path)
        assert read_frame(idle) is None  # closed for not saying hello in time
        idle.close()
        with connect(server.unix_url) as c:
            c.add(**counter_transition(3))
            assert c.size() == 1
    finally:
        server.stop()
    assert not os.path.exists(server.path)


def test_a_second_server_on_the_same_socket_fails(server, caplog):
    args = ["--capacity", "10", "--obs-shape", "4", "--action-dim", "2"]
    assert main([*args, "--listen", server.unix_url, "--status-interval", "0"]) == 1
    assert "already listening" in caplog.text
    with connect(server.unix_url) as c:  # the first one is untouched
        assert c.size() >= 0


@pytest.mark.skipif(not hasattr(ReplayBuffer, "attach"), reason="no shared memory in this build")
def test_shared_memory_name_lets_local_processes_attach():
    name = f"rb-service-test-{os.getpid()}"
    process = ServerProcess("--shm-name", name)
    try:
        with connect(process.unix_url) as c:
            assert c.info()["shm_name"] == name
            c.add_batch(**batch_of(0, 10))
            local = ReplayBuffer.attach(name)
            assert local.size() == 10
            local.add(**counter_transition(10))
            assert c.size() == 11
            assert_rows_consistent(c.sample(32))
    finally:
        assert process.stop() == 0
    with pytest.raises(FileNotFoundError):
        ReplayBuffer.attach(name)


@needs_toml
def test_the_documented_config_file_is_valid():
    doc = (Path(__file__).parents[2] / "docs" / "service.md").read_text()
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    example = example.replace("# shm_name = ", "shm_name = ")  # the optional line, switched on
    config = from_dict(tomllib.loads(example))
    assert config.buffer["strategy"] == "prioritized" and config.fields["obs"]["dtype"] == "uint8"
    assert config.listen[1] == "tcp://127.0.0.1:7777" and config.limits.max_in_flight == 16
    assert config.shm_name == "learner0" and "shm_name" not in config.buffer
