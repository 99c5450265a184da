"""``replay-buffer serve``: serve one buffer over Unix and TCP sockets until SIGINT/SIGTERM.

:func:`main` parses the command line (see ``replay-buffer serve --help``), builds the buffer and
the server, and runs them; flags override the values of a ``--config`` TOML file. The buffer's
flags are derived from :class:`~replay_buffer.BufferConfig`'s fields.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from collections.abc import Callable
from typing import Any

from replay_buffer.config import Option, options
from replay_buffer.service.config import (
    DEFAULT_LISTEN,
    TRANSITION_KEYS,
    Naming,
    ServiceConfig,
    from_dict,
    load_toml,
)
from replay_buffer.service.protocol import Limits
from replay_buffer.service.server import ReplayServer, serve
from replay_buffer.tools import console

log = logging.getLogger("replay_buffer.service")

_SERVER_FLAGS = (
    "token_file", "token_env", "status_interval", "max_frame_bytes", "max_batch",
    "max_in_flight", "max_connections", "workers", "grace",
)  # fmt: skip


def shape(text: str) -> list[int]:
    """Read a shape such as ``84,84,4`` (or ``4``, ``(84, 84, 4)``)."""
    text = text.strip().strip("()[]")
    try:
        return [int(d) for d in text.split(",") if d.strip()] if text else []
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a shape such as 84,84,4, got {text!r}"
        ) from None


def field_spec(text: str) -> tuple[str, dict[str, Any]]:
    """Read ``NAME:DTYPE[:SHAPE]``, e.g. ``obs:uint8:84,84,4`` or ``reward:float32``."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise argparse.ArgumentTypeError(f"expected NAME:DTYPE[:SHAPE], got {text!r}")
    return parts[0], {"dtype": parts[1], "shape": shape(parts[2]) if len(parts) == 3 else []}


def _reader(option: Option) -> Callable[[str], Any]:
    """Turn an option's text reader into an argparse type whose errors say what it expects."""

    def read(text: str) -> Any:
        try:
            return option.parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {option.expects}, got {text!r}") from None

    return read


def _help(f: dataclasses.Field[Any], option: Option) -> str:
    if f.default is not dataclasses.MISSING:
        default = "none" if f.default is None else f.default
        text = f"{option.help} (default {default})"
    elif f.default_factory is dataclasses.MISSING:
        text = f"{option.help} (required)"
    else:
        text = option.help
    choices = option.choices() if option.choices else ()
    if choices:
        text += ": " + ", ".join(choices)
    return text.replace("%", "%%")  # argparse formats help with %


_EXAMPLES = """examples:
  replay-buffer serve --capacity 100000 --obs-shape 4 --action-dim 2 \\
      --listen unix:///tmp/replay.sock --listen tcp://127.0.0.1:7777
  replay-buffer serve --config replay.toml --status-interval 0
  replay-buffer serve --capacity 50000 --strategy prioritized --field obs:uint8:84,84,4 \\
      --field action:int64 --field reward:float32 --field next_obs:uint8:84,84,4 --field done:bool

Flags override the config file's values. See docs/service.md."""


