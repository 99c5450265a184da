"""Prioritized replay side by side: a sample of 32 and the update of their priorities.

replay_buffer (proportional and rank) against cpprb's and TorchRL's PrioritizedReplayBuffer, each
skipped when not installed.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from replay_buffer.buffer import ReplayBuffer
from replay_buffer.config import BufferConfig
from replay_buffer.tools.bench_common import (
    Row,
    Workload,
    cpprb_fields,
    fmt_ns,
    make_batch,
    per_call_ns,
    summarize,
)

BATCH = 32


class PrioritizedCandidate(Protocol):
    """What every benchmarked prioritized buffer offers."""

    name: str

    def fill(self, batch: dict[str, np.ndarray]) -> None: ...  # noqa: D102
    def sample(self) -> Any: ...  # noqa: D102
    def update(self, sampled: Any, td: np.ndarray) -> None: ...  # noqa: D102


class Ours:
    """replay_buffer.ReplayBuffer with a prioritized strategy."""

    def __init__(self, w: Workload, strategy: str) -> None:  # noqa: D107
        self.name = f"replay_buffer {strategy}"
        config = BufferConfig(capacity=w.capacity, strategy=strategy, alpha=0.6, beta=0.4, seed=0)
        self.buffer = ReplayBuffer(
            config, obs_shape=w.obs_shape, action_dim=6, obs_dtype=w.obs_dtype
        )

    def fill(self, batch: dict[str, np.ndarray]) -> None:  # noqa: D102
        self.buffer.add_batch(**batch)

    def sample(self) -> Any:  # noqa: D102
        return self.buffer.sample(BATCH)

    def update(self, sampled: Any, td: np.ndarray) -> None:  # noqa: D102
        self.buffer.update_priorities(sampled["indices"], td)


class Cpprb:
    """cpprb.PrioritizedReplayBuffer."""

    name = "cpprb"

    def __init__(self, w: Workload) -> None:  # noqa: D107
        import cpprb

        self.buffer = cpprb.PrioritizedReplayBuffer(w.capacity, env_dict=cpprb_fields(w), alpha=0.6)

    def fill(self, batch: dict[str, np.ndarray]) -> None:  # noqa: D102
        self.buffer.add(**batch)

    def sample(self) -> Any:  # noqa: D102
        return self.buffer.sample(BATCH, beta=0.4)

    def update(self, sampled: Any, td: np.ndarray) -> None:  # noqa: D102
        self.buffer.update_priorities(sampled["indexes"], np.abs(td) + 1e-6)


class TorchRL:
    """torchrl.data.PrioritizedReplayBuffer over a LazyTensorStorage."""

    name = "torchrl"

    def __init__(self, w: Workload) -> None:  # noqa: D107
        import torch
        from torchrl.data import LazyTensorStorage, PrioritizedReplayBuffer

        self.torch = torch
        self.buffer = PrioritizedReplayBuffer(
            alpha=0.6, beta=0.4, storage=LazyTensorStorage(w.capacity), batch_size=BATCH
        )

    def fill(self, batch: dict[str, np.ndarray]) -> None:  # noqa: D102
        from tensordict import TensorDict

        tensors = {k: self.torch.from_numpy(np.asarray(v)) for k, v in batch.items()}
        self.buffer.extend(TensorDict(tensors, batch_size=[len(batch["reward"])]))

    def sample(self) -> Any:  # noqa: D102
        return self.buffer.sample(return_info=True)

    def update(self, sampled: Any, td: np.ndarray) -> None:  # noqa: D102
        _, info = sampled
        priority = self.torch.from_numpy(np.abs(td).astype(np.float32))
        self.buffer.update_priority(info["index"], priority)


CANDIDATES: list[Callable[[Workload], PrioritizedCandidate]] = [
    lambda w: Ours(w, "prioritized"),
    lambda w: Ours(w, "rank"),
    Cpprb,
    TorchRL,
]


def measure(make: Callable[[Workload], PrioritizedCandidate], w: Workload, calls: int) -> list[Row]:
    """Fill one candidate to capacity, then time sample, update, and the two together."""
    rng = np.random.default_rng(1)
    candidate = make(w)
    chunk = make_batch(w, w.add_batch, rng)
    for _ in range(w.capacity // w.add_batch):
        candidate.fill(chunk)
    td_errors = [rng.standard_normal(BATCH) for _ in range(64)]
    turn = iter(range(10**12))

    def step() -> None:
        candidate.update(candidate.sample(), td_errors[next(turn) % 64])

    sampled = [candidate.sample() for _ in range(64)]
    rows = [
        summarize(w.name, "sample 32", candidate.name, per_call_ns(candidate.sample, calls), BATCH),
        summarize(
            w.name,
            "update 32",
            candidate.name,
            per_call_ns(
                lambda: candidate.update(sampled[next(turn) % 64], td_errors[next(turn) % 64]),
                calls,
            ),
            BATCH,
        ),
        summarize(w.name, "sample+update 32", candidate.name, per_call_ns(step, calls), BATCH),
    ]
    return rows


def run(w: Workload, calls: int, out: Callable[[str], None] = print) -> list[Row]:
    """Benchmark every installed prioritized candidate and print one table."""
    out(f"\n## Prioritized: {w.name}, capacity {w.capacity:,}, alpha 0.6, beta 0.4, batch {BATCH}")
    out(f"{'operation':<18} {'buffer':<26} {'mean':>10} {'p50':>10} {'p99':>10} {'vs ours':>8}")
    rows: list[Row] = []
    for make in CANDIDATES:
        try:
            rows.extend(measure(make, w, calls))
            gc.collect()
        except ImportError as e:
            out(f"{'(skipped)':<18} {'':<26} not installed: {e.name}")
    ours = {r.operation: r.mean_ns for r in rows if r.candidate == "replay_buffer prioritized"}
    for row in sorted(rows, key=lambda r: r.operation):
        out(
            f"{row.operation:<18} {row.candidate:<26} {fmt_ns(row.mean_ns):>10} "
            f"{fmt_ns(row.p50_ns):>10} {fmt_ns(row.p99_ns):>10} "
            f"{row.mean_ns / ours[row.operation]:>7.1f}x"
        )
    out("'vs ours': the buffer's mean time over replay_buffer prioritized's.")
    return rows
