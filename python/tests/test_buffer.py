import numpy as np
import pytest

from replay_buffer import BufferConfig, EmptyBufferError, ReplayBuffer

from conftest import assert_rows_consistent, cartpole, counter_transition


def test_specification_api_atari_sized():
    config = BufferConfig(capacity=1_000, strategy="uniform")
    buffer = ReplayBuffer(config, obs_shape=(84, 84, 4), action_dim=6, obs_dtype=np.uint8)
    rng = np.random.default_rng(0)
    for i in range(40):
        obs = rng.integers(0, 256, size=(84, 84, 4), dtype=np.uint8)
        buffer.add(obs, i % 6, 1.0, obs, False)
    batch = buffer.sample(batch_size=32)
    assert set(batch) == {"obs", "action", "reward", "next_obs", "done", "indices"}
    assert batch["obs"].shape == (32, 84, 84, 4) and batch["obs"].dtype == np.uint8
    assert batch["action"].shape == (32,) and batch["action"].dtype == np.int64
    assert batch["reward"].dtype == np.float32
    assert batch["done"].dtype == np.bool_
    assert batch["indices"].dtype == np.int64
    np.testing.assert_array_equal(batch["action"], batch["indices"] % 6)


def test_continuous_actions_are_float_vectors():
    buffer = ReplayBuffer(
        BufferConfig(capacity=10), obs_shape=3, action_dim=2, action_type="continuous"
    )
    assert buffer.fields["action"] == {"shape": (2,), "dtype": np.dtype(np.float32)}
    buffer.add(np.zeros(3), np.array([0.5, -0.5]), 0.0, np.zeros(3), True)
    np.testing.assert_array_equal(buffer.sample(1)["action"], [[0.5, -0.5]])


def test_discrete_actions_are_int64_scalars(buffer):
    assert buffer.fields["action"] == {"shape": (), "dtype": np.dtype(np.int64), "num_values": 2}


def test_general_fields():
    buffer = ReplayBuffer(
        BufferConfig(capacity=8),
        fields={
            "state": {"shape": (2, 3), "dtype": "float64"},
            "goal": {"shape": 2},
            "t": {"dtype": np.uint16},
        },
    )
    assert buffer.fields == {
        "state": {"shape": (2, 3), "dtype": np.dtype("float64")},
        "goal": {"shape": (2,), "dtype": np.dtype("float32")},
        "t": {"shape": (), "dtype": np.dtype("uint16")},
    }
    buffer.add(state=np.ones((2, 3)), goal=[1, 2], t=7)
    batch = buffer.sample(2)
    np.testing.assert_array_equal(batch["t"], [7, 7])
    np.testing.assert_array_equal(batch["goal"], [[1, 2], [1, 2]])


def test_add_positional_and_by_name_are_the_same(buffer):
    t = counter_transition(3)
    assert buffer.add(t["obs"], t["action"], t["reward"], t["next_obs"], t["done"]) == 0
    assert buffer.add(**t) == 1
    for name, column in buffer.columns().items():
        np.testing.assert_array_equal(column[0], column[1], err_msg=name)


def test_size_capacity_len_full_and_wraparound():
    buffer = cartpole(capacity=5)
    assert (buffer.size(), len(buffer), buffer.capacity(), buffer.is_full()) == (0, 0, 5, False)
    for i in range(7):
        buffer.add(**counter_transition(i))
    assert (buffer.size(), len(buffer), buffer.is_full(), buffer.next_key()) == (5, 5, True, 7)
    batch = buffer.sample(500)
    assert_rows_consistent(batch)
    assert set(batch["indices"].tolist()) == {2, 3, 4, 5, 6}
    np.testing.assert_array_equal(batch["reward"], batch["indices"])


