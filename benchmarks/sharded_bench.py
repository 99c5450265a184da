"""Sharded buffer scaling on one machine: inserts/s and samples/s with 1, 2 and 4 shards.

Each shard is a real ``replay-buffer serve`` process (prioritized, CartPole-sized transitions) on
a loopback TCP port: the same data path as a shard actor on a Ray cluster, where Ray only starts
the process (docs/distributed.md). Prints, per shard count:

- inserts/s: one writer, add_batch of 256 rows, writes round-robin over the shards; and
  ``--writers`` writer processes at once (many actors, routed by episode id);
- samples/s: one learner, sample(256) across every shard (two round trips: PRIORITY_MASS to
  every shard, then SAMPLE to the shards drawn), and the latency of sample(32) and sample(256);
- for reference, the same sample through one plain client (one round trip), and in-process.

    python benchmarks/sharded_bench.py [--seconds 1.0] [--writers 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import subprocess
import sys
import time
from typing import Any

import numpy as np

from replay_buffer import BufferConfig, ReplayBuffer
from replay_buffer.ray import ShardedReplayBuffer
from replay_buffer.service import connect

CAPACITY = 1_000_000
TOKEN = "bench-token"


def start_shard(capacity: int, seed: int) -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable, "-m", "replay_buffer.tools.serve", "--capacity", str(capacity),
        "--seed", str(seed), "--strategy", "prioritized", "--obs-shape", "4", "--action-dim", "2",
        "--listen", "tcp://127.0.0.1:0", "--status-interval", "0", "--token-env", "RB_BENCH_TOKEN",
    ]  # fmt: skip
    env = {**os.environ, "RB_BENCH_TOKEN": TOKEN}
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    assert server.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = server.stderr.readline()
        found = re.search(r"listening on (tcp://\S+)", line)
        if found:
            return server, found.group(1)
        if not line and server.poll() is not None:
            break
    server.kill()
    raise RuntimeError("a shard did not start")


def chunk(rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    obs = rng.standard_normal((rows, 4)).astype(np.float32)
    return {
        "obs": obs, "action": rng.integers(0, 2, rows),
        "reward": rng.standard_normal(rows).astype(np.float32), "next_obs": obs,
        "done": np.zeros(rows, bool),
    }  # fmt: skip


def describe(urls: list[str], policy: str) -> dict[str, Any]:
    return {
        "shards": [{"index": i, "url": url, "node_id": None} for i, url in enumerate(urls)],
        "token": TOKEN, "strategy": "prioritized", "beta": 0.4, "writer_policy": policy,
        "timeout": 60.0,
    }  # fmt: skip


def rate(call: Any, seconds: float) -> tuple[float, np.ndarray]:
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 20:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return len(times) / sum(times), np.array(times)


def writer(description: dict[str, Any], episode: int, seconds: float, queue: Any) -> None:
    buffer = ShardedReplayBuffer.from_description(description)
    data = chunk(256, np.random.default_rng(episode))
    calls, _ = rate(lambda: buffer.add_batch(**data, route_key=episode), seconds)
    queue.put(calls * 256)
    buffer.close()


def many_writers(urls: list[str], writers: int, seconds: float) -> float:
    """Rows/s added by ``writers`` processes at once, each routing its episodes by id."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=writer, args=(describe(urls, "route"), w, seconds, queue))
        for w in range(writers)
    ]
    for proc in procs:
        proc.start()
    total = sum(queue.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join()
    return float(total)


def measure(urls: list[str], data: dict[str, np.ndarray], args: Any) -> dict[str, Any]:
    """Every figure of one shard count."""
    buffer = ShardedReplayBuffer.from_description(describe(urls, "round_robin"))
    try:
        inserts, _ = rate(lambda: buffer.add_batch(**data), args.seconds)
        many = many_writers(urls, args.writers, args.seconds)
        samples, _ = rate(lambda: buffer.sample(256), args.seconds)
        _, t32 = rate(lambda: buffer.sample(32), args.seconds)
        _, t256 = rate(lambda: buffer.sample(256), args.seconds)
    finally:
        buffer.close()
    return {
        "inserts": inserts * 256, "many": many, "samples": samples * 256,
        "p32": np.median(t32) * 1e6, "p256": np.median(t256) * 1e6,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--writers", type=int, default=4)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    data = chunk(256, rng)
    print(f"{'shards':>6} {'inserts/s 1 writer':>19} {f'{args.writers} writers':>11} "
          f"{'samples/s (256)':>16} {'sample 32 p50':>14} {'sample 256 p50':>15}")  # fmt: skip
    for shards in (1, 2, 4):
        servers = [start_shard(CAPACITY // shards, seed) for seed in range(shards)]
        try:
            urls = [url for _, url in servers]
            r = measure(urls, data, args)
            print(f"{shards:>6} {r['inserts']:>19,.0f} {r['many']:>11,.0f} {r['samples']:>16,.0f} "
                  f"{r['p32']:>11,.0f} µs {r['p256']:>12,.0f} µs")  # fmt: skip
            if shards == 1:
                with connect(urls[0], token=TOKEN) as client:
                    _, c32 = rate(lambda: client.sample(32), args.seconds)
                    _, c256 = rate(lambda: client.sample(256), args.seconds)
        finally:
            for server, _ in servers:
                server.terminate()
                server.wait(30)
    local = ReplayBuffer(BufferConfig(capacity=CAPACITY, strategy="prioritized"), obs_shape=4,
                         action_dim=2)  # fmt: skip
    for _ in range(40):
        local.add_batch(**chunk(256, rng))
    _, l32 = rate(lambda: local.sample(32), args.seconds)
    _, l256 = rate(lambda: local.sample(256), args.seconds)
    print(f"one plain client, one round trip: sample 32 p50 {np.median(c32) * 1e6:,.0f} µs, "
          f"sample 256 p50 {np.median(c256) * 1e6:,.0f} µs")
    print(f"in-process: sample 32 p50 {np.median(l32) * 1e6:,.1f} µs, "
          f"sample 256 p50 {np.median(l256) * 1e6:,.1f} µs")


if __name__ == "__main__":
    main()
