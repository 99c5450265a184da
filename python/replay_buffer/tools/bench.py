"""Side-by-side benchmark: replay_buffer against a plain NumPy ring and cpprb, in one process run.

Run ``replay-buffer bench`` (or ``python -m replay_buffer.tools.bench``). Peers that are not
installed are skipped with a note; ``pip install cpprb`` adds cpprb. Numbers are wall-clock on
this machine.
"""

from __future__ import annotations

import gc
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from replay_buffer.buffer import ReplayBuffer
from replay_buffer.config import BufferConfig
from replay_buffer.tools import bench_prioritized, console
from replay_buffer.tools.bench_common import (
    WORKLOADS,
    Row,
    Workload,
    cpprb_fields,
    fmt_ns,
    make_batch,
    per_call_ns,
    summarize,
)


class Candidate(Protocol):
    """What every benchmarked buffer offers."""

    def add(self, t: dict[str, Any]) -> None: ...  # noqa: D102
    def add_batch(self, b: dict[str, np.ndarray]) -> None: ...  # noqa: D102
    def sample(self, n: int) -> object: ...  # noqa: D102


class Ours:
    """replay_buffer.ReplayBuffer."""

    name = "replay_buffer"

    def __init__(self, w: Workload) -> None:  # noqa: D107
        self.buffer = ReplayBuffer(
            BufferConfig(capacity=w.capacity, seed=0),
            obs_shape=w.obs_shape,
            action_dim=6,
            obs_dtype=w.obs_dtype,
        )
        self.add = lambda t: self.buffer.add(**t)
        self.add_batch = lambda b: self.buffer.add_batch(**b)
        self.sample = self.buffer.sample


class NumpyRing:
    """The ring buffer most projects write by hand: preallocated arrays and fancy indexing."""

    name = "numpy ring"

    def __init__(self, w: Workload) -> None:  # noqa: D107
        c = w.capacity
        self.capacity, self.pos, self.full = c, 0, False
        self.rng = np.random.default_rng(0)
        self.arrays = {
            "obs": np.zeros((c, *w.obs_shape), w.obs_dtype),
            "action": np.zeros(c, np.int64),
            "reward": np.zeros(c, np.float32),
            "next_obs": np.zeros((c, *w.obs_shape), w.obs_dtype),
            "done": np.zeros(c, np.bool_),
        }

    def add(self, t: dict[str, Any]) -> None:  # noqa: D102
        for name, value in t.items():
            self.arrays[name][self.pos] = value
        self.pos += 1
        if self.pos == self.capacity:
            self.pos, self.full = 0, True

    def add_batch(self, b: dict[str, np.ndarray]) -> None:  # noqa: D102
        n = len(b["reward"])
        idx = (self.pos + np.arange(n)) % self.capacity
        for name, value in b.items():
            self.arrays[name][idx] = value
        self.full = self.full or self.pos + n >= self.capacity
        self.pos = (self.pos + n) % self.capacity

    def sample(self, n: int) -> dict[str, np.ndarray]:  # noqa: D102
        idx = self.rng.integers(0, self.capacity if self.full else self.pos, size=n)
        return {name: array[idx] for name, array in self.arrays.items()}


class Cpprb:
    """cpprb.ReplayBuffer with the same fields."""

    name = "cpprb"

    def __init__(self, w: Workload) -> None:  # noqa: D107
        import cpprb

        self.buffer = cpprb.ReplayBuffer(w.capacity, env_dict=cpprb_fields(w))
        self.add = lambda t: self.buffer.add(**t)
        self.add_batch = lambda b: self.buffer.add(**b)
        self.sample = self.buffer.sample


CANDIDATES: list[Callable[[Workload], Candidate]] = [Ours, NumpyRing, Cpprb]


def rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    except OSError:
        return 0


@dataclass
class Result:
    """Everything measured on one candidate for one workload."""

    candidate: str
    rows: list[Row]
    rss_overhead: float
    exact_overhead: float | None


def scalar_rows(batch: dict[str, np.ndarray], n: int) -> list[dict[str, Any]]:
    """Single transitions as a training loop passes them: arrays, and Python scalars."""
    rows = []
    for i in range(n):
        row: dict[str, Any] = {k: v[i] for k, v in batch.items()}
        row.update(action=int(row["action"]), reward=float(row["reward"]), done=bool(row["done"]))
        rows.append(row)
    return rows


