"""Fast, thread-safe experience replay buffers for reinforcement learning.

>>> from replay_buffer import ReplayBuffer, BufferConfig
>>> buffer = ReplayBuffer(BufferConfig(capacity=1000, seed=0), obs_shape=(4,), action_dim=2)

``ReplayBuffer`` needs the compiled extension (``replay_buffer._core``) and is imported when first
used; the socket client (:func:`connect`), :class:`BufferConfig` and the exceptions are pure
Python, so a machine without the extension can still talk to a ``replay-buffer serve`` process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from replay_buffer._version import __version__
from replay_buffer.config import BufferConfig
from replay_buffer.errors import CapacityError, EmptyBufferError, InvalidRegionError
from replay_buffer.service.client import connect

if TYPE_CHECKING:
    from replay_buffer.buffer import ReplayBuffer

__all__ = [
    "BufferConfig",
    "CapacityError",
    "EmptyBufferError",
    "InvalidRegionError",
    "ReplayBuffer",
    "__version__",
    "connect",
]


def __getattr__(name: str) -> Any:
    """Import ``ReplayBuffer`` (and with it the C++ extension) when it is first asked for."""
    if name == "ReplayBuffer":
        try:
            from replay_buffer.buffer import ReplayBuffer
        except ImportError as exc:
            raise ImportError(
                f"replay_buffer.ReplayBuffer needs the compiled extension replay_buffer._core, "
                f"which cannot be imported here ({exc}); the socket client, "
                "replay_buffer.connect, works without it"
            ) from exc
        globals()["ReplayBuffer"] = ReplayBuffer
        return ReplayBuffer
    raise AttributeError(f"module 'replay_buffer' has no attribute {name!r}")


def __dir__() -> list[str]:
    """List the package's names, ``ReplayBuffer`` included before it is imported."""
    return sorted({*globals(), "ReplayBuffer"})
