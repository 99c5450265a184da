"""buffer.stats(): each figure's meaning on a known workload, in every mode."""

import multiprocessing as mp

import numpy as np
import pytest
from service_support import ThreadedServer

from replay_buffer import BufferConfig, ReplayBuffer
from replay_buffer.service import connect

from conftest import cartpole, counter_transition, shm_name  # noqa: F401


def batch(n: int, first: int = 0) -> dict:
    rows = [counter_transition(first + i) for i in range(n)]
    return {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}


def test_known_workload_gives_known_counts():
    buffer = cartpole(capacity=64)
    for i in range(3):
        buffer.add(**counter_transition(i))
    buffer.add_batch(**batch(61, first=3))
    for _ in range(100):
        buffer.sample(32)
    stats = buffer.stats()
    assert stats["capacity"] == 64 and stats["size"] == 64
    assert stats["inserted"] == 64 and stats["insert_calls"] == 4
    assert stats["sampled"] == 3200 and stats["sample_calls"] == 100
    assert stats["insert_waits"] == 0 and stats["sample_waits"] == 0
    assert stats["strategy"] == "uniform" and stats["priority"] is None
    # Tracked keys (every 16th: 0, 16, 32, 48) are sampled with probability 4/64 per row.
    tracked = sum(stats["age_buckets"])
    assert 120 < tracked < 280
    assert stats["tracking_stride"] == 16 and stats["unique_sampled"] == 64
    assert stats["live_sampled_fraction"] == 1.0
    assert stats["live_sample_count_mean"] == pytest.approx(tracked / 4)
    assert 15 <= stats["age_p50"] <= stats["age_p99"] <= 63


def test_rate_limiter_waits_are_counted():
    config = BufferConfig(capacity=16, min_size_to_sample=4, rate_limit_timeout=0.05)
    buffer = ReplayBuffer(config, obs_shape=(4,), action_dim=2)
    with pytest.raises(TimeoutError):
        buffer.sample(2)
    stats = buffer.stats()
    assert stats["sample_waits"] == 1 and stats["sample_wait_seconds"] >= 0.05
    assert stats["insert_waits"] == 0 and stats["min_size_to_sample"] == 4


def test_priority_distribution():
    config = BufferConfig(capacity=8, strategy="prioritized", alpha=1.0, eps=0.0)
    buffer = ReplayBuffer(config, obs_shape=(4,), action_dim=2)
    buffer.add_batch(**batch(8))
    buffer.update_priorities(np.arange(8), priorities=[0.5, 1, 1, 2, 2, 2, 4, 100])
    priority = buffer.stats()["priority"]
    assert priority["sum"] == 112.5 and priority["min"] == 0.5 and priority["max"] == 100
    assert priority["sampled_slots"] == 8 and priority["sampled_sum"] == 112.5
    low = priority["bucket_low_exponent"]
    nonzero = {i + low: n for i, n in enumerate(priority["buckets"]) if n}
    assert nonzero == {-1: 1, 0: 2, 1: 3, 2: 1, 6: 1}


def _sample_in_child(name: str) -> None:
    buffer = ReplayBuffer.attach(name)
    for _ in range(5):
        buffer.sample(10)
    buffer.add_batch(**batch(3))


def test_every_attached_process_sees_the_same_figures(shm_name):  # noqa: F811
    config = BufferConfig(capacity=64)
    buffer = ReplayBuffer(config, obs_shape=(4,), action_dim=2, shm_name=shm_name)
    buffer.add_batch(**batch(20))
    child = mp.get_context("spawn").Process(target=_sample_in_child, args=(shm_name,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    stats = buffer.stats()
    assert stats["shared"] and stats["sampled"] == 50 and stats["sample_calls"] == 5
    assert stats["inserted"] == 23 and stats["insert_calls"] == 2
    assert stats["writers_live"] == 1 and stats["writers_dead"] == 0  # the child has exited
    other = ReplayBuffer.attach(shm_name)
    assert other.stats()["age_buckets"] == stats["age_buckets"]
    other.close()


def test_both_clients_return_the_buffers_figures_and_the_servers():
    import asyncio

    from replay_buffer.aio import connect as connect_async

    server = ThreadedServer(cartpole(capacity=100))
    try:
        with connect(server.unix_url) as client:
            client.add_batch(**batch(10))
            client.sample(4)
            stats = client.stats()

        async def read() -> dict:
            client = await connect_async(server.unix_url)
            try:
                return await client.stats()
            finally:
                await client.close()

        async_stats = asyncio.run(read())
    finally:
        server.stop()
    assert stats["buffer"]["inserted"] == 10 and stats["buffer"]["sampled"] == 4
    assert stats["operations"]["sample"]["latency_p50_s"] > 0
    assert async_stats["buffer"]["sample_calls"] == 1
    assert async_stats["operations"]["stats"]["requests"] >= 1
