"""Fast, thread-safe experience replay buffers for reinforcement learning.

>>> from replay_buffer import ReplayBuffer, BufferConfig
>>> buffer = ReplayBuffer(BufferConfig(capacity=1000, seed=0), obs_shape=(4,), action_dim=2)
"""

from replay_buffer._core import CapacityError, EmptyBufferError, InvalidRegionError
from replay_buffer.buffer import ReplayBuffer
from replay_buffer.config import BufferConfig
from replay_buffer.service.client import connect

__all__ = [
    "BufferConfig",
    "CapacityError",
    "EmptyBufferError",
    "InvalidRegionError",
    "ReplayBuffer",
    "connect",
]
__version__ = "0.1.0"
