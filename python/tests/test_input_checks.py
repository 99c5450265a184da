"""Inputs that used to crash, mislead or pass silently: now each fails clearly, changing nothing."""

import numpy as np
import pytest

from replay_buffer import BufferConfig, CapacityError, EmptyBufferError, ReplayBuffer, _core

from conftest import assert_unchanged, cartpole, counter_transition, snapshot


@pytest.fixture
def filled():
    buffer = cartpole(capacity=8)
    for i in range(5):
        buffer.add(**counter_transition(i))
    return buffer


@pytest.mark.parametrize("n", [2**62, 2**63 - 1, 2**40])
def test_huge_sample_sizes_fail_before_allocating(filled, n):
    # 2**62 rows overflowed a size computation and wrote past a 64-byte block (SIGSEGV).
    with pytest.raises(CapacityError, match="batch of"):
        filled.sample(n)
    assert filled.sampled() == 0


@pytest.mark.parametrize("n", [32.0, "32", True, None, 3.5])
def test_batch_sizes_must_be_ints(filled, n):
    with pytest.raises(TypeError, match="batch_size must be an int"):
        filled.sample(n)
    assert filled.sample(np.int64(3))["obs"].shape == (3, 4)


def test_discrete_actions_are_checked_against_action_dim(filled):
    before = snapshot(filled)
    for bad in (2, -1, 99):
        with pytest.raises(ValueError, match=r"field 'action': value .* outside \[0, 2\)"):
            filled.add(**{**counter_transition(9), "action": bad})
    batch = {k: np.stack([np.asarray(v)] * 3) for k, v in counter_transition(9).items()}
    batch["action"] = np.array([0, 1, 2])
    with pytest.raises(ValueError, match=r"value 2 \(row 2\) is outside \[0, 2\)"):
        filled.add_batch(**batch)
    assert_unchanged(filled, before)


def test_python_ints_go_into_small_integer_fields_by_value():
    fields = {"obs": {"shape": 3, "dtype": np.uint8}}
    buffer = ReplayBuffer(BufferConfig(capacity=4, seed=0), fields=fields)
    buffer.add(obs=[1, 2, 255])
    np.testing.assert_array_equal(buffer.sample(1)["obs"][0], [1, 2, 255])
    with pytest.raises(ValueError, match=r"field 'obs' \(uint8\[3\]\): value 300 is out of range"):
        buffer.add(obs=[1, 2, 300])
    with pytest.raises(ValueError, match="value -1 is out of range"):
        buffer.add(obs=(-1, 2, 3))
    with pytest.raises(TypeError, match="cannot safely cast"):
        buffer.add(obs=np.array([1, 2, 3], dtype=np.int64))  # an array keeps NumPy's rules
    assert buffer.size() == 1


def test_beta_belongs_to_prioritized_buffers(filled):
    with pytest.raises(ValueError, match="beta is the importance-weight exponent"):
        filled.beta = 0.5


def test_priorities_whose_sum_would_overflow_are_rejected():
    config = BufferConfig(capacity=4, strategy="prioritized", alpha=1.0, eps=0.0, seed=1)
    buffer = ReplayBuffer(config, obs_shape=(4,), action_dim=2)
    for i in range(4):
        buffer.add(**counter_transition(i))
    keys = np.arange(4)
    before = buffer.priorities(keys)
    with pytest.raises(ValueError, match="stores at most"):
        buffer.update_priorities(keys, np.full(4, 1.7e308))
    np.testing.assert_array_equal(buffer.priorities(keys), before)
    assert np.isfinite(buffer.sample(64)["weights"]).all()


def test_a_failed_sample_counts_nothing():
    buffer = cartpole(capacity=8)
    with pytest.raises(EmptyBufferError):
        buffer.sample(32)
    assert buffer.sampled() == 0


def test_strategy_names_come_from_the_core():
    assert _core.STRATEGIES == ("uniform", "prioritized", "rank")
    with pytest.raises(ValueError, match="'uniform', 'prioritized', 'rank'"):
        BufferConfig(capacity=4, strategy="proportional")


def test_options_round_trip_through_the_core():
    config = BufferConfig(
        capacity=64, strategy="rank", alpha=0.5, beta=0.3, eps=0.01, seed=9,
        min_size_to_sample=2, samples_per_insert=4.0, error_buffer=300.0, rate_limit_timeout=None,
    )  # fmt: skip
    buffer = ReplayBuffer(config, obs_shape=(4,), action_dim=2)
    assert BufferConfig.from_core_options(buffer.options) == config
    with pytest.raises(KeyError, match="unknown buffer option 'colour'"):
        _core.Buffer([("x", "float32", (), 0)], {**config.core_options(), "colour": 1})
    options = config.core_options()
    del options["eps"]
    with pytest.raises(KeyError, match="missing buffer option 'eps'"):
        _core.Buffer([("x", "float32", (), 0)], options)
