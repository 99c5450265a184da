"""What the benchmarks share: workloads, random transitions, per-call timing, table cells."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Workload:
    """A transition shape and the capacity it is benchmarked at."""

    name: str
    obs_shape: tuple[int, ...]
    obs_dtype: type
    capacity: int
    add_batch: int

    @property
    def transition_bytes(self) -> int:
        """Raw bytes of one transition: obs, int64 action, float32 reward, next_obs, bool done."""
        obs = int(np.prod(self.obs_shape)) * np.dtype(self.obs_dtype).itemsize
        return 2 * obs + 8 + 4 + 1


WORKLOADS = {
    "cartpole": Workload("CartPole obs float32[4]", (4,), np.float32, 1_000_000, 256),
    "atari": Workload("Atari obs uint8[84,84,4]", (84, 84, 4), np.uint8, 50_000, 32),
}


def make_batch(w: Workload, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` random transitions for workload ``w``, one array per field."""
    if w.obs_dtype == np.uint8:
        obs = rng.integers(0, 256, size=(n, *w.obs_shape), dtype=np.uint8)
    else:
        obs = rng.standard_normal((n, *w.obs_shape)).astype(w.obs_dtype)
    return {
        "obs": obs,
        "action": rng.integers(0, 6, size=n, dtype=np.int64),
        "reward": rng.standard_normal(n).astype(np.float32),
        "next_obs": obs.copy(),
        "done": rng.random(n) < 0.01,
    }


def cpprb_fields(w: Workload) -> dict[str, dict[str, Any]]:
    """Describe the transition of workload ``w`` as cpprb's ``env_dict``."""
    obs = {"shape": w.obs_shape, "dtype": w.obs_dtype}
    return {
        "obs": obs,
        "action": {"dtype": np.int64},
        "reward": {"dtype": np.float32},
        "next_obs": obs,
        "done": {"dtype": np.bool_},
    }


def per_call_ns(fn: Callable[[], object], calls: int) -> list[float]:
    """Time each of ``calls`` calls on its own (includes ~30-50 ns of timer overhead)."""
    out = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        start = clock()
        fn()
        out.append(clock() - start)
    return out


@dataclass
class Row:
    """One measured line of the table."""

    workload: str
    operation: str
    candidate: str
    mean_ns: float
    p50_ns: float
    p99_ns: float
    items_per_call: int

    @property
    def per_second(self) -> float:
        """Transitions per second."""
        return self.items_per_call * 1e9 / self.mean_ns


def summarize(workload: str, op: str, who: str, times: list[float], items: int) -> Row:
    """Mean, median and 99th percentile of per-call times."""
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return Row(workload, op, who, statistics.fmean(times), ordered[len(ordered) // 2], p99, items)


def fmt_ns(ns: float) -> str:
    """Nanoseconds with a sensible unit."""
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns / 1e6:.2f} ms"
