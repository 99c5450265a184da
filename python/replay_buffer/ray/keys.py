"""Global keys of a sharded buffer: the shard's index in the high bits, the shard's key below.

Layout of a 64-bit key returned by :class:`~replay_buffer.ray.ShardedReplayBuffer` (an int64,
always non-negative)::

    bit 63      bits 62..56          bits 55..0
    0           shard index (0-127)  the key the shard's own buffer handed out

A shard's buffer counts its keys from 0 and never reuses one, so a global key names exactly one
transition for the buffer's life; an update for a key whose transition was overwritten is ignored
by that shard as by any buffer.
"""

from __future__ import annotations

import numpy as np

SHARD_SHIFT = 56
MAX_SHARDS = 128  # 7 bits: bit 63 stays 0 so that keys are non-negative int64
LOCAL_MASK = (1 << SHARD_SHIFT) - 1


def global_key(shard: int, local: int) -> int:
    """Return the global key of the shard's key ``local``.

    Raises:
        OverflowError: the shard has handed out 2**56 keys (at a billion adds a second, after
            two years).

    """
    if local > LOCAL_MASK:
        raise OverflowError(f"shard {shard} key {local} does not fit in {SHARD_SHIFT} bits")
    return shard << SHARD_SHIFT | local


def global_keys(shard: int, local: np.ndarray) -> np.ndarray:
    """Return the global keys (int64) of an array of the shard's keys."""
    local = np.asarray(local, dtype=np.int64)
    if local.size and int(local.max()) > LOCAL_MASK:
        raise OverflowError(f"shard {shard} keys do not fit in {SHARD_SHIFT} bits")
    return local | np.int64(shard << SHARD_SHIFT)


def split_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(shard, local)`` arrays of global keys (int64 or uint64, non-negative)."""
    keys = np.asarray(keys)
    return (keys >> SHARD_SHIFT).astype(np.int64), (keys & LOCAL_MASK).astype(np.int64)
