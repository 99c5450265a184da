"""Rate limiting (min size to sample, samples per insert) in every mode: threads, shared memory,
and the service."""

import multiprocessing
import threading
import time

import numpy as np
import pytest
from service_support import ServerProcess

from replay_buffer import BufferConfig, ReplayBuffer
from replay_buffer.service.client import connect

from conftest import counter_transition


def make(**limits) -> ReplayBuffer:
    config = BufferConfig(capacity=10_000, seed=0, **limits)
    return ReplayBuffer(config, fields={"id": {"dtype": np.int64}})


def add(buffer, count: int, first: int = 0) -> None:
    buffer.add_batch(id=np.arange(first, first + count))


def test_config_validation():
    with pytest.raises(ValueError, match="min_size_to_sample must be >= 0"):
        BufferConfig(capacity=4, min_size_to_sample=-1)
    with pytest.raises(ValueError, match="error_buffer needs samples_per_insert"):
        BufferConfig(capacity=4, error_buffer=3.0)
    with pytest.raises(ValueError, match="samples_per_insert must be finite"):
        BufferConfig(capacity=4, samples_per_insert=float("inf"))
    with pytest.raises(ValueError, match="error_buffer must be at least max"):
        make(samples_per_insert=8.0, error_buffer=2.0)
    assert BufferConfig(capacity=4, samples_per_insert=2.0).rate_limit() == (0, 2.0, 128.0, 60.0)
    assert BufferConfig(capacity=4, rate_limit_timeout=None).rate_limit()[3] == -1.0


def test_samples_wait_for_the_minimum_size_then_time_out():
    buffer = make(min_size_to_sample=100, rate_limit_timeout=0.05)
    add(buffer, 99)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="waited 0.05"):
        buffer.sample(8)
    assert time.monotonic() - start >= 0.05
    add(buffer, 1, first=99)
    assert buffer.sample(8)["id"].shape == (8,)
    assert buffer.sampled() == 8


def test_a_waiting_sample_is_released_by_an_add_from_another_thread():
    buffer = make(min_size_to_sample=10, rate_limit_timeout=10.0)
    add(buffer, 5)
    threading.Timer(0.05, add, args=(buffer, 5, 5)).start()
    start = time.monotonic()
    assert len(buffer.sample(4)["id"]) == 4  # waits with the GIL released, so the timer runs
    assert 0.04 <= time.monotonic() - start < 5


def test_adds_wait_for_samples_and_impossible_batches_fail_at_once():
    buffer = make(
        min_size_to_sample=10, samples_per_insert=1.0, error_buffer=4.0, rate_limit_timeout=0.05
    )
    add(buffer, 14)  # 4 past the minimum: the whole tolerance
    with pytest.raises(TimeoutError):
        add(buffer, 1, first=14)
    assert buffer.next_key() == 14
    buffer.sample(4)
    add(buffer, 4, first=14)
    with pytest.raises(ValueError, match="can never satisfy the rate limiter"):
        add(buffer, 9)
    with pytest.raises(ValueError, match="can never satisfy the rate limiter"):
        buffer.sample(9)


def test_threads_keep_the_ratio():
    ratio, tolerance = 4.0, 64.0
    buffer = make(
        min_size_to_sample=100,
        samples_per_insert=ratio,
        error_buffer=tolerance,
        rate_limit_timeout=0.2,
    )
    done = threading.Event()
    worst = []

    def adder() -> None:
        added = 0
        while added < 4_000:
            try:
                add(buffer, 8, first=added)
                added += 8
            except TimeoutError:
                continue
        done.set()

    def sampler() -> None:
        while not done.is_set() or buffer.sampled() < 4_000 * ratio - 400 - tolerance:
            try:
                buffer.sample(32)
            except TimeoutError:
                continue
            worst.append(buffer.sampled() - (buffer.next_key() * ratio - 400))

    threads = [threading.Thread(target=adder), threading.Thread(target=sampler)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert max(worst) <= tolerance  # samples never ran ahead by more than the tolerance
    assert abs(buffer.sampled() - (4_000 * ratio - 400)) <= tolerance


def _late_adder(name: str) -> None:
    buffer = ReplayBuffer.attach(name)
    time.sleep(0.1)
    buffer.add_batch(id=np.arange(20))
    buffer.close()


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_shared_memory_limits_hold_across_processes(shm_name, method):
    config = BufferConfig(capacity=100, min_size_to_sample=20, rate_limit_timeout=20.0)
    with ReplayBuffer(config, fields={"id": {"dtype": np.int64}}, shm_name=shm_name) as buffer:
        attached = ReplayBuffer.attach(shm_name)
        assert attached.config.min_size_to_sample == 20
        attached.close()
        child = multiprocessing.get_context(method).Process(target=_late_adder, args=(shm_name,))
        child.start()
        start = time.monotonic()
        batch = buffer.sample(5)  # waits for the other process's adds
        assert time.monotonic() - start >= 0.05
        assert len(batch["id"]) == 5
        child.join(20)
        assert child.exitcode == 0


def test_service_applies_the_buffer_limits():
    server = ServerProcess("--min-size-to-sample", "10", "--rate-limit-timeout", "0.1")
    try:
        with connect(server.unix_url) as client:
            with pytest.raises(TimeoutError, match="for the buffer to hold 10"):
                client.sample(4)
            client.add_batch(
                obs=np.zeros((10, 4), np.float32),
                action=np.zeros(10, np.int64),
                reward=np.zeros(10, np.float32),
                next_obs=np.zeros((10, 4), np.float32),
                done=np.zeros(10, bool),
            )
            assert len(client.sample(4)["reward"]) == 4
    finally:
        assert server.stop() == 0


def test_clear_restarts_the_limiter_counts():
    # The limiter compared the size since the clear with every insert since the buffer was made:
    # after a clear, adds and samples waited for each other until the timeout.
    config = BufferConfig(
        capacity=1000, seed=0, min_size_to_sample=200, samples_per_insert=1.0, error_buffer=8.0,
        rate_limit_timeout=2.0,
    )  # fmt: skip
    buffer = ReplayBuffer(config, obs_shape=(4,), action_dim=2)
    for round_ in range(2):
        batch = {k: np.stack([np.asarray(v)] * 8) for k, v in counter_transition(1).items()}
        for _ in range(25):
            buffer.add_batch(**batch)
        four = {k: v[:4] for k, v in batch.items()}
        for _ in range(20):  # one sample per insert: within the ratio throughout
            buffer.sample(4)
            buffer.add_batch(**four)
        buffer.clear()
        assert buffer.size() == 0, round_


def test_cancel_waits_ends_a_waiting_call_at_once():
    config = BufferConfig(capacity=100, seed=0, min_size_to_sample=10, rate_limit_timeout=60)
    buffer = ReplayBuffer(config, obs_shape=(4,), action_dim=2)
    outcome: list = []

    def wait() -> None:
        try:
            buffer.sample(4)
        except ValueError as error:
            outcome.append(error)

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.3)
    buffer.cancel_waits()
    thread.join(timeout=20)  # before: waited the full 60 s
    assert not thread.is_alive()
    assert outcome and "cancelled" in str(outcome[0])
    assert buffer.sampled() == 0
    for i in range(10):
        buffer.add(**counter_transition(i))
    assert buffer.sample(4)["obs"].shape == (4, 4)  # later calls wait (and pass) as usual
