"""Local buffers under asyncio (work off the event loop) and the prefetching iterator."""

import asyncio
import gc
import itertools
import threading
import time

import numpy as np
import pytest

from replay_buffer import BufferConfig, EmptyBufferError, ReplayBuffer, aio

from conftest import assert_rows_consistent, cartpole, counter_transition


def batch_of(start, rows):
    items = [counter_transition(i) for i in range(start, start + rows)]
    return {name: np.array([item[name] for item in items]) for name in items[0]}


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "replay-buffer-prefetch"]


@pytest.fixture(autouse=True)
def no_leaked_threads():
    yield
    deadline = time.monotonic() + 5
    while prefetch_threads():
        gc.collect()
        assert time.monotonic() < deadline, "a prefetch thread outlived its test"
        time.sleep(0.01)


def test_awaitable_add_batch_and_sample():
    buffer = cartpole(capacity=1000)

    async def run():
        first = await aio.add_batch(buffer, **batch_of(0, 100))
        second = await aio.add_batch(buffer, *batch_of(100, 50).values())
        batch = await aio.sample(buffer, 64)
        return first, second, batch

    first, second, batch = asyncio.run(run())
    assert (first, second, buffer.size()) == (0, 100, 150)
    assert batch["obs"].shape == (64, 4)
    assert_rows_consistent(batch)


def test_awaitables_raise_what_the_buffer_raises():
    buffer = cartpole()

    async def run():
        with pytest.raises(EmptyBufferError):
            await aio.sample(buffer, 4)
        with pytest.raises(ValueError, match="expected shape"):
            await aio.add_batch(buffer, **{**batch_of(0, 2), "obs": np.zeros((2, 3))})
        with pytest.raises(ValueError, match="needs a prioritized buffer"):
            await aio.update_priorities(buffer, [0], [1.0])

    asyncio.run(run())


def test_awaitable_prioritized_sample_and_update():
    config = BufferConfig(capacity=100, seed=0, strategy="prioritized")
    buffer = ReplayBuffer(config, obs_shape=(4,), action_dim=2)
    buffer.add_batch(**batch_of(0, 50))

    async def run():
        batch = await aio.sample(buffer, 16, beta=1.0)
        assert batch["weights"].shape == (16,)
        assert await aio.update_priorities(buffer, batch["indices"], np.ones(16)) == 16
        return await aio.update_priorities(buffer, batch["indices"][:3], priorities=np.ones(3))

    assert asyncio.run(run()) == 3


def test_the_event_loop_keeps_running_during_a_big_copy():
    obs_shape = (84, 84, 4)
    buffer = ReplayBuffer(
        BufferConfig(capacity=2048, seed=0), obs_shape=obs_shape, action_dim=6, obs_dtype=np.uint8
    )
    rows = 1024
    obs = np.ones((rows, *obs_shape), np.uint8)
    args = (obs, np.zeros(rows, np.int64), np.zeros(rows), obs, np.zeros(rows, bool))

    async def run():
        ticks = 0
        done = False

        async def ticker():
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        for _ in range(3):
            await aio.add_batch(buffer, *args)
            await aio.sample(buffer, 1024)
        done = True
        await task
        return ticks

    assert asyncio.run(run()) > 30  # the loop ran while the copies were in a worker thread


def test_prefetch_yields_batches_and_stops():
    buffer = cartpole(capacity=1000)
    buffer.add_batch(**batch_of(0, 200))
    with aio.prefetch(buffer, 32, depth=3) as batches:
        assert prefetch_threads()
        for batch in itertools.islice(batches, 20):
            assert batch["obs"].shape == (32, 4)
            assert_rows_consistent(batch)
    assert not prefetch_threads()
    with pytest.raises(StopIteration):
        next(batches)


class CountingSampler:
    def __init__(self, buffer):
        self.buffer = buffer
        self.calls = 0

    def sample(self, batch_size, **kwargs):
        self.calls += 1
        return self.buffer.sample(batch_size, **kwargs)


def test_prefetch_stays_depth_ahead():
    buffer = cartpole()
    buffer.add_batch(**batch_of(0, 10))
    sampler = CountingSampler(buffer)
    batches = aio.prefetch(sampler, 4, depth=2)
    next(batches)
    time.sleep(0.2)
    # One taken, two queued, and one drawn that waits for room: never more.
    assert sampler.calls <= 4
    batches.close()


def test_prefetch_passes_beta():
    received = []

    class Sampler:
        def sample(self, batch_size, **kwargs):
            received.append(kwargs)
            return {"indices": np.zeros(batch_size, np.int64)}

    with aio.prefetch(Sampler(), 2, beta=0.5) as batches:
        next(batches)
    assert received[0] == {"beta": 0.5}


def test_prefetch_propagates_errors_then_ends():
    batches = aio.prefetch(cartpole(), 8)
    with pytest.raises(EmptyBufferError):
        next(batches)
    with pytest.raises(StopIteration):
        next(batches)


def test_prefetch_rejects_a_bad_depth():
    for depth in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="depth"):
            aio.prefetch(cartpole(), 8, depth=depth)


def test_close_from_another_thread_wakes_the_consumer():
    gate = threading.Event()

    class Slow:
        def sample(self, batch_size):
            gate.wait(5)
            return {"indices": np.zeros(batch_size, np.int64)}

    batches = aio.prefetch(Slow(), 2)
    results = []
    consumer = threading.Thread(target=lambda: results.append(list(batches)))
    consumer.start()
    time.sleep(0.05)
    closer = threading.Thread(target=batches.close)
    closer.start()
    gate.set()
    closer.join(5)
    consumer.join(5)
    assert not consumer.is_alive() and not closer.is_alive()


def test_dropping_the_iterator_stops_its_thread():
    buffer = cartpole()
    buffer.add_batch(**batch_of(0, 10))
    batches = aio.prefetch(buffer, 4)
    next(batches)
    del batches
    gc.collect()
    assert not prefetch_threads()


def test_replay_buffer_prefetch_method():
    from replay_buffer import BufferConfig, ReplayBuffer

    buffer = ReplayBuffer(BufferConfig(capacity=64, seed=0), fields={"id": {"dtype": "int64"}})
    buffer.add_batch(id=np.arange(64))
    with buffer.prefetch(16, depth=3) as batches:
        seen = [next(batches)["id"] for _ in range(5)]
    assert all(batch.shape == (16,) for batch in seen)
    assert buffer.sampled() >= 5 * 16
