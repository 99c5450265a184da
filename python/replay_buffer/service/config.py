"""What ``replay-buffer serve`` serves and how: read from a TOML file, overridden by flags.

A config file has up to four tables::

    [buffer]                 # BufferConfig's arguments, plus shm_name
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
"""

from __future__ import annotations

import inspect
import logging
import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import ModuleType
from typing import Any

from replay_buffer.buffer import ReplayBuffer
from replay_buffer.config import BufferConfig
from replay_buffer.fields import transition_fields
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
_TRANSITION_KEYS = {"obs_shape", "action_dim", "obs_dtype", "action_type"}
_LIMIT_KEYS = {f.name for f in fields(Limits)}


@dataclass(frozen=True)
class ServiceConfig:
    """Everything the server needs: the buffer's schema and options, addresses, limits, secret.

    Attributes:
        fields: The schema, ``{name: {"shape": ..., "dtype": ...}}``, in field order.
        buffer: Keyword arguments of :class:`~replay_buffer.BufferConfig` (capacity, strategy,
            seed, and the strategy's parameters).
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
        try:
            return BufferConfig(**self.buffer)
        except TypeError as exc:
            known = ", ".join(inspect.signature(BufferConfig).parameters)
            raise ValueError(f"[buffer]: {exc}; BufferConfig takes {known}") from None

    def make_buffer(self) -> ReplayBuffer:
        """Create the buffer to serve."""
        config = self.buffer_config()
        if self.shm_name is None:
            return ReplayBuffer(config, fields=self.fields)
        return ReplayBuffer(config, fields=self.fields, shm_name=self.shm_name)

    def read_token(self) -> bytes | None:
        """Read the shared secret from ``token_file`` or ``token_env`` (None when neither is set).

        Raises:
            ValueError: the file or variable is missing or empty.

        """
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
        ValueError: the file is not valid TOML, or TOML cannot be read on this Python.

    """
    if tomllib is None:
        raise ValueError("reading a TOML config on Python 3.10 needs the tomli package")
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
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


def from_dict(data: Mapping[str, Any]) -> ServiceConfig:
    """Build a :class:`ServiceConfig` from a config file's tables (see the module doc).

    Raises:
        ValueError: unknown tables or keys, no schema, or a bad value.

    """
    unknown = set(data) - {"buffer", "transition", "fields", "server"}
    if unknown:
        raise ValueError(
            f"unknown tables {sorted(unknown)}; use buffer, transition, fields, server"
        )
    buffer = _table(data, "buffer", None)
    shm_name = buffer.pop("shm_name", None)
    if "capacity" not in buffer:
        raise ValueError("[buffer]: capacity is required")
    transition = _table(data, "transition", _TRANSITION_KEYS)
    schema = _table(data, "fields", None)
    if bool(transition) == bool(schema):
        raise ValueError("describe the schema with [transition] or [fields], exactly one")
    if transition:
        missing = {"obs_shape", "action_dim"} - set(transition)
        if missing:
            raise ValueError(f"[transition]: {', '.join(sorted(missing))} required")
        schema = transition_fields(
            transition["obs_shape"],
            transition["action_dim"],
            transition.get("obs_dtype", "float32"),
            transition.get("action_type", "discrete"),
        )
    server_keys = {f.name for f in fields(ServiceConfig)} - {"fields", "buffer", "limits"}
    server = _table(data, "server", (server_keys | _LIMIT_KEYS) - {"shm_name"})
    limits = Limits(**{k: server.pop(k) for k in _LIMIT_KEYS & set(server)})
    if "listen" in server:
        listen = server.pop("listen")
        server["listen"] = (listen,) if isinstance(listen, str) else tuple(listen)
    return ServiceConfig(fields=schema, buffer=buffer, shm_name=shm_name, limits=limits, **server)
