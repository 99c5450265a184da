"""The replay service: serve a buffer over Unix and TCP sockets, and use it from anywhere.

- ``replay-buffer serve`` (:mod:`replay_buffer.tools.serve`) runs the server.
- :func:`connect` returns a client with :class:`~replay_buffer.ReplayBuffer`'s methods;
  :func:`replay_buffer.aio.connect` is the same with coroutines.
- ``docs/protocol.md`` specifies the wire format, for clients in other languages.
"""

from replay_buffer.service.client import Client, Pending, connect
from replay_buffer.service.protocol import Limits, ProtocolError, ServiceError
from replay_buffer.service.server import ReplayServer

__all__ = [
    "Client",
    "Limits",
    "Pending",
    "ProtocolError",
    "ReplayServer",
    "ServiceError",
    "connect",
]
