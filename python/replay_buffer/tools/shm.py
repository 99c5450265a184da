"""``replay-buffer shm``: list, inspect and remove shared-memory replay buffers.

A shared buffer whose creator closes it normally removes its own name; these commands are for the
regions left behind by a creator that crashed (or was created with ``shm_keep=True``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any

from replay_buffer import _core
from replay_buffer.errors import InvalidRegionError
from replay_buffer.tools import console

# What a shared-memory object is, from its first 8 bytes.
OURS, UNINITIALISED, FOREIGN = "replay buffer", "not initialised", "not a replay buffer"


def build_parser(prog: str = "replay-buffer shm") -> argparse.ArgumentParser:
    """Build the ``shm`` command's parser, with its ``ls``, ``info`` and ``rm`` subcommands."""
    parser = console.Parser(
        prog=prog,
        description="List, inspect and remove shared-memory replay buffers, such as those left "
        "behind by a creator that crashed.",
    )
    sub = parser.add_subparsers(dest="shm_command", required=True, metavar="COMMAND")
    ls = sub.add_parser("ls", help="list shared buffers (Linux: everything in /dev/shm)")
    ls.add_argument(
        "--all", action="store_true", help="also list shared-memory objects that are not buffers"
    )
    info = sub.add_parser("info", help="show a shared buffer's header, counters and creator")
    info.add_argument("name")
    info.add_argument("--json", action="store_true", help="print JSON")
    rm = sub.add_parser("rm", help="remove shared buffers whose creator is gone")
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.add_argument(
        "--force",
        action="store_true",
        help="remove even when the creator still runs or it is not a replay buffer",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``replay-buffer shm`` with ``argv``; return the exit status."""
    return console.run(lambda: run(build_parser().parse_args(argv)))


def run(args: argparse.Namespace) -> int:
    """Run the ``shm`` subcommand in ``args``; returns the exit status."""
    if args.shm_command == "ls":
        return list_buffers(show_all=args.all)
    if args.shm_command == "info":
        return show_info(args.name, as_json=args.json)
    return remove(args.names, force=args.force)


def kind_of(name: str) -> str:
    """Whether a shared-memory object is a replay buffer, one being initialised, or foreign."""
    magic = _core.shm_magic(name)
    if magic == _core.REGION_MAGIC:
        return OURS
    return UNINITIALISED if magic == 0 else FOREIGN


def describe_fields(fields: dict[str, dict[str, Any]]) -> str:
    """``obs float32[4], action int64``: a schema on one line."""
    parts = []
    for name, spec in fields.items():
        shape = "[" + ", ".join(map(str, spec["shape"])) + "]" if spec["shape"] else ""
        parts.append(f"{name} {spec['dtype']}{shape}")
    return ", ".join(parts)


def describe_creator(info: dict[str, Any]) -> str:
    """``1234 (alive)``, ``1234 (dead)``, or ``1234 (?)`` when it cannot be told from here."""
    alive = info["creator_alive"]
    state = "?" if alive is None else "alive" if alive else "dead"
    return f"{info['creator_pid']} ({state})"


def message(error: Exception) -> str:
    """Return an error's own words, without the ``[Errno N]`` prefix OSError adds."""
    return getattr(error, "strerror", None) or str(error)


def mib(n: int) -> str:
    """Bytes as MiB, for tables."""
    return f"{n / 2**20:.1f} MiB"


def list_buffers(show_all: bool = False) -> int:
    """Print a table of the shared buffers on this host."""
    if not _core.SHM_CAN_LIST:
        print(
            "this OS offers no way to list shared-memory objects; "
            "use `replay-buffer shm info NAME` with a name you know"
        )
        return 2
    header = ("NAME", "SIZE", "HELD", "STRATEGY", "CREATOR", "WRITERS", "FIELDS")
    rows = []
    for name in _core.shm_list():
        try:
            kind = kind_of(name)
            if kind != OURS:
                if show_all:
                    rows.append((name, "", "", "", "", "", f"({kind})"))
                continue
            info = _core.shm_info(name)
        except PermissionError:
            if show_all:
                rows.append((name, "", "", "", "", "", "(no permission to read it)"))
            continue
        except (ValueError, OSError) as error:  # InvalidRegionError is a ValueError
            # One bad region never hides the others.
            rows.append((name, "", "", "", "", "", f"(unusable: {message(error)})"))
            continue
        rows.append(
            (
                name,
                mib(info["bytes"]),
                f"{info['size']}/{info['capacity']}",
                info["strategy"],
                describe_creator(info),
                str(info["writers_live"]),
                describe_fields(info["fields"]),
            )
        )
    if not rows:
        print("no shared replay buffers")
        return 0
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]))
    return 0


def show_info(name: str, as_json: bool = False) -> int:
    """Print everything a shared buffer's header and counters say."""
    try:
        info = _core.shm_info(name)
    except (OSError, ValueError) as error:  # InvalidRegionError is a ValueError
        print(f"replay-buffer shm info: {message(error)}")
        return 1
    if as_json:
        fields = {
            field: {"shape": list(spec["shape"]), "dtype": str(spec["dtype"])}
            for field, spec in info["fields"].items()
        }
        print(json.dumps({**info, "fields": fields}, indent=2))
        return 0
    created = datetime.datetime.fromtimestamp(info["created"]).isoformat(
        sep=" ", timespec="seconds"
    )
    lines = [
        ("name", info["name"]),
        ("size", f"{mib(info['bytes'])} ({info['bytes']} bytes)"),
        ("mode", f"{info['mode']:o} (owner uid {info['owner_uid']})"),
        ("transitions", f"{info['size']} of {info['capacity']} (next key {info['next_key']})"),
        ("strategy", info["strategy"]),
        ("alpha, beta, eps", f"{info['alpha']}, {info['beta']}, {info['eps']}"),
        ("seed", str(info["seed"])),
        ("fields", describe_fields(info["fields"])),
        ("creator", f"pid {describe_creator(info)}, created {created}"),
        ("writers", f"{info['writers_live']} alive, {info['writers_dead']} dead"),
        ("layout version", str(info["layout_version"])),
    ]
    width = max(len(key) for key, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")
    return 0


def remove(names: list[str], force: bool = False) -> int:
    """Remove shared buffers; without ``force``, only those whose creator is gone."""
    status = 0
    for name in names:
        try:
            reason = None if force else refusal(name)
            if reason is not None:
                print(f"replay-buffer shm rm: not removing '{name}': {reason}")
                status = 1
                continue
            _core.shm_unlink(name)
            print(f"removed {name}")
        except (OSError, ValueError) as error:
            print(f"replay-buffer shm rm: {message(error)}")
            status = 1
    return status


def refusal(name: str) -> str | None:
    """Why ``rm`` without ``--force`` leaves a region alone, or None to remove it."""
    kind = kind_of(name)
    if kind != OURS:
        return f"{kind} (--force removes it anyway)"
    try:
        info = _core.shm_info(name)
    except InvalidRegionError:
        return None  # a replay buffer this version cannot use: nothing can use it
    if info["creator_alive"] is not False:
        return (
            f"its creator (pid {info['creator_pid']}) is still running and removes it when it "
            "closes; --force removes the name now (attached processes keep working)"
        )
    return None


if __name__ == "__main__":
    sys.exit(main())
