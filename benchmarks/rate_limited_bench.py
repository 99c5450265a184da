"""A rate-limited actor/learner loop, in-process and through the replay service.

One learner samples a batch and updates its priorities, in a loop; several actors add small
batches as fast as the rate limiter (``samples_per_insert``) lets them. Prints how many learner
iterations each setup makes in the same time, and how many calls failed with ``TimeoutError``.
A service that makes the learner wait behind actors the rate limiter holds back makes far fewer
iterations than in-process, and its actors time out.

    python benchmarks/rate_limited_bench.py [--seconds 12] [--actors 6] [--timeout 2]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np

from replay_buffer import BufferConfig, ReplayBuffer
from replay_buffer.service import connect

CAPACITY = 100_000
ACTOR_BATCH = 16
LEARNER_BATCH = 64
SAMPLES_PER_INSERT = 4.0
MIN_SIZE = 1_000


def rows(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    obs = rng.standard_normal((n, 4)).astype(np.float32)
    return {
        "obs": obs,
        "action": rng.integers(0, 2, n),
        "reward": np.ones(n, np.float32),
        "next_obs": obs,
        "done": np.zeros(n, bool),
    }


def run_loop(
    open_actor: Any, open_learner: Any, actors: int, seconds: float
) -> tuple[int, int, int]:
    """Run the learner and the actors for ``seconds``; return (iterations, adds, timeouts)."""
    stop = threading.Event()
    counts = {"adds": 0, "timeouts": 0}
    lock = threading.Lock()

    def actor(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with open_actor() as buffer:
            while not stop.is_set():
                try:
                    buffer.add_batch(**rows(ACTOR_BATCH, rng))
                    with lock:
                        counts["adds"] += 1
                except TimeoutError:
                    with lock:
                        counts["timeouts"] += 1

    threads = [threading.Thread(target=actor, args=(i,)) for i in range(actors)]
    for thread in threads:
        thread.start()
    iterations = 0
    rng = np.random.default_rng(99)
    with open_learner() as learner:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                batch = learner.sample(LEARNER_BATCH)
            except TimeoutError:
                with lock:
                    counts["timeouts"] += 1
                continue
            learner.update_priorities(batch["indices"], rng.random(LEARNER_BATCH))
            iterations += 1
        stop.set()
        # Actors held back by the limiter are released by samples: keep sampling until they end.
        while any(thread.is_alive() for thread in threads):
            try:
                learner.sample(LEARNER_BATCH)
            except TimeoutError:
                pass
    for thread in threads:
        thread.join()
    return iterations, counts["adds"], counts["timeouts"]


class _Local:
    """A local buffer shared by threads, closed by nobody (a ``with`` that does nothing)."""

    def __init__(self, buffer: ReplayBuffer) -> None:
        self.buffer = buffer

    def __enter__(self) -> ReplayBuffer:
        return self.buffer

    def __exit__(self, *exc: object) -> None:
        pass


def config(timeout: float) -> BufferConfig:
    return BufferConfig(
        capacity=CAPACITY,
        strategy="prioritized",
        seed=0,
        min_size_to_sample=MIN_SIZE,
        samples_per_insert=SAMPLES_PER_INSERT,
        rate_limit_timeout=timeout,
    )


def start_server(timeout: float, tmp: str) -> tuple[subprocess.Popen[str], str]:
    sock = os.path.join(tmp, "rb.sock")
    command = [
        sys.executable, "-m", "replay_buffer.tools.serve",
        "--capacity", str(CAPACITY), "--strategy", "prioritized", "--seed", "0",
        "--obs-shape", "4", "--action-dim", "2",
        "--min-size-to-sample", str(MIN_SIZE), "--samples-per-insert", str(SAMPLES_PER_INSERT),
        "--rate-limit-timeout", str(timeout),
        "--listen", f"unix://{sock}", "--status-interval", "0",
    ]  # fmt: skip
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert server.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = server.stderr.readline()
        if re.search(r"listening on unix://", line):
            return server, f"unix://{sock}"
        if not line and server.poll() is not None:
            break
    server.kill()
    raise RuntimeError("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--actors", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=2.0, help="rate_limit_timeout, seconds")
    args = parser.parse_args()
    print(
        f"learner: sample {LEARNER_BATCH} + update_priorities; {args.actors} actors: add_batch "
        f"{ACTOR_BATCH}; samples_per_insert {SAMPLES_PER_INSERT}, min size {MIN_SIZE}, "
        f"timeout {args.timeout} s, {args.seconds} s per setup"
    )
    buffer = ReplayBuffer(config(args.timeout), obs_shape=(4,), action_dim=2)
    local = run_loop(lambda: _Local(buffer), lambda: _Local(buffer), args.actors, args.seconds)
    with tempfile.TemporaryDirectory(prefix="rbbench") as tmp:
        server, url = start_server(args.timeout, tmp)
        try:
            remote = run_loop(lambda: connect(url), lambda: connect(url), args.actors, args.seconds)
        finally:
            server.terminate()
            server.wait(30)
    print(f"{'setup':<12} {'learner iterations':>18} {'actor add_batch calls':>22} {'timeouts':>9}")
    for name, (iterations, adds, timeouts) in (("in-process", local), ("service", remote)):
        print(f"{name:<12} {iterations:>18,} {adds:>22,} {timeouts:>9,}")


if __name__ == "__main__":
    main()
