"""What ``replay-buffer serve`` serves and how: read from a TOML file, overridden by flags.

A config file has up to four tables::

    [buffer]                 # BufferConfig's options, plus shm_name
    capacity = 1_000_000
    strategy = "uniform"
    seed = 0

    [transition]             # the specification's transition (or give [fields] instead)
    obs_shape = [84, 84, 4]
    obs_dtype = "uint8"
    action_dim = 6

    [fields.obs]             # any named fields, in order
    shape = [84, 84, 4]
    dtype = "uint8"

    [server]
    listen = ["unix:///run/replay.sock", "tcp://127.0.0.1:7777"]
    token_file = "/etc/replay/token"
    status_interval = 10.0

The ``[buffer]`` keys are :class:`~replay_buffer.BufferConfig`'s fields, and each takes what its
``serve`` flag takes: a value of the field's type, or its text (``"none"`` for no value).
Errors name a setting as the user gave it: ``--capacity`` when it came from a flag,
``[buffer] capacity`` when it came from the file (see :class:`Naming`).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import ModuleType
from typing import Any

from replay_buffer.buffer import ReplayBuffer
from replay_buffer.config import BufferConfig, options
from replay_buffer.fields import normalize_fields, transition_fields
from replay_buffer.service.address import parse_address
from replay_buffer.service.protocol import Limits

tomllib: ModuleType | None
if sys.version_info >= (3, 11):
    import tomllib
else:
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

log = logging.getLogger("replay_buffer.service")

DEFAULT_LISTEN = "tcp://127.0.0.1:7777"
BUFFER_KEYS = frozenset(f.name for f, _ in options())
TRANSITION_KEYS = frozenset(("obs_shape", "action_dim", "obs_dtype", "action_type"))
LIMIT_KEYS = frozenset(f.name for f in fields(Limits))
TABLES = ("buffer", "transition", "fields", "server")


def flag_name(table: str, key: str) -> str:
    """Return the ``serve`` flag that sets ``key`` of ``[table]``: ``--capacity``, ``--field``."""
    return "--field" if table == "fields" else "--" + key.replace("_", "-")


class Naming:
    """How error messages name a setting: as the flag that gave it, or as the file's key.

    Args:
        from_flags: ``(table, key)`` of every setting given by a flag.
        from_file: ``(table, key)`` of every setting given in the config file.
        command_line: Whether flags exist at all (False: a config given as data only).

    """

    def __init__(
        self,
        from_flags: Collection[tuple[str, str]] = (),
        from_file: Collection[tuple[str, str]] = (),
        command_line: bool = False,
    ) -> None:
        """Remember where each setting came from."""
        self.from_flags = set(from_flags)
        self.from_file = set(from_file)
        self.command_line = command_line

    def key(self, table: str, key: str) -> str:
        """Name one setting: ``--capacity``, ``[buffer] capacity``, or both when it is unset."""
        if not self.command_line or (
            (table, key) in self.from_file and (table, key) not in self.from_flags
        ):
            return f"[{table}] {key}"
        if (table, key) in self.from_flags or not self.from_file:
            return flag_name(table, key)
        return f"{flag_name(table, key)} (or [{table}] {key})"

    def schema(self, table: str) -> str:
        """Name a way of giving the schema: ``[transition]`` or ``--obs-shape and --action-dim``."""
        flagged = any(t == table for t, _ in self.from_flags)
        if not self.command_line or (not flagged and any(t == table for t, _ in self.from_file)):
            return f"[{table}]"
        if table == "fields":
            return "--field NAME:DTYPE[:SHAPE] for each field"
        return "--obs-shape and --action-dim"

    def rewrite(self, message: str, table: str, keys: Collection[str]) -> str:
        """Put each key of ``[table]`` that ``message`` mentions in the user's own words."""
        if not keys:
            return message
        alternatives = "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))
        pattern = rf"(?<![\w\-\[])({alternatives})(?!\w)"
        return re.sub(pattern, lambda m: self.key(table, m.group(1)), message)


