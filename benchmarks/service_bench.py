"""Replay service throughput and latency: Unix and TCP loopback against the same in-process.

Starts a real ``replay-buffer serve`` process per transition size, then times add_batch and
sample of 32 and 256 transitions, one call at a time (latency p50/p99) and pipelined (throughput,
``wait=False`` with 4 requests in flight). Also prints the socket ceiling: how fast the machine
moves an Atari batch of 256 (14.4 MB) through a bare loopback socket, no protocol at all.

    python benchmarks/service_bench.py [--seconds 0.5] [--only atari]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from replay_buffer import BufferConfig, ReplayBuffer
from replay_buffer.service import connect

SIZES = {
    "cartpole": {"obs_shape": (4,), "obs_dtype": np.float32, "capacity": 1_000_000},
    "atari": {"obs_shape": (84, 84, 4), "obs_dtype": np.uint8, "capacity": 20_000},
}
BATCHES = (32, 256)
DEPTH = 4
ATARI_256_BYTES = 256 * (2 * 84 * 84 * 4 + 8 + 4 + 1)


def batch_of(size: str, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    spec = SIZES[size]
    shape = (rows, *spec["obs_shape"])
    if spec["obs_dtype"] == np.uint8:
        obs = rng.integers(0, 255, shape, dtype=np.uint8)
    else:
        obs = rng.standard_normal(shape).astype(np.float32)
    return {
        "obs": obs,
        "action": rng.integers(0, 6, rows),
        "reward": rng.standard_normal(rows).astype(np.float32),
        "next_obs": obs.copy(),
        "done": np.zeros(rows, bool),
    }


def start_server(size: str, tmp: str) -> tuple[subprocess.Popen[str], str, str]:
    spec = SIZES[size]
    sock = os.path.join(tmp, f"{size}.sock")
    command = [
        sys.executable, "-m", "replay_buffer.tools.serve",
        "--capacity", str(spec["capacity"]), "--seed", "0",
        "--obs-shape", ",".join(map(str, spec["obs_shape"])),
        "--obs-dtype", np.dtype(spec["obs_dtype"]).name, "--action-dim", "6",
        "--listen", f"unix://{sock}", "--listen", "tcp://127.0.0.1:0", "--status-interval", "0",
    ]  # fmt: skip
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert server.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = server.stderr.readline()
        found = re.search(r"listening on (tcp://\S+)", line)
        if found:
            return server, f"unix://{sock}", found.group(1)
        if not line and server.poll() is not None:
            break
    server.kill()
    raise RuntimeError("the server did not start")


def timed(call: Callable[[], Any], seconds: float, max_calls: int = 20_000) -> np.ndarray:
    """Latency of each call, in seconds, for about ``seconds``."""
    times = []
    end = time.perf_counter() + seconds
    while len(times) < max_calls:
        start = time.perf_counter()
        call()
        now = time.perf_counter()
        times.append(now - start)
        if now > end and len(times) >= 20:
            break
    return np.array(times)


def pipelined(submit: Callable[[], Any], depth: int, seconds: float) -> float:
    """Calls per second with ``depth`` requests kept in flight."""
    in_flight: deque[Any] = deque()
    calls = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end or calls < 20:
        if len(in_flight) >= depth:
            in_flight.popleft().result()
        in_flight.append(submit())
        calls += 1
    while in_flight:
        in_flight.popleft().result()
    return calls / (time.perf_counter() - start)


def measure(target: Any, size: str, seconds: float, remote: bool) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    capacity = SIZES[size]["capacity"]
    fill = batch_of(size, 8192 if size == "cartpole" else 256, rng)
    rows = len(fill["done"])
    for _ in range(-(-capacity // rows)):  # every page of the ring touched before timing
        target.add_batch(**fill)
    rows = []
    for batch in BATCHES:
        data = batch_of(size, batch, rng)
        for op, call in (
            ("add_batch", lambda d=data: target.add_batch(**d)),
            ("sample", lambda b=batch: target.sample(b)),
        ):
            lat = timed(call, seconds)
            row = {
                "size": size,
                "batch": batch,
                "op": op,
                "p50": np.percentile(lat, 50) * 1e6,
                "p99": np.percentile(lat, 99) * 1e6,
                "tps": batch / lat.mean(),
            }
            if remote:
                if op == "add_batch":

                    def submit(d: dict[str, np.ndarray] = data) -> Any:
                        return target.add_batch(wait=False, **d)
                else:

                    def submit(b: int = batch) -> Any:
                        return target.sample(b, wait=False)

                row["piped"] = pipelined(submit, DEPTH, seconds) * batch
            rows.append(row)
    return rows


def socket_ceiling(kind: str, nbytes: int, seconds: float) -> float:
    """Bytes per second one thread can push to another through a bare loopback socket."""
    if kind == "unix":
        sender, receiver = socket.socketpair()
    else:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            sender = socket.create_connection(listener.getsockname())
            receiver, _ = listener.accept()
    data = memoryview(np.ones(nbytes, np.uint8))
    sink = memoryview(np.empty(nbytes, np.uint8))
    count = max(3, int(seconds * 4e9 / nbytes))

    def send() -> None:
        for _ in range(count):
            sender.sendall(data)

    thread = threading.Thread(target=send)
    start = time.perf_counter()
    thread.start()
    for _ in range(count):
        got = 0
        while got < nbytes:
            got += receiver.recv_into(sink[got:])
    elapsed = time.perf_counter() - start
    thread.join()
    sender.close()
    receiver.close()
    return count * nbytes / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.5, help="per measurement")
    parser.add_argument("--only", choices=sorted(SIZES))
    args = parser.parse_args()
    sizes = [args.only] if args.only else list(SIZES)
    results: dict[tuple[str, str, int, str], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            spec = SIZES[size]
            local = ReplayBuffer(
                BufferConfig(capacity=spec["capacity"], seed=0),
                obs_shape=spec["obs_shape"],
                action_dim=6,
                obs_dtype=spec["obs_dtype"],
            )
            for row in measure(local, size, args.seconds, remote=False):
                results["in-process", size, row["batch"], row["op"]] = row
            del local
            server, unix_url, tcp_url = start_server(size, tmp)
            try:
                for transport, url in (("unix", unix_url), ("tcp", tcp_url)):
                    with connect(url) as client:
                        for row in measure(client, size, args.seconds, remote=True):
                            results[transport, size, row["batch"], row["op"]] = row
            finally:
                server.terminate()
                server.wait(30)
    header = (
        f"{'transport':<11}{'transition':<10}{'batch':>6} {'op':<10}{'p50 µs':>10}{'p99 µs':>10}"
        f"{'trans/s':>12}{'piped/s':>12}{'vs local':>10}"
    )
    print(header)
    print("-" * len(header))
    for (transport, size, batch, op), row in results.items():
        local_tps = results["in-process", size, batch, op]["tps"]
        best = max(row["tps"], row.get("piped", 0.0))
        piped = f"{row['piped']:>12,.0f}" if "piped" in row else f"{'':>12}"
        print(
            f"{transport:<11}{size:<10}{batch:>6} {op:<10}{row['p50']:>10.1f}{row['p99']:>10.1f}"
            f"{row['tps']:>12,.0f}{piped}{local_tps / best:>9.2f}x"
        )
    print()
    for kind in ("unix", "tcp"):
        rate = socket_ceiling(kind, ATARI_256_BYTES, args.seconds)
        print(
            f"socket ceiling, {kind}: {rate / 1e9:.2f} GB/s = "
            f"{rate / ATARI_256_BYTES * 256:,.0f} Atari transitions/s (bytes only, no protocol)"
        )


if __name__ == "__main__":
    main()
