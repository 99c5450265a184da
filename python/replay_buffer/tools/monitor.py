"""``replay-buffer stats``, ``metrics`` and ``dashboard``: watch a buffer from outside.

A buffer is named by its shared-memory name (attached to, never written) or by a service URL
(``unix:///path.sock``, ``tcp://host:port``: its STATS figures, the server's included).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from replay_buffer.tools import console

Figures = dict[str, Any]


def open_source(target: str, token: bytes | None = None) -> tuple[Callable[[], Figures], Any]:
    """Return a function reading ``target``'s figures, and what to close afterwards.

    ``target`` is a service URL or a shared-memory name.
    """
    if target.startswith(("unix://", "tcp://")):
        from replay_buffer.service import connect

        client = connect(target, token=token.decode() if token else None)
        lock = threading.Lock()

        def read_service() -> Figures:
            with lock:
                reply = client.stats()
            buffer = reply.pop("buffer")
            return {"buffer": buffer, "server": reply, "time": time.time()}

        return read_service, client
    from replay_buffer.buffer import ReplayBuffer

    buffer = ReplayBuffer.attach(target)
    return (lambda: {"buffer": buffer.stats(), "time": time.time()}), buffer


def _open(prog: str, target: str, token: bytes | None) -> tuple[Callable[[], Figures], Any] | None:
    """Open ``target``, or say on stderr why not and return None."""
    try:
        return open_source(target, token)
    except (OSError, ValueError) as exc:  # no such name, not a buffer, refused, ...
        print(f"{prog}: cannot watch {target}: {exc}", file=sys.stderr)
        return None


def _read_token(args: argparse.Namespace) -> bytes | None:
    if args.token_env:
        value = os.environ.get(args.token_env, "").strip()
        if not value:
            raise ValueError(f"--token-env: environment variable {args.token_env} is not set")
        return value.encode()
    if args.token_file:
        with open(args.token_file, "rb") as f:
            value = f.read().strip()
        if not value:
            raise ValueError(f"--token-file: {args.token_file} is empty")
        return value
    return None


def _number(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.{digits}f}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.{digits}f}k"
    return f"{value:.{digits}f}" if isinstance(value, float) else f"{value:,}"


def summary(figures: Figures, before: Figures | None = None) -> str:
    """Return a one-screen summary of ``figures``; rates come from ``before`` if given.

    Without ``before``, rates are averages since the buffer was made.
    """
    b = figures["buffer"]
    if before is not None:
        elapsed = max(figures["time"] - before["time"], 1e-9)
        inserts = (b["inserted"] - before["buffer"]["inserted"]) / elapsed
        samples = (b["sampled"] - before["buffer"]["sampled"]) / elapsed
        over = "now"
    else:
        elapsed = max(figures["time"] - b["created_unix_ns"] / 1e9, 1e-9)
        inserts, samples = b["inserted"] / elapsed, b["sampled"] / elapsed
        over = "since created"
    ratio = b["sampled"] / b["inserted"] if b["inserted"] else None
    limit = b["samples_per_insert"]
    lines = [
        f"buffer    {b['strategy']}, {b['size']:,} of {b['capacity']:,} "
        f"({100 * b['size'] / b['capacity']:.1f} % full)"
        + (f", shared: {b['writers_live']} writers alive" if b["shared"] else ""),
        f"inserts   {b['inserted']:,} items in {b['insert_calls']:,} calls; "
        f"{_number(inserts)}/s {over}",
        f"samples   {b['sampled']:,} items in {b['sample_calls']:,} calls; "
        f"{_number(samples)}/s {over}",
        f"ratio     {_number(ratio, 2)} samples per insert"
        + (f" (limit {limit:g})" if limit is not None else " (no limit)"),
        f"waiting   inserts {b['insert_waits']:,} calls, {b['insert_wait_seconds']:.2f} s; "
        f"samples {b['sample_waits']:,} calls, {b['sample_wait_seconds']:.2f} s",
        f"age       sampled items are {_number(b['age_p50'], 0)} inserts old (p50), "
        f"{_number(b['age_p99'], 0)} (p99)",
        f"coverage  {100 * b['live_sampled_fraction']:.1f} % of held items sampled, "
        f"{b['live_sample_count_mean']:.2f} times each on average "
        f"(max {b['live_sample_count_max']}); "
        f"~{_number(b['unique_sampled'], 0)} distinct items ever",
    ]
    priority = b["priority"]
    if priority is not None:
        lines.append(
            f"priority  sum {priority['sum']:.4g}, min {_number(priority['min'], 4)}, "
            f"max {_number(priority['max'], 4)}"
        )
    if b["takeovers"] or b["repairs"] or b["writers_dead"]:
        lines.append(
            f"repairs   {b['takeovers']} slot takeovers, {b['repairs']} lock repairs, "
            f"{b['writers_dead']} dead writers"
        )
    server = figures.get("server")
    if server is not None:
        lines.append(
            f"server    {server['connections']} connections, {server['requests']:,} requests, "
            f"{server['errors']:,} errors"
        )
        for op, fig in server["operations"].items():
            p50, p99 = fig["latency_p50_s"], fig["latency_p99_s"]
            errors = ", ".join(f"{k} {v}" for k, v in fig["errors"].items()) or "no errors"
            lines.append(
                f"  {op:<18} {fig['requests']:>9,}  p50 {_ms(p50)}  p99 {_ms(p99)}  {errors}"
            )
    return "\n".join(lines)


def _ms(seconds: float | None) -> str:
    return "     -  " if seconds is None else f"{seconds * 1e3:7.2f} ms"


def _wait_for_signal() -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="NAME_OR_URL", help="shared-memory name or service URL")
    parser.add_argument("--token-file", metavar="FILE", help="file holding the service's secret")
    parser.add_argument("--token-env", metavar="VAR", help="variable holding the secret")


def stats_main(argv: list[str]) -> int:
    """Run ``replay-buffer stats``."""
    parser = console.Parser(
        prog="replay-buffer stats", description="Print a one-screen summary of a buffer."
    )
    _add_target(parser)
    parser.add_argument(
        "--watch", nargs="?", const=2.0, type=float, metavar="SECONDS",
        help="refresh every SECONDS (default 2) until Ctrl-C",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead")
    args = parser.parse_args(argv)
    if args.watch is not None and not args.watch > 0:
        parser.error(f"--watch needs a positive number of seconds, got {args.watch}")
    try:
        token = _read_token(args)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    opened = _open(parser.prog, args.target, token)
    if opened is None:
        return console.RUNTIME_ERROR
    read, resource = opened
    try:
        figures = read()
        if args.json:
            import json

            print(json.dumps(figures, indent=2))
            return 0
        print(summary(figures), flush=True)
        before = figures
        while args.watch is not None:
            time.sleep(args.watch)
            figures = read()
            text = summary(figures, before)
            if sys.stdout.isatty():
                print("\033[H\033[J", end="")  # clear the screen
            else:
                print()
            print(f"{args.target} at {time.strftime('%H:%M:%S')}\n{text}", flush=True)
            before = figures
    except KeyboardInterrupt:
        pass
    finally:
        resource.close()
    return 0


def serve_main(argv: list[str], command: str) -> int:
    """Run ``replay-buffer metrics`` or ``replay-buffer dashboard``."""
    parser = console.Parser(
        prog=f"replay-buffer {command}",
        description="Serve a buffer's Prometheus metrics (/metrics), its figures as JSON "
        "(/stats.json) and a live dashboard (/) over HTTP until Ctrl-C.",
    )
    _add_target(parser)
    parser.add_argument(
        "--listen", default="127.0.0.1:9100", metavar="HOST:PORT",
        help="where to serve (default 127.0.0.1:9100; a non-loopback address needs a token)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        token = _read_token(args)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    from replay_buffer.metrics import MonitorServer, _require_prometheus

    if command == "metrics":
        try:
            _require_prometheus()
        except ImportError as exc:
            print(f"{parser.prog}: {exc}", file=sys.stderr)
            return console.RUNTIME_ERROR
    opened = _open(parser.prog, args.target, token)
    if opened is None:
        return console.RUNTIME_ERROR
    read, resource = opened
    try:
        try:
            monitor = MonitorServer(read, args.listen, token)
        except ValueError as exc:
            parser.error(str(exc))
        with monitor:
            print(f"metrics at {monitor.url}/metrics, dashboard at {monitor.url}/", flush=True)
            _wait_for_signal()
    finally:
        resource.close()
    return 0
