"""Bad input gets a clear exception naming what was expected and what came, and changes nothing."""

import numpy as np
import pytest

from replay_buffer import BufferConfig, CapacityError, EmptyBufferError, ReplayBuffer

from conftest import assert_unchanged, cartpole, counter_transition, snapshot


@pytest.fixture
def filled():
    buffer = cartpole(capacity=8)
    for i in range(5):
        buffer.add(**counter_transition(i))
    return buffer


def good():
    return counter_transition(7)


def with_(**changes):
    row = good()
    row.update(changes)
    return row


ADD_ERRORS = [
    (with_(obs=np.zeros(3)), ValueError, "field 'obs' (float32[4]): expected shape (4,), got (3,)"),
    (with_(obs=np.zeros((1, 4))), ValueError, "expected shape (4,), got (1, 4)"),
    (
        with_(obs=np.zeros(4, np.complex64)),
        TypeError,
        "field 'obs' has dtype float32; cannot safely cast complex64",
    ),
    (with_(obs=np.array(["a", "b", "c", "d"])), TypeError, "cannot safely cast <U1"),
    (with_(obs=None), TypeError, "field 'obs' has dtype float32; cannot safely cast object"),
    (with_(action=0.5), TypeError, "field 'action' has dtype int64; got a float"),
    (
        with_(action=np.float64(1.0)),
        TypeError,
        "field 'action' has dtype int64; cannot safely cast float64",
    ),
    (with_(action=2**70), ValueError, "field 'action': value out of range for int64"),
    (with_(done=2), TypeError, "field 'done' is bool; got the int 2"),
    (with_(done=np.int64(1)), TypeError, "field 'done' has dtype bool; cannot safely cast int64"),
    (
        with_(reward=[1.0]),
        ValueError,
        "field 'reward' (float32 scalar): expected shape (), got (1,)",
    ),
]


@pytest.mark.parametrize("row, error, message", ADD_ERRORS)
def test_add_rejects_bad_values(filled, row, error, message):
    before = snapshot(filled)
    with pytest.raises(error, match=__import__("re").escape(message)):
        filled.add(**row)
    assert_unchanged(filled, before)


def test_add_rejects_unknown_missing_and_duplicate_fields(filled):
    before = snapshot(filled)
    with pytest.raises(TypeError, match="unknown field 'observation'; fields are obs, action"):
        filled.add(observation=1, **{k: v for k, v in good().items() if k != "obs"})
    with pytest.raises(TypeError, match="missing field\\(s\\) 'done'"):
        filled.add(**{k: v for k, v in good().items() if k != "done"})
    with pytest.raises(TypeError, match="field 'obs' given twice"):
        filled.add(
            np.zeros(4), obs=np.zeros(4), action=0, reward=0.0, next_obs=np.zeros(4), done=False
        )
    with pytest.raises(TypeError, match="at most 5 positional values"):
        filled.add(*good().values(), 1)
    assert_unchanged(filled, before)


def test_an_error_in_the_last_field_leaves_no_half_written_row(filled):
    before = snapshot(filled)
    with pytest.raises(ValueError):
        filled.add(**with_(done=np.zeros(2, bool)))
    assert_unchanged(filled, before)


def test_uint8_range_is_checked():
    buffer = ReplayBuffer(BufferConfig(capacity=2), fields={"pixel": {"dtype": np.uint8}})
    with pytest.raises(ValueError, match="out of range for uint8"):
        buffer.add(256)
    with pytest.raises(ValueError, match="out of range for uint8"):
        buffer.add(-1)
    buffer.add(255)
    assert buffer.sample(1)["pixel"][0] == 255


def test_safe_casts_are_accepted(filled):
    filled.add(
        obs=np.zeros(4, np.float64),
        action=np.int32(1),
        reward=np.float64(2.5),
        next_obs=[1, 2, 3, 4],
        done=np.bool_(True),
    )
    assert filled.size() == 6
    assert filled.columns()["reward"][5] == 2.5


def test_non_contiguous_arrays_are_copied(filled):
    obs = np.arange(8, dtype=np.float32)[::2]
    assert not obs.flags.c_contiguous
    filled.add(**with_(obs=obs))
    np.testing.assert_array_equal(filled.columns()["obs"][5], [0, 2, 4, 6])
    batch_obs = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(3, 2).T.copy().T)
    buffer = ReplayBuffer(BufferConfig(capacity=4), fields={"x": {"shape": (2,)}})
    buffer.add_batch(x=np.arange(12, dtype=np.float32).reshape(2, 6)[:, ::2].T)
    np.testing.assert_array_equal(buffer.columns()["x"], [[0, 6], [2, 8], [4, 10]])
    del batch_obs


