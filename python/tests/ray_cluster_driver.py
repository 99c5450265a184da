"""Driver for test_ray_cluster.py: a 3-node Ray cluster on loopback, shards on every node.

Run inside a private network namespace (where loopback is the only interface, so every address
Ray picks is 127.0.0.1). Prints one JSON line of results, which the test checks.
"""

import json
import sys
import time
import warnings

import numpy as np
import ray
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from replay_buffer import BufferConfig, _core
from replay_buffer.ray import ShardedReplayBuffer, ShardUnavailableWarning, split_keys

NODE_ARGS = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}


@ray.remote(num_cpus=1)
def write_from_node(buffer: ShardedReplayBuffer, first_id: int) -> dict:
    """Add an episode from a task on some node; report the node, the shard and the transport."""
    key = buffer.add_batch(id=np.arange(first_id, first_id + 20))
    node = ray.get_runtime_context().get_node_id()
    shard = int(split_keys(np.array([key]))[0][0])
    transport = buffer.transport(shard)
    buffer.close()
    return {"node": node, "shard": shard, "transport": transport}


@ray.remote(num_cpus=1)
class Learner:
    """Samples and updates priorities from an actor, holding two batches in flight."""

    def __init__(self, buffer: ShardedReplayBuffer) -> None:
        self.buffer = buffer

    def step(self) -> dict:
        first = self.buffer.sample(32)
        second = self.buffer.sample(32)
        # updates arrive out of order: the second batch's first
        applied = self.buffer.update_priorities(second["indices"], np.full(32, 50.0))
        applied += self.buffer.update_priorities(first["indices"], np.full(32, 0.5))
        shards = sorted(set(split_keys(first["indices"])[0].tolist()))
        return {"applied": applied, "shards": shards}


def main() -> None:
    started = time.monotonic()
    head = {**NODE_ARGS, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    workers = [cluster.add_node(**NODE_ARGS) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    out: dict = {"startup_s": round(time.monotonic() - started, 1)}
    try:
        config = BufferConfig(capacity=300, strategy="prioritized", alpha=1.0, eps=0.0, seed=0)
        buffer = ShardedReplayBuffer(config, fields={"id": {"dtype": "int64"}}, timeout=60)
        out["shard_nodes"] = [shard["node_id"] for shard in buffer.describe()["shards"]]
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        out["nodes"] = nodes
        out["writes"] = ray.get([
            write_from_node.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
            ).remote(buffer, 100 * i)
            for i, node in enumerate(nodes)
        ], timeout=60)  # fmt: skip
        out["driver_node"] = ray.get_runtime_context().get_node_id()
        out["driver_transports"] = [buffer.transport(i) for i in range(len(nodes))]
        stats = buffer.stats()
        out["socket_inserts"] = [stats["per_shard"][i]["inserts"] for i in range(len(nodes))]
        regions = [shard["shm"] for shard in buffer.describe()["shards"]]
        out["regions_made"] = sorted(set(regions) & set(_core.shm_list()))
        batch = buffer.sample(256)
        out["sampled_shards"] = sorted(set(split_keys(batch["indices"])[0].tolist()))
        out["size"] = buffer.size()
        learner = Learner.remote(buffer)
        out["learner"] = ray.get(learner.step.remote(), timeout=60)
        ray.kill(learner)
        # remove a worker node (not the head, where the driver runs) and the shard on it
        doomed = workers[-1].node_id
        lost = out["shard_nodes"].index(doomed)
        out["lost_shard"] = lost
        cluster.remove_node(workers[-1], allow_graceful=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            deadline = time.monotonic() + 30
            while lost in buffer.live_shards and time.monotonic() < deadline:
                batch = buffer.sample(128)
            after = buffer.sample(128)
            out["after_failure_shards"] = sorted(set(split_keys(after["indices"])[0].tolist()))
            key = buffer.add_batch(id=np.arange(5))
            out["write_after_failure_shard"] = int(split_keys(np.array([key]))[0][0])
        out["warnings"] = [str(w.message) for w in caught if w.category is ShardUnavailableWarning]
        stats = buffer.stats()
        kept = ("live_shards", "dead_shards", "shard_failures", "size")
        out["stats"] = {k: stats[k] for k in kept}
        buffer.shutdown()
        out["regions_left"] = sorted(set(regions) & set(_core.shm_list()))
    finally:
        ray.shutdown()
        cluster.shutdown()
    out["total_s"] = round(time.monotonic() - started, 1)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
