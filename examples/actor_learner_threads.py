"""Actors and a learner in one process: actor threads add, the learner samples prioritized batches.

Every copy into and out of the buffer runs with the GIL released, so the threads overlap in the
C++ copies. The "environment" and the "TD errors" are stand-ins; the buffer calls are the real API.

    python examples/actor_learner_threads.py
"""

from __future__ import annotations

import threading
import time

import numpy as np

from replay_buffer import BufferConfig, ReplayBuffer

OBS_SHAPE = (8,)
ACTIONS = 4


def actor(buffer: ReplayBuffer, seed: int, steps: int) -> None:
    """Play a random walk and add each transition as it happens."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal(OBS_SHAPE).astype(np.float32)
    for step in range(steps):
        action = int(rng.integers(ACTIONS))
        next_obs = obs + rng.standard_normal(OBS_SHAPE).astype(np.float32) * 0.1
        done = step % 200 == 199
        buffer.add(obs, action, float(-np.abs(next_obs).sum()), next_obs, done)
        obs = rng.standard_normal(OBS_SHAPE).astype(np.float32) if done else next_obs


def learner(buffer: ReplayBuffer, updates: int, batch_size: int) -> float:
    """Sample, compute stand-in TD errors, weight the loss, update priorities; anneal beta."""
    while len(buffer) < batch_size:
        time.sleep(0.001)
    loss = 0.0
    for update in range(updates):
        buffer.beta = 0.4 + 0.6 * update / updates  # anneal towards 1
        batch = buffer.sample(batch_size)
        td_errors = batch["reward"] - batch["next_obs"].mean(axis=1)
        loss = float((batch["weights"] * td_errors**2).mean())
        buffer.update_priorities(batch["indices"], td_errors)
    return loss


def main() -> None:
    """Run two actors and one learner against one prioritized buffer."""
    config = BufferConfig(capacity=50_000, strategy="prioritized", alpha=0.6, beta=0.4, seed=0)
    buffer = ReplayBuffer(config, obs_shape=OBS_SHAPE, action_dim=ACTIONS)
    actors = [threading.Thread(target=actor, args=(buffer, seed, 20_000)) for seed in (1, 2)]
    start = time.perf_counter()
    for thread in actors:
        thread.start()
    loss = learner(buffer, updates=5_000, batch_size=64)
    for thread in actors:
        thread.join()
    elapsed = time.perf_counter() - start
    print(f"{buffer!r}")
    print(f"2 actors added {buffer.next_key():,} transitions, the learner made 5,000 updates of 64")
    print(f"in {elapsed:.2f} s; last weighted loss {loss:.3f}, beta {buffer.beta:.2f}")


if __name__ == "__main__":
    main()
