"""Shared-memory throughput: one buffer used from other processes, against the same in-process.

For each operation (single add, add_batch of 256, uniform sample of 32, prioritized sample of 32
followed by update_priorities of those 32) it measures operations per second

- in-process, on a private buffer (the baseline) and on a shared one (its creator using it);
- from 1 other process that attached to the shared buffer;
- from 2 other processes at once (their total);

and the same for cpprb's MPReplayBuffer / MPPrioritizedReplayBuffer when cpprb is installed (its
buffers are handed to forked workers). Every process runs its operation in a loop for
``--seconds`` after all of them have started, timing itself; the workload is the CartPole
transition (obs float32[4], action int64, reward float32, next_obs float32[4], done bool) in a
full buffer of ``--capacity``.

Usage: python benchmarks/shm_bench.py [--seconds 1.0] [--capacity 1000000] [--no-cpprb]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from replay_buffer import BufferConfig, ReplayBuffer
from replay_buffer.tools.bench_common import WORKLOADS, cpprb_fields

FORK = mp.get_context("fork")
BATCH_ADD = 256
BATCH_SAMPLE = 32
OPERATIONS = ("add", "add_batch", "sample", "sample+update")


def cartpole_fields() -> dict[str, dict[str, Any]]:
    """The CartPole transition, as replay_buffer and cpprb both describe fields."""
    return cpprb_fields(WORKLOADS["cartpole"])


def transitions(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` random CartPole transitions, one array per field."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, 4)).astype(np.float32)
    return {
        "obs": obs,
        "action": rng.integers(0, 2, n),
        "reward": rng.standard_normal(n).astype(np.float32),
        "next_obs": obs + 1,
        "done": rng.random(n) < 0.05,
    }


class Ours:
    """replay_buffer: private, or shared and attached to by name in the workers."""

    def __init__(self, capacity: int, prioritized: bool, shared: bool) -> None:
        """Create and fill the buffer."""
        config = BufferConfig(
            capacity=capacity, strategy="prioritized" if prioritized else "uniform", seed=0
        )
        self.name = f"shmbench_{os.getpid()}_{uuid.uuid4().hex[:8]}" if shared else None
        self.buffer = ReplayBuffer(config, fields=cartpole_fields(), shm_name=self.name)
        self.buffer.add_batch(**transitions(capacity))

    def in_worker(self) -> ReplayBuffer:
        """The buffer as a worker process uses it: attached by name."""
        return ReplayBuffer.attach(self.name) if self.name else self.buffer

    def close(self) -> None:
        """Remove the shared name."""
        self.buffer.close()


class Cpprb:
    """cpprb's multi-process buffers, handed to forked workers."""

    def __init__(self, capacity: int, prioritized: bool, shared: bool) -> None:
        """Create and fill the buffer."""
        import cpprb

        kind = cpprb.MPPrioritizedReplayBuffer if prioritized else cpprb.MPReplayBuffer
        self.buffer = kind(capacity, env_dict=cartpole_fields(), ctx=FORK)
        batch = transitions(capacity)
        for start in range(0, capacity, 100_000):
            self.buffer.add(**{k: v[start : start + 100_000] for k, v in batch.items()})

    def in_worker(self) -> Any:
        """The buffer as a worker process uses it: inherited through fork."""
        return self.buffer

    def close(self) -> None:
        """Nothing to remove."""


def operation(buffer: Any, op: str, cpprb: bool) -> Callable[[], object]:
    """One call of ``op`` on ``buffer``, with its inputs made beforehand."""
    one = {k: v[0] for k, v in transitions(1, seed=1).items()}
    if not cpprb:
        one = {k: v.item() if v.ndim == 0 else v for k, v in one.items()}
    batch = transitions(BATCH_ADD, seed=2)
    priorities = np.random.default_rng(3).random(BATCH_SAMPLE) + 0.1
    if op == "add":
        return lambda: buffer.add(**one)
    if op == "add_batch":
        return lambda: buffer.add(**batch) if cpprb else buffer.add_batch(**batch)
    if op == "sample":
        return lambda: buffer.sample(BATCH_SAMPLE)
    key = "indexes" if cpprb else "indices"

    def sample_and_update() -> None:
        drawn = buffer.sample(BATCH_SAMPLE)
        if cpprb:
            buffer.update_priorities(drawn[key], priorities)
        else:
            buffer.update_priorities(drawn[key], priorities=priorities)

    return sample_and_update


