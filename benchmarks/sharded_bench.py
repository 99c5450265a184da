"""Sharded buffer scaling on one machine: inserts/s and samples/s with 1, 2 and 4 shards.

Each shard is a real ``replay-buffer serve`` process (prioritized, CartPole-sized transitions) on
a loopback TCP port: the same data path as a shard actor on a Ray cluster, where Ray only starts
the process (docs/distributed.md). Prints, per shard count:

- inserts/s: one writer, add_batch of 256 rows, writes round-robin over the shards; and
  ``--writers`` writer processes at once (many actors, routed by episode id);
- samples/s: one learner, sample(256) across every shard (two round trips: PRIORITY_MASS to
  every shard, then SAMPLE to the shards drawn), and the latency of sample(32) and sample(256);
- the same with every shard reached through its shared-memory region (``shm``: the path of a
  process on a shard's node) instead of its socket (the path from another node);
- for reference, the same sample through one plain client (one round trip), and in-process;
- a simulated many-actor run: ``--actors`` actor tasks (threads in ``--writers`` processes), each
  adding episodes of 32 transitions through the handle, while one learner samples 256 and
  updates their priorities, with 4 shards, over sockets and over shared memory.

    python benchmarks/sharded_bench.py [--seconds 1.0] [--writers 4] [--actors 64]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np

from replay_buffer import BufferConfig, ReplayBuffer
from replay_buffer.ray import ShardedReplayBuffer
from replay_buffer.ray.transport import host_id
from replay_buffer.service import connect

CAPACITY = 1_000_000
TOKEN = "bench-token"


def region(seed: int) -> str:
    """The shared-memory name of shard ``seed`` of this run."""
    return f"rbbench_{os.getpid()}_{seed}"


def start_shard(capacity: int, seed: int) -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable, "-m", "replay_buffer.tools.serve", "--capacity", str(capacity),
        "--seed", str(seed), "--strategy", "prioritized", "--obs-shape", "4", "--action-dim", "2",
        "--listen", "tcp://127.0.0.1:0", "--status-interval", "0", "--token-env", "RB_BENCH_TOKEN",
        "--shm-name", region(seed),
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


def describe(urls: list[str], policy: str, shm: bool = False) -> dict[str, Any]:
    """The shards at ``urls``; with ``shm``, also their regions (this host: attached)."""
    return {
        "shards": [
            {"index": i, "url": url, "node_id": None, "host": host_id() if shm else None,
             "shm": region(i) if shm else None}
            for i, url in enumerate(urls)
        ],  # fmt: skip
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
    """One writer process: add_batch(256) routed by its episode id for ``seconds``."""
    buffer = ShardedReplayBuffer.from_description(description)
    data = chunk(256, np.random.default_rng(episode))
    calls, _ = rate(lambda: buffer.add_batch(**data, route_key=episode), seconds)
    queue.put(calls * 256)
    buffer.close()


def many_writers(urls: list[str], writers: int, seconds: float, shm: bool) -> float:
    """Rows/s added by ``writers`` processes at once, each routing its episodes by id."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=writer, args=(describe(urls, "route", shm), w, seconds, queue))
        for w in range(writers)
    ]
    for proc in procs:
        proc.start()
    total = sum(queue.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join()
    return float(total)


def measure(
    urls: list[str], data: dict[str, np.ndarray], args: Any, shm: bool
) -> dict[str, Any]:
    """Every figure of one shard count, over sockets or (``shm``) through the regions."""
    buffer = ShardedReplayBuffer.from_description(describe(urls, "round_robin", shm))
    try:
        inserts, _ = rate(lambda: buffer.add_batch(**data), args.seconds)
        assert {buffer.transport(i) for i in range(len(urls))} == {"shm" if shm else "socket"}
        many = many_writers(urls, args.writers, args.seconds, shm)
        samples, _ = rate(lambda: buffer.sample(256), args.seconds)
        _, t32 = rate(lambda: buffer.sample(32), args.seconds)
        _, t256 = rate(lambda: buffer.sample(256), args.seconds)
    finally:
        buffer.close()
    return {
        "inserts": inserts * 256, "many": many, "samples": samples * 256,
        "p32": np.median(t32) * 1e6, "p256": np.median(t256) * 1e6,
    }  # fmt: skip


def actor_process(
    description: dict[str, Any], first: int, actors: int, counting: Any, stop: Any, queue: Any,
    ready: Any,
) -> None:
    """``actors`` actor tasks (threads) adding episodes of 32 until ``stop`` is set.

    Puts how many rows they added while ``counting`` was set.
    """
    buffer = ShardedReplayBuffer.from_description(description)
    counts = [0] * actors

    def act(slot: int) -> None:
        episode = chunk(32, np.random.default_rng(first + slot))
        while not stop.is_set():
            buffer.add_batch(**episode, route_key=first + slot)
            if counting.is_set():
                counts[slot] += 32

    buffer.add_batch(**chunk(32, np.random.default_rng(first)), route_key=first)  # connected
    threads = [threading.Thread(target=act, args=(slot,)) for slot in range(actors)]
    for thread in threads:
        thread.start()
    ready.put(first)
    for thread in threads:
        thread.join()
    queue.put(sum(counts))
    buffer.close()


def many_actors(urls: list[str], args: Any, shm: bool) -> dict[str, float]:
    """``args.actors`` actor tasks in ``args.writers`` processes, and one learner, at once."""
    ctx = multiprocessing.get_context("spawn")
    counting, stop, queue, ready = ctx.Event(), ctx.Event(), ctx.Queue(), ctx.Queue()
    per = -(-args.actors // args.writers)
    procs = [
        ctx.Process(
            target=actor_process,
            args=(describe(urls, "route", shm), w * per, min(per, args.actors - w * per),
                  counting, stop, queue, ready),
        )  # fmt: skip
        for w in range(args.writers)
    ]
    for proc in procs:
        proc.start()
    learner = ShardedReplayBuffer.from_description(describe(urls, "route", shm))
    rng = np.random.default_rng(1)
    for _ in procs:
        ready.get(timeout=120)  # every actor process started and writing
    time.sleep(0.5)

    def step() -> None:
        batch = learner.sample(256)
        learner.update_priorities(batch["indices"], rng.random(256) + 0.1)

    counting.set()
    start = time.perf_counter()
    steps, times = rate(step, args.seconds * 2)
    stop.set()
    window = time.perf_counter() - start
    added = sum(queue.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join()
    learner.close()
    return {
        "rows": added / window, "steps": steps,
        "p50": float(np.median(times)) * 1e3, "p99": float(np.quantile(times, 0.99)) * 1e3,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--actors", type=int, default=64)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    data = chunk(256, rng)
    print(f"{'shards':>6} {'path':>6} {'inserts/s 1 writer':>19} {f'{args.writers} writers':>11} "
          f"{'samples/s (256)':>16} {'sample 32 p50':>14} {'sample 256 p50':>15}")  # fmt: skip
    for shards in (1, 2, 4):
        servers = [start_shard(CAPACITY // shards, seed) for seed in range(shards)]
        try:
            urls = [url for _, url in servers]
            for shm in (False, True):
                r = measure(urls, data, args, shm)
                print(f"{shards:>6} {'shm' if shm else 'socket':>6} {r['inserts']:>19,.0f} "
                      f"{r['many']:>11,.0f} {r['samples']:>16,.0f} {r['p32']:>11,.0f} µs "
                      f"{r['p256']:>12,.0f} µs")  # fmt: skip
            if shards == 1:
                with connect(urls[0], token=TOKEN) as client:
                    _, c32 = rate(lambda: client.sample(32), args.seconds)
                    _, c256 = rate(lambda: client.sample(256), args.seconds)
            if shards == 4:
                print(f"\n{args.actors} actor tasks in {args.writers} processes (episodes of 32, "
                      "routed by actor id) and one learner (sample 256 + update), 4 shards:")
                for shm in (False, True):
                    m = many_actors(urls, args, shm)
                    print(f"  {'shm' if shm else 'socket':>6}: {m['rows']:,.0f} rows/s added, "
                          f"{m['steps']:,.0f} learner steps/s, step p50 {m['p50']:.2f} ms, "
                          f"p99 {m['p99']:.2f} ms")  # fmt: skip
                print()
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
