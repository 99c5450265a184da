"""Which thread runs each request: no request waits behind one it could release.

A rate-limited add waits for samples, a sample for adds; the server must never make the request
that would release a waiting one queue behind it (for a thread, or for the event loop).
"""

import asyncio
import threading
import time

import numpy as np
import pytest
from service_support import ServerProcess, ThreadedServer

from replay_buffer import BufferConfig, ReplayBuffer, aio
from replay_buffer.service import connect


def rows(n: int, rng: np.random.Generator) -> dict:
    obs = rng.standard_normal((n, 4)).astype(np.float32)
    return {
        "obs": obs,
        "action": rng.integers(0, 2, n),
        "reward": np.ones(n, np.float32),
        "next_obs": obs,
        "done": np.zeros(n, bool),
    }


@pytest.mark.parametrize(
    "learner_batch",
    [
        32,  # a small update: the server can answer it on the event loop
        4096,  # an update too large for the event loop: it needs a worker thread
    ],
)
def test_rate_limited_learner_is_never_stalled_by_waiting_actors(learner_batch):
    """A learner and six actors through a real server with samples_per_insert set.

    Actors outnumber the server's worker threads, so at any time most of them wait in an add
    for the learner's samples. The learner's update_priorities must not wait behind them (it did:
    then the learner stalled until the actors' adds timed out, for every few iterations).
    """
    actors, iterations, timeout = 6, 300, 10.0
    server = ServerProcess(
        "--strategy", "prioritized", "--samples-per-insert", "4", "--min-size-to-sample", "256",
        "--error-buffer", "8192", "--rate-limit-timeout", str(timeout), "--capacity", "100000",
        "--workers", "4",
    )  # fmt: skip
    stop = threading.Event()
    errors: list[BaseException] = []
    adding = [0] * actors  # 1 while that actor is in an add (perhaps held back by the limiter)

    def actor(i: int) -> None:
        rng = np.random.default_rng(i)
        try:
            with connect(server.unix_url) as client:
                while not stop.is_set():
                    adding[i] = 1
                    client.add_batch(**rows(64, rng))
                    adding[i] = 0
        except BaseException as exc:
            errors.append(exc)
        adding[i] = 0

    threads = [threading.Thread(target=actor, args=(i,), daemon=True) for i in range(actors)]
    done = 0
    try:
        for thread in threads:
            thread.start()
        with connect(server.unix_url) as learner:
            # Liveness, not speed: correct, this takes a few seconds; stalled, each stall
            # lasts the 10 s timeout and 300 iterations take many minutes.
            deadline = time.monotonic() + 90
            rng = np.random.default_rng(0)
            while done < iterations and time.monotonic() < deadline and not errors:
                batch = learner.sample(learner_batch)
                learner.update_priorities(batch["indices"], rng.random(learner_batch))
                done += 1
            stop.set()
            while any(adding):  # small samples release the actors the limiter holds back
                learner.sample(16)
    finally:
        stop.set()
        for thread in threads:
            thread.join(2 * timeout)
        assert server.stop() == 0
    assert not errors, f"actors failed: {errors[:3]}"
    assert done == iterations


def test_local_async_update_does_not_wait_behind_held_back_adds():
    """aio.update_priorities on a local buffer: not queued behind adds the limiter holds."""
    config = BufferConfig(
        capacity=1000,
        strategy="prioritized",
        seed=0,
        samples_per_insert=1.0,
        error_buffer=8,
        rate_limit_timeout=20,
    )
    buffer = ReplayBuffer(config, obs_shape=(4,), action_dim=2)
    rng = np.random.default_rng(0)
    buffer.add_batch(**rows(8, rng))  # up to the tolerance: every further add waits
    keys = buffer.sample(8)["indices"]

    async def scenario() -> float:
        adds = [asyncio.ensure_future(aio.add_batch(buffer, **rows(8, rng))) for _ in range(8)]
        await asyncio.sleep(0.2)  # every insert thread now holds an add that waits for samples
        start = time.monotonic()
        applied = await asyncio.wait_for(aio.update_priorities(buffer, keys, np.ones(8)), 10)
        elapsed = time.monotonic() - start
        assert applied == 8
        while not all(add.done() for add in adds):  # samples release the waiting adds
            await aio.sample(buffer, 8)
        await asyncio.gather(*adds)
        return elapsed

    assert asyncio.run(scenario()) < 10


class ThreadSpy(ReplayBuffer):
    """A buffer that records which thread ran each of its calls."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.threads: dict[str, set[str]] = {}

    def _saw(self, method: str) -> None:
        self.threads.setdefault(method, set()).add(threading.current_thread().name)

    def add(self, *args, **kwargs):
        self._saw("add")
        return super().add(*args, **kwargs)

    def add_batch(self, *args, **kwargs):
        self._saw("add_batch")
        return super().add_batch(*args, **kwargs)

    def sample(self, *args, **kwargs):
        self._saw("sample")
        return super().sample(*args, **kwargs)

    def update_priorities(self, *args, **kwargs):
        self._saw("update_priorities")
        return super().update_priorities(*args, **kwargs)

    def size(self):
        self._saw("size")
        return super().size()

    def clear(self):
        self._saw("clear")
        return super().clear()


def where_each_call_ran(config: BufferConfig, large: bool = False) -> dict[str, str]:
    """Drive one of every request through a server; return 'loop' or 'worker' per method."""
    buffer = ThreadSpy(config, obs_shape=(4,), action_dim=2)
    server = ThreadedServer(buffer)
    rng = np.random.default_rng(0)
    try:
        with connect(server.unix_url, timeout=20) as client:
            batch = 8192 if large else 8  # 8192 CartPole rows: over 64 KiB each way
            client.add(**{name: value[0] for name, value in rows(1, rng).items()})
            client.add_batch(**rows(batch, rng))
            sampled = client.sample(batch)
            client.update_priorities(sampled["indices"], np.ones(batch))
            client.size()
            client.clear()
    finally:
        server.stop()
    loop = server.thread.name
    out = {}
    for method, names in buffer.threads.items():
        assert len(names) == 1, names
        out[method] = "loop" if names == {loop} else "worker"
    return out


def test_small_requests_run_on_the_event_loop():
    config = BufferConfig(capacity=100_000, strategy="prioritized", seed=0)
    assert where_each_call_ran(config) == {
        "add": "loop", "add_batch": "loop", "sample": "loop", "update_priorities": "loop",
        "size": "loop", "clear": "worker",
    }  # fmt: skip
    assert where_each_call_ran(config, large=True) == {
        "add": "loop", "add_batch": "worker", "sample": "worker", "update_priorities": "worker",
        "size": "loop", "clear": "worker",
    }  # fmt: skip


def test_calls_that_can_wait_never_run_on_the_event_loop():
    ratio = BufferConfig(
        capacity=100_000, strategy="prioritized", seed=0, samples_per_insert=1.0,
        error_buffer=100_000,
    )  # fmt: skip
    assert where_each_call_ran(ratio) == {
        "add": "worker", "add_batch": "worker", "sample": "worker", "update_priorities": "loop",
        "size": "loop", "clear": "worker",
    }  # fmt: skip
    min_size = BufferConfig(capacity=100_000, strategy="prioritized", seed=0, min_size_to_sample=1)
    assert where_each_call_ran(min_size) == {
        "add": "loop", "add_batch": "loop", "sample": "worker", "update_priorities": "loop",
        "size": "loop", "clear": "worker",
    }  # fmt: skip
