"""The ``replay-buffer`` command.

``demo`` shows the buffer at work, ``bench`` compares it with peer libraries, ``serve`` serves it
over sockets, ``shm`` lists, inspects and removes shared-memory buffers.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from replay_buffer.buffer import ReplayBuffer
from replay_buffer.config import BufferConfig
from replay_buffer.tools import shm


def demo(capacity: int = 100_000, batch_size: int = 32) -> None:
    """Create a CartPole-sized buffer, fill it, sample from it, and say how fast each step was."""
    buffer = ReplayBuffer(BufferConfig(capacity=capacity, seed=0), obs_shape=(4,), action_dim=2)
    print(f"created  {buffer!r}, {buffer.region_bytes() / 2**20:.1f} MiB")

    rng = np.random.default_rng(0)
    obs = rng.standard_normal((capacity, 4)).astype(np.float32)
    start = time.perf_counter()
    buffer.add_batch(
        obs, rng.integers(0, 2, capacity), np.ones(capacity), obs, np.zeros(capacity, bool)
    )
    elapsed = time.perf_counter() - start
    print(
        f"add_batch {capacity:,} transitions in {elapsed * 1e3:.1f} ms "
        f"({capacity / elapsed / 1e6:.1f} M transitions/s)"
    )

    adds = 10_000
    start = time.perf_counter()
    for i in range(adds):
        buffer.add(obs[i], 1, 0.5, obs[i], False)
    elapsed = time.perf_counter() - start
    print(f"add      {adds:,} single transitions, {elapsed / adds * 1e9:.0f} ns each from Python")

    samples = 10_000
    start = time.perf_counter()
    for _ in range(samples):
        batch = buffer.sample(batch_size)
    elapsed = time.perf_counter() - start
    per_call = elapsed / samples * 1e6
    print(f"sample   {samples:,} batches of {batch_size}, {per_call:.2f} µs each from Python")
    print("batch    " + ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in batch.items()))
    keys = batch["indices"][:5].tolist()
    print(f"size     {len(buffer):,} of {buffer.capacity():,}; first keys sampled: {keys}")


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run a subcommand."""
    parser = argparse.ArgumentParser(prog="replay-buffer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo_parser = sub.add_parser("demo", help="fill a buffer, sample it, print what happened")
    demo_parser.add_argument("--capacity", type=int, default=100_000)
    demo_parser.add_argument("--batch-size", type=int, default=32)
    sub.add_parser("bench", help="benchmark against peer libraries (see --help)", add_help=False)
    sub.add_parser("serve", help="serve a buffer over Unix or TCP sockets", add_help=False)
    shm_parser = sub.add_parser("shm", help="list, inspect and remove shared-memory buffers")
    shm.add_arguments(shm_parser)
    args, rest = parser.parse_known_args(argv)
    if args.command in ("demo", "shm") and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "demo":
        demo(args.capacity, args.batch_size)
    elif args.command == "shm":
        raise SystemExit(shm.run(args))
    elif args.command == "bench":
        from replay_buffer.tools import bench

        bench.main(rest)
    else:
        from replay_buffer.service import cli as service_cli

        raise SystemExit(service_cli.main(rest))


if __name__ == "__main__":
    main()