def test_add_batch_matches_single_adds():
    one, many = cartpole(capacity=6), cartpole(capacity=6)
    rows = [counter_transition(i) for i in range(9)]
    for row in rows:
        one.add(**row)
    stacked = {name: np.stack([np.asarray(r[name]) for r in rows]) for name in rows[0]}
    assert many.add_batch(**stacked) == 0
    assert many.next_key() == one.next_key() == 9
    for name, column in one.columns().items():
        np.testing.assert_array_equal(many.columns()[name], column)


def test_add_batch_positional():
    buffer = cartpole()
    first = buffer.add_batch(
        np.zeros((3, 4)), [0, 1, 0], [1.0, 2.0, 3.0], np.ones((3, 4)), [True, False, True]
    )
    assert first == 0 and len(buffer) == 3


def test_sample_into_fills_caller_arrays_without_allocating(buffer):
    for i in range(20):
        buffer.add(**counter_transition(i))
    out = {
        "obs": np.empty((16, 4), np.float32),
        "action": np.empty(16, np.int64),
        "reward": np.empty(16, np.float32),
        "next_obs": np.empty((16, 4), np.float32),
        "done": np.empty(16, np.bool_),
        "indices": np.full(16, -1, np.int64),
    }
    ids = {name: id(array) for name, array in out.items()}
    assert buffer.sample_into(out) is out
    assert {name: id(array) for name, array in out.items()} == ids
    assert_rows_consistent(out)
    np.testing.assert_array_equal(out["reward"], out["indices"])


def test_sample_into_a_subset_of_fields(buffer):
    buffer.add(**counter_transition(5))
    out = {"reward": np.zeros(4, np.float32)}
    buffer.sample_into(out)
    np.testing.assert_array_equal(out["reward"], [5, 5, 5, 5])


def test_same_seed_same_batches():
    def batches(seed):
        buffer = cartpole(capacity=1000, seed=seed)
        for i in range(1000):
            buffer.add(**counter_transition(i))
        return [buffer.sample(32)["indices"].tolist() for _ in range(3)]

    assert batches(11) == batches(11)
    assert batches(11) != batches(12)


def test_sampling_is_uniform():
    buffer = cartpole(capacity=50, seed=3)
    for i in range(75):
        buffer.add(**counter_transition(i))
    counts = np.zeros(50)
    for _ in range(100):
        np.add.at(counts, buffer.sample(500)["indices"] - 25, 1)
    expected = counts.sum() / 50
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 110  # chi-square, 49 degrees of freedom: p ~ 1e-6


def test_clear_empties_and_keys_keep_growing(buffer):
    for i in range(10):
        buffer.add(**counter_transition(i))
    buffer.clear()
    assert len(buffer) == 0
    with pytest.raises(EmptyBufferError):
        buffer.sample(1)
    assert buffer.add(**counter_transition(1)) == 10
    assert buffer.sample(3)["indices"].tolist() == [10, 10, 10]


def test_columns_are_read_only_zero_copy_views(buffer):
    buffer.add(**counter_transition(2))
    columns = buffer.columns()
    obs = columns["obs"]
    assert obs.shape == (1, 4) and not obs.flags.writeable and obs.flags.c_contiguous
    assert obs.ctypes.data % 64 == 0
    buffer.add(**counter_transition(9))  # the view sees later writes to its rows...
    assert buffer.columns()["obs"].ctypes.data == obs.ctypes.data  # ...and is the same memory
    with pytest.raises(ValueError):
        obs[0, 0] = 1.0
    del buffer  # the view keeps the buffer alive
    np.testing.assert_array_equal(obs[0], [2, 3, 4, 5])


def test_repr(buffer):
    assert repr(buffer).startswith("ReplayBuffer(0/100, strategy='uniform', obs: float32[4]")


def test_memory_overhead_is_small():
    buffer = cartpole(capacity=1_000_000)
    raw = (4 * 4 + 8 + 4 + 4 * 4 + 1) * 1_000_000
    assert buffer.region_bytes() / raw - 1 < 0.10
