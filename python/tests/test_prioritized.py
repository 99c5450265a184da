"""Prioritized replay from Python: proportional and rank-based."""

import threading

import numpy as np
import pytest

from replay_buffer import BufferConfig, ReplayBuffer


def make(strategy="prioritized", capacity=100, alpha=0.6, beta=0.4, eps=1e-6, seed=0):
    config = BufferConfig(
        capacity=capacity, strategy=strategy, alpha=alpha, beta=beta, eps=eps, seed=seed
    )
    return ReplayBuffer(config, fields={"id": {"dtype": np.int64}})


def filled(n, **kwargs):
    buffer = make(capacity=kwargs.pop("capacity", n), **kwargs)
    buffer.add_batch(id=np.arange(n))
    return buffer


def frequencies(buffer, n, draws=200_000):
    counts = np.zeros(n)
    for _ in range(draws // 500):
        np.add.at(counts, buffer.sample(500)["indices"], 1)
    return counts / counts.sum()


def chi_square_ok(observed_freq, expected_p, draws):
    expected = expected_p * draws
    keep = expected >= 5
    chi2 = (((observed_freq * draws)[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    df = keep.sum() - 1
    return chi2 < df + 6 * np.sqrt(2 * df)


@pytest.mark.parametrize("strategy", ["prioritized", "rank"])
def test_sample_returns_weights_and_keys(strategy):
    buffer = filled(50, strategy=strategy)
    batch = buffer.sample(32)
    assert set(batch) == {"id", "indices", "weights"}
    assert batch["weights"].dtype == np.float32 and batch["weights"].shape == (32,)
    np.testing.assert_array_equal(batch["id"], batch["indices"])
    # All new transitions share the max priority: every weight is 1.
    np.testing.assert_allclose(
        batch["weights"], 1.0, rtol=1e-6
    ) if strategy == "prioritized" else None
    assert buffer.strategy == strategy


def test_proportional_distribution_and_weights_match_numpy():
    n, alpha, beta, eps = 40, 0.7, 0.5, 0.01
    buffer = filled(n, alpha=alpha, beta=beta, eps=eps)
    td = np.linspace(-3, 5, n)
    assert buffer.update_priorities(np.arange(n), td) == n
    p = (np.abs(td) + eps) ** alpha
    probabilities = p / p.sum()
    assert chi_square_ok(frequencies(buffer, n), probabilities, 200_000)
    batch = buffer.sample(256)
    expected = (n * probabilities[batch["indices"]]) ** -beta / (n * probabilities.min()) ** -beta
    np.testing.assert_allclose(batch["weights"], expected, rtol=1e-5)


def test_rank_distribution_and_weights_match_numpy():
    n, alpha, beta = 60, 0.8, 1.0
    buffer = filled(n, strategy="rank", alpha=alpha, beta=beta)
    td = np.random.default_rng(3).permutation(n).astype(float) + 1
    buffer.update_priorities(np.arange(n), td)
    ranks = np.empty(n)
    ranks[np.argsort(-td)] = np.arange(1, n + 1)
    p = ranks**-alpha
    probabilities = p / p.sum()
    assert chi_square_ok(frequencies(buffer, n), probabilities, 200_000)
    batch = buffer.sample(128)
    expected = probabilities.min() / probabilities[batch["indices"]]  # beta = 1
    np.testing.assert_allclose(batch["weights"], expected, rtol=1e-5)


def test_priorities_keyword_uses_values_as_given():
    buffer = filled(3, alpha=1.0, eps=0.0)
    buffer.update_priorities([0, 1, 2], priorities=[0.0, 1.0, 3.0])
    freq = frequencies(buffer, 3, 40_000)
    assert freq[0] == 0
    assert abs(freq[2] - 0.75) < 0.02


def test_stale_keys_are_ignored():
    buffer = filled(4, alpha=1.0, eps=0.0)
    buffer.add_batch(id=np.array([4, 5]))  # overwrite the slots of keys 0 and 1
    assert buffer.update_priorities([0, 1, 2, 3], [1e6, 1e6, 1.0, 1.0]) == 2
    freq = frequencies(buffer, 6, 40_000)
    assert abs(freq[4] + freq[5] - 0.5) < 0.03  # not swamped by the stale 1e6


def test_new_transitions_get_the_current_max():
    buffer = filled(3, capacity=10, alpha=1.0, eps=0.0)
    buffer.update_priorities([0, 1, 2], [1.0, 5.0, 2.0])
    buffer.add(id=3)
    freq = frequencies(buffer, 4, 80_000)
    np.testing.assert_allclose(freq, np.array([1, 5, 2, 5]) / 13, atol=0.01)


def test_beta_is_settable_and_overridable():
    buffer = filled(10, beta=0.4)
    buffer.update_priorities(np.arange(10), np.arange(10) + 1.0)
    assert buffer.beta == 0.4
    buffer.beta = 1.0
    assert buffer.beta == 1.0
    with pytest.raises(ValueError, match="beta must be finite and >= 0"):
        buffer.beta = -1
    assert buffer.beta == 1.0
    np.testing.assert_array_equal(buffer.sample(20, beta=0.0)["weights"], 1.0)
    assert buffer.sample(20)["weights"].min() < 1.0


def test_sample_into_fills_weights():
    buffer = filled(10)
    out = {"indices": np.empty(8, np.int64), "weights": np.zeros(8, np.float32)}
    buffer.sample_into(out)
    assert (out["weights"] > 0).all()


def test_samples_are_deterministic_for_a_seed():
    def draw():
        buffer = filled(100, seed=5)
        buffer.update_priorities(np.arange(100), np.arange(100.0))
        return [buffer.sample(16)["indices"].tolist() for _ in range(3)]

    assert draw() == draw()


def same_state(a, b):
    return all(np.array_equal(a.sample(64)["indices"], b.sample(64)["indices"]) for _ in range(5))


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda b: b.update_priorities([0, 1], [1.0, np.nan]), ValueError, "td_errors[1] is nan"),
        (lambda b: b.update_priorities([0, 1], [1.0, np.inf]), ValueError, "must be finite"),
        (lambda b: b.update_priorities([0, 1], priorities=[1.0, -2.0]), ValueError, "must be >= 0"),
        (lambda b: b.update_priorities([0, 1], [1.0]), ValueError, "got 2 indices and 1 values"),
        (
            lambda b: b.update_priorities([0, 99], [1.0, 1.0]),
            IndexError,
            "indices[1] is 99, a key never handed out",
        ),
        (lambda b: b.update_priorities([-1], [1.0]), IndexError, "keys are never negative"),
        (lambda b: b.update_priorities([0.5], [1.0]), TypeError, "cannot safely cast float64"),
        (lambda b: b.update_priorities([[0]], [1.0]), ValueError, "must be 1-dimensional"),
        (lambda b: b.update_priorities([0], ["x"]), TypeError, "cannot safely cast <U1"),
        (lambda b: b.update_priorities([0]), TypeError, "exactly one"),
        (lambda b: b.update_priorities([0], [1.0], priorities=[1.0]), TypeError, "exactly one"),
        (lambda b: b.sample(4, beta=-1.0), ValueError, "beta must be finite"),
    ],
)
def test_bad_updates_change_nothing(call, error, message):
    buffer, twin = filled(10, seed=1), filled(10, seed=1)
    for b in (buffer, twin):
        b.update_priorities(np.arange(10), np.arange(10.0))
    with pytest.raises(error, match=__import__("re").escape(message)):
        call(buffer)
    assert same_state(buffer, twin)


def test_uniform_buffers_refuse_priorities():
    buffer = ReplayBuffer(BufferConfig(capacity=4), fields={"id": {"dtype": np.int64}})
    buffer.add(id=1)
    with pytest.raises(ValueError, match="update_priorities needs a prioritized buffer"):
        buffer.update_priorities([0], [1.0])
    with pytest.raises(ValueError, match="need a prioritized buffer"):
        buffer.sample(2, beta=0.5)
    with pytest.raises(KeyError, match="no field named 'weights'"):
        buffer.sample_into({"weights": np.empty(2, np.float32)})


def test_all_zero_priorities_fall_back_to_uniform():
    buffer = filled(4, eps=0.0)
    buffer.update_priorities(np.arange(4), np.zeros(4))
    freq = frequencies(buffer, 4, 40_000)
    np.testing.assert_allclose(freq, 0.25, atol=0.02)


def test_threads_add_sample_and_update_together():
    buffer = filled(64, capacity=64)
    stop = threading.Event()
    bad = []

    def writer():
        for start in range(64, 20_000, 8):
            buffer.add_batch(id=np.arange(start, start + 8))
        stop.set()

    def learner():
        rounds = 0
        while not stop.is_set() or rounds < 50:
            batch = buffer.sample(32)
            if not np.array_equal(batch["id"], batch["indices"]):
                bad.append(batch)
            buffer.update_priorities(batch["indices"], batch["id"] % 7)
            rounds += 1

    threads = [
        threading.Thread(target=writer),
        threading.Thread(target=learner),
        threading.Thread(target=learner),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad
