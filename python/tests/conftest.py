import os
import uuid

import numpy as np
import pytest

from replay_buffer import BufferConfig, ReplayBuffer, _core


def cartpole(capacity: int = 100, seed: int = 0) -> ReplayBuffer:
    return ReplayBuffer(BufferConfig(capacity=capacity, seed=seed), obs_shape=(4,), action_dim=2)


def counter_transition(i: int) -> dict:
    """A transition whose every field derives from i, so a sampled row can be checked alone."""
    obs = np.arange(4, dtype=np.float32) + i
    return {
        "obs": obs,
        "action": i % 2,
        "reward": float(i),
        "next_obs": obs + 1,
        "done": i % 3 == 0,
    }


def assert_rows_consistent(batch: dict) -> None:
    ids = batch["reward"].astype(np.int64)
    np.testing.assert_array_equal(batch["obs"], np.arange(4, dtype=np.float32) + ids[:, None])
    np.testing.assert_array_equal(batch["next_obs"], batch["obs"] + 1)
    np.testing.assert_array_equal(batch["action"], ids % 2)
    np.testing.assert_array_equal(batch["done"], ids % 3 == 0)


@pytest.fixture
def buffer() -> ReplayBuffer:
    return cartpole()


SHM_PREFIX = f"rbpytest_{os.getpid()}_"


@pytest.fixture
def shm_name():
    """A shared-memory name unique to this test, removed afterwards if the test left it."""
    name = SHM_PREFIX + uuid.uuid4().hex[:10]
    yield name
    try:
        _core.shm_unlink(name)
    except FileNotFoundError:
        pass


@pytest.fixture(autouse=True, scope="session")
def no_shared_memory_left_behind():
    """Fail the run if any test left a shared-memory region of this run in /dev/shm."""
    yield
    if os.path.isdir("/dev/shm"):
        left = [name for name in os.listdir("/dev/shm") if name.startswith(SHM_PREFIX)]
        assert not left, f"shared-memory regions left behind: {left}"


def snapshot(buffer):
    """Size, next key and a copy of every column: what assert_unchanged compares against."""
    return buffer.size(), buffer.next_key(), {k: v.copy() for k, v in buffer.columns().items()}


def assert_unchanged(buffer, before):
    size, next_key, columns = before
    assert (buffer.size(), buffer.next_key()) == (size, next_key)
    for name, column in buffer.columns().items():
        np.testing.assert_array_equal(column, columns[name])