def timed(call: Callable[[], object], seconds: float) -> tuple[int, float]:
    """Call ``call`` for about ``seconds``; returns (calls, elapsed seconds)."""
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            call()
        calls += 50
        now = time.perf_counter()
        if now >= deadline:
            return calls, now - start


def worker(target: Any, op: str, cpprb: bool, seconds: float, start: Any, out: Any) -> None:
    """Run in a worker process: attach, get ready, wait for the others, run, report."""
    call = operation(target.in_worker(), op, cpprb)
    call()  # first-call costs (registration as a writer, page faults) outside the timing
    start.wait()
    out.put(timed(call, seconds))


def in_other_processes(target: Any, op: str, cpprb: bool, seconds: float, n: int) -> float:
    """Total operations per second of ``n`` worker processes running at once."""
    start, out = FORK.Barrier(n), FORK.Queue()
    procs = [
        FORK.Process(target=worker, args=(target, op, cpprb, seconds, start, out), daemon=True)
        for _ in range(n)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds * 10 + 60) for _ in procs]
    for p in procs:
        p.join()
    return sum(calls / elapsed for calls, elapsed in results)


def measure(kind: type, op: str, capacity: int, seconds: float) -> dict[str, float | None]:
    """Operations per second of ``op`` in every configuration, for one library."""
    cpprb = kind is Cpprb
    prioritized = op == "sample+update"
    out: dict[str, float | None] = {}
    private = kind(capacity, prioritized, shared=False)
    calls, elapsed = timed(operation(private.in_worker(), op, cpprb), seconds)
    out["in-process"] = calls / elapsed
    private.close()
    shared = private if cpprb else kind(capacity, prioritized, shared=True)
    try:
        if not cpprb:
            calls, elapsed = timed(operation(shared.buffer, op, cpprb), seconds)
            out["in-process, shared"] = calls / elapsed
        out["1 process"] = in_other_processes(shared, op, cpprb, seconds, 1)
        # cpprb's prioritized buffer supports one learner (sample, update_priorities) only.
        two = not (cpprb and op in ("sample", "sample+update"))
        out["2 processes"] = in_other_processes(shared, op, cpprb, seconds, 2) if two else None
    finally:
        shared.close()
    return out


def rate(x: float | None) -> str:
    """Operations per second, compactly."""
    if x is None:
        return "n/a"
    if x >= 1e6:
        return f"{x / 1e6:.2f} M/s"
    return f"{x / 1e3:.0f} k/s" if x >= 1e4 else f"{x:.0f}/s"


def main(argv: list[str] | None = None) -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--no-cpprb", action="store_true")
    args = parser.parse_args(argv)
    libraries: list[tuple[str, type]] = [("replay_buffer", Ours)]
    if not args.no_cpprb:
        try:
            import cpprb  # noqa: F401

            libraries.append(("cpprb MP", Cpprb))
        except ImportError:
            print("cpprb is not installed: its columns are skipped (pip install cpprb)")
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; CartPole transitions, capacity {args.capacity:,}; "
        f"add_batch of {BATCH_ADD}, samples of {BATCH_SAMPLE}; {args.seconds} s per process"
    )
    columns = ["in-process", "in-process, shared", "1 process", "2 processes"]
    header = ["library", "operation", *columns, "1 process / in-process"]
    rows = []
    for library, kind in libraries:
        for op in OPERATIONS:
            m = measure(kind, op, args.capacity, args.seconds)
            ratio = m["1 process"] / m["in-process"]
            rows.append([library, op, *(rate(m.get(c)) for c in columns), f"{ratio:.2f}"])
            print(" | ".join(rows[-1]), flush=True)
    print()
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join("-" * w for w in widths) + " |"
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print(line)
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    print(
        "\nops/s per configuration (transitions/s = ops/s x 256 for add_batch); 2 processes: "
        "their total; n/a: cpprb's MP buffers support a single sampling process."
    )


if __name__ == "__main__":
    main()
