"""Rows and worker processes for the shared-memory tests.

Every row derives from one id, so a sampled row can be checked on its own: ``obs`` is
``id * 8 + [0..7]`` and ``check`` is ``id ^ MASK``. Workers are module-level functions so that
spawned processes can import them.
"""

import os
import signal
import time

import numpy as np

from replay_buffer import BufferConfig, ReplayBuffer

OBS = 8
MASK = 0x5A5A_5A5A
FIELDS = {
    "id": {"dtype": np.int64},
    "obs": {"shape": (OBS,), "dtype": np.int64},
    "check": {"dtype": np.int64},
}


def rows(ids) -> dict:
    ids = np.asarray(ids, dtype=np.int64)
    return {"id": ids, "obs": ids[:, None] * OBS + np.arange(OBS), "check": ids ^ MASK}


def torn(batch: dict) -> int:
    """How many rows of a sampled batch are not whole."""
    ids = batch["id"]
    bad = ~(batch["obs"] == ids[:, None] * OBS + np.arange(OBS)).all(axis=1)
    bad |= batch["check"] != ids ^ MASK
    return int(bad.sum())


def make(
    name: str, capacity: int = 64, strategy: str = "uniform", keep: bool = False, **config
) -> ReplayBuffer:
    config = BufferConfig(capacity=capacity, strategy=strategy, seed=1, **config)
    return ReplayBuffer(config, fields=FIELDS, shm_name=name, shm_keep=keep)


def priority_of(ids):
    """A priority in [0.25, 0.75) that differs between ids a multiple of a small capacity apart."""
    return 0.25 + 0.5 * ((np.asarray(ids, dtype=np.float64) * 0.6180339887498949) % 1.0)


# Workers. Each returns through its exit code: 0 when everything it checked held.


def writer(name: str, first: int, count: int, batch: int, start=None) -> None:
    """Attach and add ids first .. first + count - 1, one at a time (batch 1) or in batches."""
    buffer = ReplayBuffer.attach(name)
    if start is not None:
        start.wait()
    for begin in range(first, first + count, batch):
        ids = np.arange(begin, min(begin + batch, first + count))
        if batch == 1:
            buffer.add(**{k: v[0] for k, v in rows(ids).items()})
        else:
            buffer.add_batch(**rows(ids))
    buffer.close()


def reader(name: str, batches: int, result, start=None, until=None) -> None:
    """Attach and sample `batches` batches (or until `until` is set), counting torn rows."""
    buffer = ReplayBuffer.attach(name)
    if start is not None:
        start.wait()
    bad = seen = 0
    while seen < batches or (until is not None and not until.is_set()):
        bad += torn(buffer.sample(32))
        seen += 1
    result.put((bad, seen))
    buffer.close()


def learner(name: str, stop, result, start=None) -> None:
    """Sample, check id == key (one actor from an empty buffer), set priorities from the id."""
    buffer = ReplayBuffer.attach(name)
    if start is not None:
        start.wait()
    bad = rounds = 0
    while not stop.is_set() or rounds < 50:
        batch = buffer.sample(32)
        bad += torn(batch) + int((batch["id"] != batch["indices"]).sum())
        keys = batch["indices"][batch["indices"] % 8 != 0]  # multiples of 8 keep priority 1
        buffer.update_priorities(keys, priorities=priority_of(keys))
        stored = buffer.priorities(keys)
        # Just set, unless overwritten since: then NaN, never another occupant's value.
        bad += int((~np.isnan(stored) & (stored != priority_of(keys))).sum())
        rounds += 1
    result.put((bad, rounds))
    buffer.close()


def busy(name: str, kind: str, seed: int, inherited=None) -> None:
    """Work on the buffer until killed: the victims of the kill test."""
    buffer = inherited if inherited is not None else ReplayBuffer.attach(name)
    rng = np.random.default_rng(seed)
    first = (seed + 1) * 10**9
    while True:
        if kind == "add":
            buffer.add(**{k: v[0] for k, v in rows([first]).items()})
            first += 1
        elif kind == "add_batch":
            n = int(rng.integers(1, 150))  # sometimes more than the capacity
            buffer.add_batch(**rows(np.arange(first, first + n)))
            first += n
        else:
            # Large batches keep the priority lock held for a while: kills land mid-update.
            batch = buffer.sample(512)
            if torn(batch):
                os._exit(3)
            buffer.update_priorities(batch["indices"], priorities=priority_of(batch["id"]))


def steady_writer(name: str, stop, progress) -> None:
    """A writer that must keep going while processes sharing the buffer die mid-write."""
    buffer = ReplayBuffer.attach(name)
    first = 5 * 10**12
    while not stop.is_set():
        buffer.add_batch(**rows(np.arange(first, first + 4)))
        buffer.add(**{k: v[0] for k, v in rows([first + 4]).items()})
        first += 5
        progress.value += 1
    buffer.close()


def creator(name: str, keep: bool, ready, release) -> None:
    """Create a shared buffer, fill it, and exit when released (the creator-exits-first tests)."""
    buffer = make(name, keep=keep)
    buffer.add_batch(**rows(np.arange(64)))
    ready.set()
    release.wait()


def crashing_creator(name: str, ready) -> None:
    """Create a shared buffer and die without closing it."""
    buffer = make(name)
    buffer.add_batch(**rows(np.arange(10)))
    ready.set()
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)


def writer_into(buffer: ReplayBuffer, count: int) -> None:
    """Add ids 0 .. count - 1 to a buffer received from the parent (pickled as its name)."""
    for begin in range(0, count, 10):
        buffer.add_batch(**rows(np.arange(begin, min(begin + 10, count))))