def measure(make: Callable[[Workload], Candidate], w: Workload, calls: int, fill: int) -> Result:
    """Fill one candidate, then time each operation on it."""
    rng = np.random.default_rng(1)
    gc.collect()
    rss_before = rss_bytes()
    candidate = make(w)
    name = getattr(candidate, "name", type(candidate).__name__)
    chunk = make_batch(w, w.add_batch, rng)
    for _ in range(fill // w.add_batch):
        candidate.add_batch(chunk)
    rss_overhead = (rss_bytes() - rss_before) / (fill * w.transition_bytes) - 1
    exact = None
    if isinstance(candidate, Ours):
        exact = candidate.buffer.region_bytes() / (w.capacity * w.transition_bytes) - 1

    singles = scalar_rows(chunk, min(w.add_batch, 64))
    turn = iter(range(10**12))
    rows = [
        summarize(
            w.name,
            "add",
            name,
            per_call_ns(lambda: candidate.add(singles[next(turn) % len(singles)]), calls),
            1,
        ),
        summarize(
            w.name,
            f"add_batch {w.add_batch}",
            name,
            per_call_ns(lambda: candidate.add_batch(chunk), max(calls // 20, 20)),
            w.add_batch,
        ),
    ]
    for n in (32, 256):
        times = per_call_ns(lambda n=n: candidate.sample(n), max(calls // (n // 16), 20))
        rows.append(summarize(w.name, f"sample {n}", name, times, n))
    return Result(name, rows, rss_overhead, exact)


def run(workloads: list[Workload], calls: int, out: Callable[[str], None] = print) -> list[Result]:
    """Benchmark every installed candidate on every workload and print one table per workload."""
    system = platform.processor() or platform.system()
    out(
        f"# replay_buffer benchmark: {platform.machine()} {system}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, NumPy {np.__version__}"
    )
    results: list[Result] = []
    for w in workloads:
        out(f"\n## {w.name}, capacity {w.capacity:,}, filled to capacity")
        out(
            f"{'operation':<16} {'buffer':<14} {'mean':>10} {'p50':>10} {'p99':>10} "
            f"{'transitions/s':>14} {'vs ours':>8}"
        )
        fill = max(w.add_batch, w.capacity // w.add_batch * w.add_batch)
        measured = []
        for make in CANDIDATES:
            try:
                measured.append(measure(make, w, calls, fill))
            except ImportError as e:
                out(f"{'(skipped)':<16} {make.__name__:<14} not installed: {e.name}")
            gc.collect()
        ours = {r.operation: r.mean_ns for r in measured[0].rows}
        for row in sorted((r for m in measured for r in m.rows), key=lambda r: r.operation):
            out(
                f"{row.operation:<16} {row.candidate:<14} {fmt_ns(row.mean_ns):>10} "
                f"{fmt_ns(row.p50_ns):>10} {fmt_ns(row.p99_ns):>10} {row.per_second:>14,.0f} "
                f"{row.mean_ns / ours[row.operation]:>7.1f}x"
            )
        for m in measured:
            exact = "" if m.exact_overhead is None else f", exact {m.exact_overhead:.1%}"
            out(f"{'memory overhead':<16} {m.candidate:<14} RSS {m.rss_overhead:+.1%}{exact}")
        results.extend(measured)
    out("\n'vs ours': the peer's mean time over replay_buffer's (above 1 = replay_buffer faster).")
    out("Per-call times include ~40 ns of timer overhead; RSS overhead is noisy below ~100 MB.")
    return results


_DESCRIPTION = (
    "Side-by-side benchmark: replay_buffer against a plain NumPy ring, cpprb and (prioritized) "
    "TorchRL, in one process run. Peers that are not installed are skipped with a note "
    "(pip install cpprb adds cpprb). Numbers are wall-clock on this machine."
)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``replay-buffer bench``."""
    parser = console.Parser(prog="replay-buffer bench", description=_DESCRIPTION)
    parser.add_argument("--workload", choices=[*WORKLOADS, "prioritized", "all"], default="all")
    parser.add_argument("--calls", type=int, default=20_000, help="timed calls per operation")
    parser.add_argument(
        "--quick", action="store_true", help="small capacities and few calls: a smoke run"
    )
    args = parser.parse_args(argv)
    chosen = [w for name, w in WORKLOADS.items() if args.workload in (name, "all")]
    prioritized = WORKLOADS["cartpole"] if args.workload in ("prioritized", "all") else None
    if args.quick:
        chosen = [Workload(w.name, w.obs_shape, w.obs_dtype, 2_000, w.add_batch) for w in chosen]
        if prioritized:
            prioritized = Workload(prioritized.name, (4,), np.float32, 2_048, 256)
        args.calls = min(args.calls, 500)
    if chosen:
        run(chosen, args.calls)
    if prioritized:
        bench_prioritized.run(prioritized, args.calls)


if __name__ == "__main__":
    sys.exit(console.run(main))
