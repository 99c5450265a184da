"""PRIORITY_MASS and SAMPLE's with-priorities flag: what sharded sampling asks of each shard."""

import math

import numpy as np
import pytest
from service_support import ThreadedServer, frame, hello_frame, raw_connect, read_frame

from replay_buffer import BufferConfig, ReplayBuffer
from replay_buffer.service import connect
from replay_buffer.service import protocol as p


def served(strategy):
    buffer = ReplayBuffer(
        BufferConfig(capacity=8, strategy=strategy, alpha=1.0, eps=0.0, seed=0),
        fields={"x": {"dtype": np.float32}},
    )
    return buffer, ThreadedServer(buffer)


@pytest.fixture
def prioritized():
    buffer, server = served("prioritized")
    yield buffer, server
    server.stop()


def test_priority_mass_and_sampled_priorities(prioritized):
    buffer, server = prioritized
    with connect(server.unix_url) as client:
        assert set(client.schema.info["features"]) >= {"priority_mass", "sample_priorities"}
        size, next_key, total, smallest = client.priority_mass()
        assert (size, next_key, total) == (0, 0, 0.0) and math.isinf(smallest)
        client.add_batch(x=np.arange(4, dtype=np.float32))
        client.update_priorities(np.arange(4), priorities=[1.0, 2.0, 3.0, 4.0])
        assert client.priority_mass() == (4, 4, 10.0, 1.0)
        batch = client.sample(64, with_priorities=True)
        np.testing.assert_array_equal(batch["priorities"], batch["indices"] + 1.0)
        assert batch["priorities"].dtype == np.float64
        assert "priorities" not in client.sample(4)  # only when asked


def test_uniform_counts_every_item_as_priority_one():
    buffer, server = served("uniform")
    try:
        with connect(server.unix_url) as client:
            client.add_batch(x=np.zeros(3, np.float32))
            assert client.priority_mass() == (3, 3, 3.0, 1.0)
            np.testing.assert_array_equal(client.sample(5, with_priorities=True)["priorities"], 1)
    finally:
        server.stop()


def test_rank_refuses_both_with_a_value_error():
    buffer, server = served("rank")
    try:
        with connect(server.unix_url) as client:
            client.add(x=1.0)
            with pytest.raises(ValueError, match="rank-based probabilities do not compose"):
                client.priority_mass()
            with pytest.raises(ValueError, match="rank-based probabilities do not compose"):
                client.sample(2, with_priorities=True)
            assert client.size() == 1  # the connection stays usable
    finally:
        server.stop()


def test_priority_mass_with_a_payload_is_refused_unread(prioritized):
    _, server = prioritized
    sock = raw_connect(server.path)
    sock.sendall(hello_frame())
    assert read_frame(sock)[0] == p.MsgType.HELLO | p.RESPONSE_BIT
    sock.sendall(frame(p.MsgType.PRIORITY_MASS, b"12345678"))
    msg_type, _, payload = read_frame(sock)
    assert msg_type == p.MsgType.ERROR
    assert "PRIORITY_MASS payload of 8 bytes is over the limit of 0" in str(p.decode_error(payload))
    sock.close()


def test_unknown_sample_flag_bits_are_still_refused(prioritized):
    _, server = prioritized
    sock = raw_connect(server.path)
    sock.sendall(hello_frame())
    read_frame(sock)
    sock.sendall(frame(p.MsgType.SAMPLE, p.SAMPLE_REQUEST.pack(1, 4, 0, 0.0, 0)))
    msg_type, _, payload = read_frame(sock)
    assert msg_type == p.MsgType.ERROR and "bad SAMPLE flags 0x4" in str(p.decode_error(payload))
    sock.close()


def test_a_client_asks_only_servers_that_offer_it(prioritized):
    _, server = prioritized
    with connect(server.unix_url) as client:
        client.schema.info["features"] = []  # what a server before these features says
        with pytest.raises(ValueError, match="does not offer priority_mass"):
            client.priority_mass()
        with pytest.raises(ValueError, match="does not offer sample priorities"):
            client.sample(1, with_priorities=True)


def test_the_async_client_offers_both(prioritized):
    import asyncio

    from replay_buffer import aio

    buffer, server = prioritized
    buffer.add_batch(x=np.arange(2, dtype=np.float32))

    async def run():
        async with await aio.connect(server.unix_url) as client:
            mass = await client.priority_mass()
            batch = await client.sample(4, with_priorities=True)
            return mass, batch

    mass, batch = asyncio.run(run())
    assert mass == (2, 2, 2.0, 1.0)
    np.testing.assert_array_equal(batch["priorities"], 1.0)
