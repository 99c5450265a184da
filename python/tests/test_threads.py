"""Python threads adding and sampling at once see only whole transitions.

Copies run with the GIL released, so these threads really overlap inside the C++ copies. Rows are
large (32 KiB observations) and the ring tiny, so writers lap readers constantly.
"""

import threading

import numpy as np

from replay_buffer import BufferConfig, ReplayBuffer

OBS = 8192


def rows(first: int, n: int) -> dict:
    ids = np.arange(first, first + n)
    obs = (ids[:, None] * 1000 + np.arange(OBS)).astype(np.float32)
    return {"obs": obs, "id": ids, "next_obs": obs + 1, "flag": ids % 2 == 1}


def check(batch: dict) -> int:
    ids = batch["id"]
    want = (ids[:, None] * 1000 + np.arange(OBS)).astype(np.float32)
    bad = ~(batch["obs"] == want).all(axis=1)
    bad |= ~(batch["next_obs"] == want + 1).all(axis=1)
    bad |= batch["flag"] != (ids % 2 == 1)
    return int(bad.sum())


def test_threads_never_see_a_torn_transition():
    buffer = ReplayBuffer(
        BufferConfig(capacity=16, seed=0),
        fields={
            "obs": {"shape": (OBS,), "dtype": np.float32},
            "id": {"dtype": np.int64},
            "next_obs": {"shape": (OBS,), "dtype": np.float32},
            "flag": {"dtype": np.bool_},
        },
    )
    buffer.add_batch(**rows(0, 16))
    start = threading.Barrier(4)
    stop = threading.Event()
    torn: list[int] = []
    checked: list[int] = []

    def single_writer() -> None:
        start.wait()
        for i in range(10_000):
            row = {k: v[0] for k, v in rows(100_000 + i, 1).items()}
            buffer.add(**row)
        stop.set()

    def batch_writer() -> None:
        start.wait()
        for i in range(2_000):
            buffer.add_batch(**rows(1_000_000 + 7 * i, 7))

    def reader(into: bool) -> None:
        out = {
            "obs": np.empty((32, OBS), np.float32),
            "id": np.empty(32, np.int64),
            "next_obs": np.empty((32, OBS), np.float32),
            "flag": np.empty(32, np.bool_),
        }
        start.wait()
        bad = seen = 0
        while not stop.is_set() or seen < 1600:
            batch = buffer.sample_into(out) if into else buffer.sample(32)
            bad += check(batch)
            seen += 32
        torn.append(bad)
        checked.append(seen)

    threads = [
        threading.Thread(target=single_writer),
        threading.Thread(target=batch_writer),
        threading.Thread(target=reader, args=(False,)),
        threading.Thread(target=reader, args=(True,)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torn == [0, 0]
    assert min(checked) >= 1600
    assert buffer.next_key() == 16 + 10_000 + 2_000 * 7
