"""Scale-out on Ray: :class:`ShardedReplayBuffer`, a buffer split into shards across a cluster.

Install with ``pip install replay_buffer[ray]``. See docs/distributed.md.
"""

from replay_buffer.ray.keys import MAX_SHARDS, SHARD_SHIFT, global_key, split_keys
from replay_buffer.ray.sharded import (
    WRITER_POLICIES,
    ShardedReplayBuffer,
    ShardUnavailableWarning,
    shard_config_of,
)

__all__ = [
    "MAX_SHARDS",
    "SHARD_SHIFT",
    "WRITER_POLICIES",
    "ShardUnavailableWarning",
    "ShardedReplayBuffer",
    "global_key",
    "shard_config_of",
    "split_keys",
]
