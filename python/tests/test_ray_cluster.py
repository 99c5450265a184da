"""ShardedReplayBuffer on a real 3-node Ray cluster: placement, sampling, updates, node failure.

Ray binds to the machine's own address when it has one besides loopback, so the cluster runs in a
private network namespace (``unshare -n``, root only) where loopback is all there is. The driver
script (ray_cluster_driver.py) runs there in a subprocess and prints its results as JSON.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = Path(__file__).with_name("ray_cluster_driver.py")
TIME_LIMIT = 150  # seconds for the whole cluster's life; it takes about 40 on 2 busy cores


def _skip_reason() -> str | None:
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed (pip install replay_buffer[ray])"
    if sys.platform != "linux" or os.geteuid() != 0:
        return "a private network namespace (unshare -n) needs Linux and root"
    if not shutil.which("unshare") or not shutil.which("ip"):
        return "unshare or ip (util-linux, iproute2) not found"
    probe = subprocess.run(
        ["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, timeout=10
    )
    if probe.returncode:
        return f"unshare -n is not permitted here: {probe.stderr.decode().strip()}"
    return None


@pytest.fixture(scope="module")
def cluster_run():
    reason = _skip_reason()
    if reason:
        pytest.skip(f"no Ray cluster test: {reason}")
    script = f"ip link set lo up && exec {sys.executable} {DRIVER}"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run(
        ["unshare", "-n", "sh", "-c", script],
        capture_output=True, text=True, timeout=TIME_LIMIT, env=env,
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(lines[-1][len("RESULT ") :])


def test_one_shard_per_node_and_writers_use_their_nodes_shard(cluster_run):
    assert sorted(cluster_run["shard_nodes"]) == sorted(cluster_run["nodes"])
    assert len(set(cluster_run["nodes"])) == 3
    for write in cluster_run["writes"]:
        assert cluster_run["shard_nodes"][write["shard"]] == write["node"]


def test_writers_reach_their_nodes_shard_through_shared_memory(cluster_run):
    assert [write["transport"] for write in cluster_run["writes"]] == ["shm"] * 3
    assert cluster_run["socket_inserts"] == [0, 0, 0]  # no write went through a shard's server
    # the driver, on the head node, attaches the head node's shard and uses sockets for the rest
    expected = ["shm" if node == cluster_run["driver_node"] else "socket"
                for node in cluster_run["shard_nodes"]]  # fmt: skip
    assert cluster_run["driver_transports"] == expected
    assert len(cluster_run["regions_made"]) == 3
    assert cluster_run["regions_left"] == []  # the killed shard's too: shutdown removed it


def test_sampling_and_out_of_order_updates_span_every_shard(cluster_run):
    assert cluster_run["size"] == 60
    assert cluster_run["sampled_shards"] == [0, 1, 2]
    assert cluster_run["learner"] == {"applied": 64, "shards": [0, 1, 2]}


def test_a_removed_node_leaves_sampling_and_writing_to_the_others(cluster_run):
    lost = cluster_run["lost_shard"]
    others = sorted({0, 1, 2} - {lost})
    assert cluster_run["after_failure_shards"] == others
    assert cluster_run["write_after_failure_shard"] in others
    assert len(cluster_run["warnings"]) == 1 and f"shard {lost}" in cluster_run["warnings"][0]
    assert cluster_run["stats"] == {
        "live_shards": others, "dead_shards": [lost], "shard_failures": 1, "size": 45,
    }  # fmt: skip