@dataclass(frozen=True)
class ServiceConfig:
    """Everything the server needs: the buffer's schema and options, addresses, limits, secret.

    Attributes:
        fields: The schema, ``{name: {"shape": ..., "dtype": ...}}``, in field order.
        buffer: Keyword arguments of :class:`~replay_buffer.BufferConfig` (its field names).
        listen: URLs to listen on (``unix:///path``, ``tcp://host:port``).
        shm_name: Shared-memory name for the buffer, so local processes can attach directly.
        token_file: File holding the shared secret clients must present.
        token_env: Environment variable holding it instead.
        status_interval: Seconds between status lines; 0 disables them.
        limits: Frame size, batch and pipelining limits.
        max_connections: Connections beyond this many are refused.
        workers: Threads per worker lane (inserts, samples, priority updates, clears).
        grace: Seconds a shutdown waits for requests already received.

    """

    fields: dict[str, dict[str, Any]]
    buffer: dict[str, Any]
    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    shm_name: str | None = None
    token_file: str | None = None
    token_env: str | None = None
    status_interval: float = 10.0
    limits: Limits = field(default_factory=Limits)
    max_connections: int = 1024
    workers: int = 4
    grace: float = 10.0

    def __post_init__(self) -> None:
        """Check what can be checked without side effects, so errors name the setting."""
        if not self.listen:
            raise ValueError("give at least one address to listen on")
        for url in self.listen:
            parse_address(url)
        if self.token_file and self.token_env:
            raise ValueError("give token_file or token_env, not both")
        for name in ("status_interval", "grace"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        for name in ("max_connections", "workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

    def buffer_config(self) -> BufferConfig:
        """Build the :class:`~replay_buffer.BufferConfig` the ``[buffer]`` table describes."""
        return BufferConfig(**self.buffer)

    def make_buffer(self) -> ReplayBuffer:
        """Create the buffer to serve."""
        config = self.buffer_config()
        if self.shm_name is None:
            return ReplayBuffer(config, fields=self.fields)
        return ReplayBuffer(config, fields=self.fields, shm_name=self.shm_name)

    def read_token(self, naming: Naming | None = None) -> bytes | None:
        """Read the shared secret from ``token_file`` or ``token_env`` (None when neither is set).

        Raises:
            ValueError: the file or variable is missing or empty; ``naming`` names the setting.

        """
        try:
            return self._read_token()
        except ValueError as exc:
            naming = naming or Naming()
            raise ValueError(
                naming.rewrite(str(exc), "server", ("token_file", "token_env"))
            ) from None

    def _read_token(self) -> bytes | None:
        if self.token_env:
            token = os.environ.get(self.token_env, "").strip()
            if not token:
                raise ValueError(f"token_env: environment variable {self.token_env} is not set")
            return token.encode()
        if self.token_file:
            path = Path(self.token_file)
            try:
                token = path.read_text().strip()
            except OSError as exc:
                raise ValueError(f"token_file: cannot read {path}: {exc.strerror}") from None
            if not token:
                raise ValueError(f"token_file: {path} is empty")
            if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                log.warning("token file %s is readable by other users; chmod 600 it", path)
            return token.encode()
        return None


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML config file into a dict.

    Raises:
        ValueError: the file cannot be read, is not valid TOML, or TOML cannot be read on this
            Python.

    """
    if tomllib is None:
        raise ValueError("reading a TOML config on Python 3.10 needs the tomli package")
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ValueError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _table(data: Mapping[str, Any], name: str, allowed: set[str] | None) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, Mapping):
        raise ValueError(f"[{name}] must be a table")
    if allowed is not None:
        unknown = set(table) - allowed
        if unknown:
            raise ValueError(
                f"[{name}]: unknown keys {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}"
            )
    return dict(table)


def from_dict(data: Mapping[str, Any], naming: Naming | None = None) -> ServiceConfig:
    """Build a :class:`ServiceConfig` from a config file's tables (see the module doc).

    Everything is checked here, the buffer's options and the schema included, so that a bad
    setting fails before anything is created.

    Args:
        data: The tables.
        naming: How errors name settings (default: as config-file keys).

    Raises:
        ValueError: unknown tables or keys, no schema, or a bad value.

    """
    naming = naming or Naming()
    unknown = set(data) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown tables {sorted(unknown)}; use {', '.join(TABLES)}")
    buffer = _buffer_options(_table(data, "buffer", BUFFER_KEYS | {"shm_name"}), naming)
    shm_name = buffer.pop("shm_name", None)
    if "capacity" not in buffer:
        raise ValueError(f"{naming.key('buffer', 'capacity')} is required")
    try:
        BufferConfig(**buffer)
    except (TypeError, ValueError) as exc:
        raise type(exc)(naming.rewrite(str(exc), "buffer", BUFFER_KEYS)) from None
    schema = _schema(data, naming)
    server_keys = {f.name for f in fields(ServiceConfig)} - {"fields", "buffer", "limits"}
    server = _table(data, "server", (server_keys | LIMIT_KEYS) - {"shm_name"})
    if "listen" in server:
        listen = server.pop("listen")
        server["listen"] = (listen,) if isinstance(listen, str) else tuple(listen)
    try:
        limits = Limits(**{k: server.pop(k) for k in LIMIT_KEYS & set(server)})
        return ServiceConfig(
            fields=schema, buffer=buffer, shm_name=shm_name, limits=limits, **server
        )
    except (TypeError, ValueError) as exc:
        keys = server_keys | LIMIT_KEYS
        raise type(exc)(naming.rewrite(str(exc), "server", keys)) from None


def _buffer_options(table: dict[str, Any], naming: Naming) -> dict[str, Any]:
    """Read text values (from a file) as their flags would: ``"none"``, ``"1e5"``, ..."""
    for f, option in options():
        value = table.get(f.name)
        if isinstance(value, str) and option.parse is not str:
            try:
                table[f.name] = option.parse(value)
            except ValueError:
                where = naming.key("buffer", f.name)
                raise ValueError(f"{where}: expected {option.expects}, got {value!r}") from None
    return table


def _schema(data: Mapping[str, Any], naming: Naming) -> dict[str, dict[str, Any]]:
    """Return the fields that ``[transition]`` or ``[fields]`` describe, checked."""
    transition = _table(data, "transition", TRANSITION_KEYS)
    schema = _table(data, "fields", None)
    if transition and schema:
        raise ValueError(
            f"describe the schema with {naming.schema('transition')} or with "
            f"{naming.schema('fields')}, not both"
        )
    if not transition and not schema:
        raise ValueError(
            f"no schema: give {naming.schema('transition')} (the transition obs, action, reward, "
            f"next_obs, done) or {naming.schema('fields')}"
        )
    missing = [k for k in ("obs_shape", "action_dim") if transition and k not in transition]
    if missing:
        names = " and ".join(naming.key("transition", k) for k in missing)
        raise ValueError(f"{names} {'is' if len(missing) == 1 else 'are'} required too")
    try:
        if transition:
            schema = transition_fields(
                transition["obs_shape"],
                transition["action_dim"],
                transition.get("obs_dtype", "float32"),
                transition.get("action_type", "discrete"),
            )
        normalize_fields(schema)
    except (TypeError, ValueError) as exc:
        raise type(exc)(naming.rewrite(str(exc), "transition", TRANSITION_KEYS)) from None
    return schema