def test_add_batch_rejects_mismatched_rows(filled):
    before = snapshot(filled)
    with pytest.raises(
        ValueError, match="field 'action' \\(int64 scalar\\): expected shape \\(3,\\), got \\(2,\\)"
    ):
        filled.add_batch(np.zeros((3, 4)), [0, 1], np.zeros(3), np.zeros((3, 4)), np.zeros(3, bool))
    with pytest.raises(ValueError, match="expected shape \\(n, 4\\), got \\(4,\\)"):
        filled.add_batch(np.zeros(4), [0], np.zeros(1), np.zeros((1, 4)), np.zeros(1, bool))
    with pytest.raises(ValueError, match="at least one row"):
        filled.add_batch(
            np.zeros((0, 4)),
            np.zeros(0, np.int64),
            np.zeros(0),
            np.zeros((0, 4)),
            np.zeros(0, bool),
        )
    assert_unchanged(filled, before)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_sample_rejects_non_positive_batch(filled, batch_size):
    with pytest.raises(ValueError, match=f"batch_size must be at least 1; got {batch_size}"):
        filled.sample(batch_size)


def test_sample_empty_buffer():
    with pytest.raises(EmptyBufferError, match="empty buffer"):
        cartpole().sample(1)
    assert issubclass(EmptyBufferError, ValueError)


SAMPLE_INTO_ERRORS = [
    (
        {"obs": np.empty((4, 4), np.float64)},
        TypeError,
        "'obs' must have dtype float32, got float64",
    ),
    (
        {"obs": np.empty((4, 3), np.float32)},
        ValueError,
        "'obs' must have shape (batch, 4), got (4, 3)",
    ),
    (
        {"obs": np.empty((4, 4), np.float32), "reward": np.empty(5, np.float32)},
        ValueError,
        "'reward' must have shape (4,), got (5,)",
    ),
    ({"obs": np.empty((4, 4), np.float32, order="F")}, ValueError, "'obs' must be C-contiguous"),
    ({"obs": np.empty((4, 8), np.float32)[:, ::2]}, ValueError, "'obs' must be C-contiguous"),
    ({"nope": np.empty(4)}, KeyError, "no field named 'nope'"),
    ({"obs": [[0.0] * 4]}, TypeError, "'obs' must be a numpy.ndarray, got list"),
    ({"indices": np.empty(4, np.uint64)}, TypeError, "'indices' must have dtype int64"),
    ({}, ValueError, "at least one output array"),
    ({"reward": np.empty(0, np.float32)}, ValueError, "0 rows"),
]


@pytest.mark.parametrize("out, error, message", SAMPLE_INTO_ERRORS)
def test_sample_into_rejects_bad_outputs(filled, out, error, message):
    with pytest.raises(error, match=__import__("re").escape(message)):
        filled.sample_into(out)


def test_sample_into_rejects_read_only(filled):
    out = np.empty(4, np.float32)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="'reward' is read-only"):
        filled.sample_into({"reward": out})


@pytest.mark.parametrize(
    "capacity, error", [(0, ValueError), (-5, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_config_rejects_bad_capacity(capacity, error):
    with pytest.raises(error, match="capacity"):
        BufferConfig(capacity=capacity)


def test_absurd_capacity_is_a_clear_error_not_an_oom_kill():
    with pytest.raises(CapacityError, match="physical memory"):
        ReplayBuffer(
            BufferConfig(capacity=10**12), obs_shape=(84, 84, 4), action_dim=6, obs_dtype=np.uint8
        )
    with pytest.raises(CapacityError, match="address space"):
        ReplayBuffer(BufferConfig(capacity=2**62), obs_shape=(84, 84, 4), action_dim=6)
    assert issubclass(CapacityError, MemoryError)


def test_config_rejects_unknown_strategy():
    with pytest.raises(
        ValueError, match="strategy must be one of 'uniform', 'prioritized', 'rank', got 'per'"
    ):
        BufferConfig(capacity=10, strategy="per")


@pytest.mark.parametrize("name", ["alpha", "beta", "eps"])
@pytest.mark.parametrize(
    "value, error", [(-0.1, ValueError), (float("nan"), ValueError), ("1", TypeError)]
)
def test_config_rejects_bad_exponents(name, value, error):
    with pytest.raises(error, match=name):
        BufferConfig(capacity=10, strategy="prioritized", **{name: value})


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"fields": {}}, ValueError, "non-empty mapping"),
        ({"fields": {"x": {"dtype": "complex64"}}}, TypeError, "dtype complex64 is not supported"),
        ({"fields": {"x": {"dtype": "not-a-dtype"}}}, TypeError, "is not a NumPy dtype"),
        ({"fields": {"x": {"shape": (3, 0)}}}, ValueError, "at least 1"),
        ({"fields": {"x": {"size": 3}}}, ValueError, "unknown keys ['size']"),
        ({"fields": {"bad name": {}}}, ValueError, "may only contain"),
        ({"obs_shape": (4,)}, TypeError, "give obs_shape and action_dim"),
        ({"obs_shape": (4,), "action_dim": 0}, ValueError, "action_dim must be at least 1"),
        ({"obs_shape": (4,), "action_dim": 2, "action_type": "hybrid"}, ValueError, "action_type"),
        ({"obs_shape": (4,), "action_dim": 2, "fields": {"x": {}}}, TypeError, "not both"),
    ],
)
def test_constructor_rejects_bad_fields(kwargs, error, message):
    with pytest.raises(error, match=__import__("re").escape(message)):
        ReplayBuffer(BufferConfig(capacity=4), **kwargs)
