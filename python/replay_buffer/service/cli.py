"""``replay-buffer serve``: serve one buffer over Unix and TCP sockets until SIGINT/SIGTERM.

:func:`main` parses the command line (see ``replay-buffer serve --help``), builds the buffer and
the server, and runs them; flags override the values of a ``--config`` TOML file.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from replay_buffer.service.config import DEFAULT_LISTEN, ServiceConfig, from_dict, load_toml
from replay_buffer.service.protocol import Limits
from replay_buffer.service.server import ReplayServer, serve

log = logging.getLogger("replay_buffer.service")

_BUFFER_FLAGS = (
    "capacity",
    "strategy",
    "seed",
    "alpha",
    "beta",
    "eps",
    "min_size_to_sample",
    "samples_per_insert",
    "error_buffer",
    "rate_limit_timeout",
)
_TRANSITION_FLAGS = ("obs_shape", "action_dim", "obs_dtype", "action_type")
_SERVER_FLAGS = (
    "token_file", "token_env", "status_interval", "max_frame_bytes", "max_batch",
    "max_in_flight", "max_connections", "workers", "grace",
)  # fmt: skip


def _shape(text: str) -> list[int]:
    text = text.strip().strip("()[]")
    return [int(d) for d in text.split(",") if d.strip()] if text else []


def _field(text: str) -> tuple[str, dict[str, Any]]:
    """Parse ``NAME:DTYPE[:SHAPE]``, e.g. ``obs:uint8:84,84,4`` or ``reward:float32``."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise argparse.ArgumentTypeError(f"expected NAME:DTYPE[:SHAPE], got {text!r}")
    try:
        shape = _shape(parts[2]) if len(parts) == 3 else []
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: shape must be ints, e.g. 84,84,4") from None
    return parts[0], {"dtype": parts[1], "shape": shape}


_EXAMPLES = """examples:
  replay-buffer serve --capacity 100000 --obs-shape 4 --action-dim 2 \\
      --listen unix:///tmp/replay.sock --listen tcp://127.0.0.1:7777
  replay-buffer serve --config replay.toml --status-interval 0
  replay-buffer serve --capacity 50000 --strategy prioritized --field obs:uint8:84,84,4 \\
      --field action:int64 --field reward:float32 --field next_obs:uint8:84,84,4 --field done:bool

Flags override the config file's values. See docs/service.md."""


def build_parser(prog: str = "replay-buffer serve") -> argparse.ArgumentParser:
    """Build the ``serve`` command's argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve one replay buffer over Unix and TCP sockets until SIGINT or SIGTERM.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="TOML config file (see docs/service.md)")
    where = parser.add_argument_group("where")
    where.add_argument(
        "--listen",
        action="append",
        metavar="URL",
        help=f"unix:///path or tcp://host:port; repeat for several (default {DEFAULT_LISTEN})",
    )
    where.add_argument("--shm-name", help="also expose the buffer in shared memory under this name")
    buffer = parser.add_argument_group("buffer")
    buffer.add_argument("--capacity", type=int)
    buffer.add_argument("--strategy", help="uniform (default), prioritized or rank")
    buffer.add_argument("--seed", type=int)
    buffer.add_argument("--alpha", type=float, help="prioritization exponent")
    buffer.add_argument("--beta", type=float, help="importance-sampling exponent")
    buffer.add_argument("--eps", type=float, help="added to |td_error| before prioritizing")
    buffer.add_argument(
        "--min-size-to-sample", type=int, help="samples wait until the buffer holds this many"
    )
    buffer.add_argument(
        "--samples-per-insert", type=float, help="rate limit: sampled transitions per insert"
    )
    buffer.add_argument("--error-buffer", type=float, help="rate limit: tolerance, in samples")
    buffer.add_argument(
        "--rate-limit-timeout", type=float, help="seconds a held-back call waits (default 60)"
    )
    schema = parser.add_argument_group("schema: --field ..., or the transition flags")
    schema.add_argument(
        "--field",
        action="append",
        type=_field,
        metavar="NAME:DTYPE[:SHAPE]",
        help="a field, e.g. obs:uint8:84,84,4; repeat, in order",
    )
    schema.add_argument("--obs-shape", type=_shape, metavar="D[,D...]")
    schema.add_argument("--action-dim", type=int)
    schema.add_argument("--obs-dtype")
    schema.add_argument("--action-type", choices=("discrete", "continuous"))
    server = parser.add_argument_group("security and limits")
    server.add_argument("--token-file", metavar="FILE", help="file holding the shared secret")
    server.add_argument(
        "--token-env", metavar="VAR", help="environment variable holding the shared secret"
    )
    server.add_argument(
        "--status-interval", type=float, metavar="S", help="seconds between status lines; 0: off"
    )
    server.add_argument("--max-frame-bytes", type=int, help=f"default {Limits.max_frame_bytes}")
    server.add_argument("--max-batch", type=int, help=f"default {Limits.max_batch}")
    server.add_argument("--max-in-flight", type=int, help=f"default {Limits.max_in_flight}")
    server.add_argument("--max-connections", type=int, help="default 1024")
    server.add_argument(
        "--workers", type=int, help="threads per worker lane: inserts, samples, updates, clears"
    )
    server.add_argument("--grace", type=float, help="seconds to finish requests on shutdown")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"))
    return parser


def config_from_args(args: argparse.Namespace) -> ServiceConfig:
    """Merge the config file (if any) and the flags into a :class:`ServiceConfig`."""
    data: dict[str, Any] = load_toml(args.config) if args.config else {}
    merged = {**data, **{t: dict(data.get(t, {})) for t in ("buffer", "transition", "fields")}}
    merged["server"] = dict(data.get("server", {}))
    for table, flags in (("buffer", _BUFFER_FLAGS), ("server", _SERVER_FLAGS)):
        merged[table].update({f: getattr(args, f) for f in flags if getattr(args, f) is not None})
    if args.shm_name is not None:
        merged["buffer"]["shm_name"] = args.shm_name
    if args.listen:
        merged["server"]["listen"] = args.listen
    transition = {f: getattr(args, f) for f in _TRANSITION_FLAGS if getattr(args, f) is not None}
    if args.field:  # the command line's schema replaces the file's
        merged["fields"], merged["transition"] = dict(args.field), transition
    elif transition:
        merged["fields"] = {}
        merged["transition"].update(transition)
    return from_dict({name: table for name, table in merged.items() if table})


def main(argv: list[str] | None = None) -> int:
    """Run ``replay-buffer serve`` with ``argv`` (default: sys.argv); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    try:
        config = config_from_args(args)
        token = config.read_token()
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    try:
        server = ReplayServer(
            config.make_buffer(),
            config.listen,
            limits=config.limits,
            token=token,
            shm_name=config.shm_name,
            status_interval=config.status_interval,
            max_connections=config.max_connections,
            workers=config.workers,
        )
        asyncio.run(serve(server, config.grace))
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    except OSError as exc:  # an address in use, a shared-memory name taken, ...
        log.error("cannot serve: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