def build_parser(prog: str = "replay-buffer serve") -> argparse.ArgumentParser:
    """Build the ``serve`` command's argument parser."""
    parser = console.Parser(
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
    buffer = parser.add_argument_group("buffer (the [buffer] keys of the config file)")
    for f, option in options():
        choices = option.choices() if option.choices else None
        buffer.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=_reader(option),
            choices=choices or None,
            metavar="NAME" if choices else None,
            default=argparse.SUPPRESS,  # absent unless given, so "none" can be told from unset
            help=_help(f, option),
        )
    schema = parser.add_argument_group("schema: --field ..., or the transition flags")
    schema.add_argument(
        "--field",
        action="append",
        type=field_spec,
        metavar="NAME:DTYPE[:SHAPE]",
        help="a field, e.g. obs:uint8:84,84,4; repeat, in order",
    )
    schema.add_argument(
        "--obs-shape", type=shape, metavar="D[,D...]", help="shape of one observation, e.g. 84,84,4"
    )
    schema.add_argument(
        "--action-dim", type=int, metavar="N", help="number of actions, or action vector length"
    )
    schema.add_argument(
        "--obs-dtype", metavar="DTYPE", help="of obs and next_obs (default float32)"
    )
    schema.add_argument(
        "--action-type",
        choices=("discrete", "continuous"),
        help="int64 action index, or float32 vector (default discrete)",
    )
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
    """Merge the config file (if any) and the flags into a :class:`ServiceConfig`.

    Raises:
        ValueError: a setting is missing, unknown or bad; the message names it as the user gave
            it (the flag, or the file's key).

    """
    return _load(args)[0]


def _load(args: argparse.Namespace) -> tuple[ServiceConfig, Naming]:
    data: dict[str, Any] = load_toml(args.config) if args.config else {}
    for table, values in data.items():
        if not isinstance(values, dict):
            raise ValueError(f"{args.config}: {table} must be a table, [{table}]")
    from_file = {(table, key) for table, values in data.items() for key in values}
    merged = {**data, **{t: dict(data.get(t, {})) for t in ("buffer", "transition", "fields")}}
    merged["server"] = dict(data.get("server", {}))
    flags: dict[str, dict[str, Any]] = {
        "buffer": {f.name: getattr(args, f.name) for f, _ in options() if hasattr(args, f.name)},
        "server": {f: getattr(args, f) for f in _SERVER_FLAGS if getattr(args, f) is not None},
        "transition": {
            f: getattr(args, f) for f in sorted(TRANSITION_KEYS) if getattr(args, f) is not None
        },
    }
    if args.shm_name is not None:
        flags["buffer"]["shm_name"] = args.shm_name
    if args.listen:
        flags["server"]["listen"] = args.listen
    merged["buffer"].update(flags["buffer"])
    merged["server"].update(flags["server"])
    if args.field:  # the command line's schema replaces the file's
        merged["fields"], merged["transition"] = dict(args.field), flags["transition"]
        flags["fields"] = dict(args.field)
    elif flags["transition"]:
        merged["fields"] = {}
        merged["transition"].update(flags["transition"])
    from_flags = {(table, key) for table, values in flags.items() for key in values}
    naming = Naming(from_flags, from_file, command_line=True)
    return from_dict({name: table for name, table in merged.items() if table}, naming), naming


def main(argv: list[str] | None = None) -> int:
    """Run ``replay-buffer serve`` with ``argv`` (default: sys.argv); return the exit code.

    A bad command line or config file exits with status 2, a failure to serve (an address in
    use, a buffer that does not fit in memory, ...) with status 1, each with one line saying why.
    """
    return console.run(lambda: _serve(argv))


def _serve(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    try:
        config, naming = _load(args)
        token = config.read_token(naming)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    try:
        buffer = config.make_buffer()
    except (ValueError, TypeError) as exc:  # a shared-memory name that cannot be one, ...
        parser.error(str(exc))
    except (MemoryError, OSError) as exc:  # no room for it; a shared-memory name taken
        log.error("cannot create the buffer: %s", exc)
        return console.RUNTIME_ERROR
    try:
        try:
            server = ReplayServer(
                buffer,
                config.listen,
                limits=config.limits,
                token=token,
                shm_name=config.shm_name,
                status_interval=config.status_interval,
                max_connections=config.max_connections,
                workers=config.workers,
            )
        except ValueError as exc:  # a non-loopback address without a token
            parser.error(str(exc))
        asyncio.run(serve(server, config.grace))
    except OSError as exc:  # an address in use, ...
        log.error("cannot serve: %s", exc)
        return console.RUNTIME_ERROR
    finally:
        buffer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
