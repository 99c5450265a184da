"""The ``replay-buffer`` command.

``demo`` shows the buffer at work, ``bench`` compares it with peer libraries, ``serve`` serves it
over sockets, ``shm`` lists, inspects and removes shared-memory buffers. ``--version`` and
``--help`` work without the compiled extension; the subcommands import what they need.
"""

from __future__ import annotations

import time

from replay_buffer._version import __version__
from replay_buffer.tools import console


def demo(capacity: int = 100_000, batch_size: int = 32) -> None:
    """Create a CartPole-sized buffer, fill it, sample from it, and say how fast each step was."""
    import numpy as np

    from replay_buffer.buffer import ReplayBuffer
    from replay_buffer.config import BufferConfig

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
    """Parse the command line and run a subcommand; exit with its status."""
    raise SystemExit(console.run(lambda: _run(argv)))


_DESCRIPTION = (
    "Experience replay buffers for reinforcement learning. demo shows a buffer at work, bench "
    "compares it with peer libraries, serve serves one over sockets, shm lists, inspects and "
    "removes shared-memory buffers."
)


def _run(argv: list[str] | None) -> int | None:
    parser = console.Parser(prog="replay-buffer", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"replay-buffer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo_parser = sub.add_parser("demo", help="fill a buffer, sample it, print what happened")
    demo_parser.add_argument("--capacity", type=int, default=100_000)
    demo_parser.add_argument("--batch-size", type=int, default=32)
    sub.add_parser("bench", help="benchmark against peer libraries (see --help)", add_help=False)
    sub.add_parser("serve", help="serve a buffer over Unix or TCP sockets", add_help=False)
    sub.add_parser("shm", help="list, inspect and remove shared-memory buffers", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        demo(args.capacity, args.batch_size)
        return 0
    if args.command == "shm":
        from replay_buffer.tools import shm

        return shm.main(rest)
    if args.command == "bench":
        from replay_buffer.tools import bench

        bench.main(rest)
        return 0
    from replay_buffer.tools import serve

    return serve.main(rest)


if __name__ == "__main__":
    main()
