"""ShardedReplayBuffer over in-process servers: global sampling, weights, routing, failover.

The shards here are ReplayServers in threads of this process, used through a description, as a
process without Ray would; test_ray_cluster.py runs the same class on a real Ray cluster. Most
tests run twice: shards reached over their sockets, and shards in shared-memory regions of this
host, which the buffer attaches (the same-node data path).
"""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
import warnings

import numpy as np
import pytest
from service_support import ThreadedServer

from replay_buffer import BufferConfig, EmptyBufferError, ReplayBuffer, _core
from replay_buffer.ray import MAX_SHARDS, SHARD_SHIFT, ShardedReplayBuffer, global_key, split_keys
from replay_buffer.ray.keys import global_keys
from replay_buffer.ray.sharded import ShardUnavailableWarning, shard_config_of
from replay_buffer.ray.transport import LIVENESS_INTERVAL, host_id

from conftest import SHM_PREFIX

TOKEN = "sharded-test-token"
FIELDS = {"id": {"dtype": np.int64}}


class Shards:
    """N buffers, each served by a ThreadedServer, and a ShardedReplayBuffer over them.

    ``transport="shm"``: each buffer is created in a shared-memory region of this host, as a
    shard actor does, and the sharded buffer attaches it.
    """

    def __init__(
        self, n, strategy="prioritized", capacity=64, policy="round_robin", seed=0,
        transport="socket", **limits,
    ):  # fmt: skip
        self.transport = transport
        self.names = [
            SHM_PREFIX + uuid.uuid4().hex[:10] if transport == "shm" else None for _ in range(n)
        ]
        self.buffers = [
            ReplayBuffer(
                BufferConfig(capacity=capacity, strategy=strategy, alpha=1.0, eps=0.0, beta=0.5,
                             seed=seed + i, **limits),
                fields=FIELDS, shm_name=self.names[i],
            )
            for i in range(n)
        ]  # fmt: skip
        self.servers = [ThreadedServer(b, token=TOKEN.encode()) for b in self.buffers]
        self.description = {
            "shards": [
                {"index": i, "url": s.unix_url, "node_id": None, "shm": self.names[i],
                 "host": host_id() if transport == "shm" else None}
                for i, s in enumerate(self.servers)
            ],  # fmt: skip
            "token": TOKEN,
            "strategy": strategy,
            "beta": 0.5,
            "writer_policy": policy,
            "timeout": 20.0,
            "sample_seed": seed,
        }
        self.sharded = ShardedReplayBuffer.from_description(self.description)
        self.stopped = set()

    def stop(self, i):
        """Stop shard i as its actor would: the server, then the buffer (removing its region)."""
        self.servers[i].stop()
        self.buffers[i].close()
        self.stopped.add(i)
        time.sleep(LIVENESS_INTERVAL)  # shared memory: the next call checks the shard again

    def close(self):
        self.sharded.close()
        for i, server in enumerate(self.servers):
            if i not in self.stopped:
                server.stop()
                self.buffers[i].close()


@pytest.fixture(params=["socket", "shm"])
def transport(request):
    return request.param


@pytest.fixture
def shards(transport):
    made = []

    def make(*args, **kwargs):
        kwargs.setdefault("transport", transport)
        made.append(Shards(*args, **kwargs))
        return made[-1]

    yield make
    for s in made:
        s.close()


def chi_square_ok(observed, expected):
    keep = expected > 0
    chi2 = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    df = keep.sum() - 1
    return chi2 < df + 6 * np.sqrt(2 * df), chi2


def fill_skewed(s, per_shard=5):
    """Shard k holds ids 100k..100k+per_shard-1 with priority (k+1)^2 * (j+1): heavily skewed."""
    priorities = {}
    for k in range(len(s.buffers)):
        ids = np.arange(per_shard) + 100 * k
        s.sharded.writer_policy = "route"
        first = None
        # route keys chosen so that each batch lands on shard k: find one that hashes there
        for route in range(1000):
            live = s.sharded.live_shards
            import zlib

            if live[zlib.crc32(repr(route).encode()) % len(live)] == k:
                first = s.sharded.add_batch(id=ids, route_key=route)
                break
        assert first is not None and split_keys(np.array([first]))[0][0] == k
        keys = first + np.arange(per_shard)
        p = (k + 1) ** 2 * (np.arange(per_shard) + 1.0)
        assert s.sharded.update_priorities(keys, priorities=p) == per_shard
        for i, key in zip(ids, keys, strict=True):
            priorities[int(i)] = (int(key), float(p[i % 100]))
    return priorities


def test_key_layout():
    assert global_key(3, 5) == 3 << SHARD_SHIFT | 5
    shard, local = split_keys(np.array([global_key(0, 7), global_key(MAX_SHARDS - 1, 2**56 - 1)]))
    assert shard.tolist() == [0, MAX_SHARDS - 1] and local.tolist() == [7, 2**56 - 1]
    assert global_key(MAX_SHARDS - 1, 2**56 - 1) < 2**63  # an int64, never negative
    with pytest.raises(OverflowError):
        global_key(1, 2**56)
    assert global_keys(2, np.array([0, 1])).dtype == np.int64


def test_writes_go_round_robin_and_keys_carry_their_shard(shards):
    s = shards(3, strategy="uniform")
    firsts = [s.sharded.add_batch(id=np.arange(4) + 10 * i) for i in range(6)]
    assert sorted(split_keys(np.array(firsts))[0].tolist()) == [0, 0, 1, 1, 2, 2]
    assert [b.size() for b in s.buffers] == [8, 8, 8]
    key = s.sharded.add(id=99)
    shard, local = split_keys(np.array([key]))
    assert s.buffers[shard[0]].size() == 9 and local[0] == 8
    assert s.sharded.size() == 25 and s.sharded.capacity() == 3 * 64


def test_prioritized_global_distribution_chi_square(shards):
    s = shards(4)
    priorities = fill_skewed(s)
    ids = sorted(priorities)
    p = np.array([priorities[i][1] for i in ids])
    expected_p = p / p.sum()
    counts = dict.fromkeys(ids, 0)
    draws = 0
    while draws < 40_000:
        batch = s.sharded.sample(200)
        for i in batch["id"]:
            counts[int(i)] += 1
        draws += 200
    observed = np.array([counts[i] for i in ids], dtype=np.float64)
    ok, chi2 = chi_square_ok(observed, expected_p * draws)
    assert ok, chi2
    # every shard gets its share of the mass, not a quarter each (shard 3 has 16x shard 0's mass)
    per_shard = observed.reshape(4, 5).sum(axis=1) / draws
    np.testing.assert_allclose(per_shard, expected_p.reshape(4, 5).sum(axis=1), atol=0.01)


def test_weights_equal_one_buffer_holding_the_same_data(shards):
    s = shards(4)
    priorities = fill_skewed(s)
    single = ReplayBuffer(
        BufferConfig(capacity=64, strategy="prioritized", alpha=1.0, eps=0.0, seed=1),
        fields=FIELDS,
    )
    ids = sorted(priorities)
    single.add_batch(id=np.array(ids))
    single.update_priorities(np.arange(len(ids)), priorities=[priorities[i][1] for i in ids])
    for beta in (0.5, 1.0, 0.0):
        reference = {}
        while len(reference) < len(ids):
            batch = single.sample(256, beta=beta)
            reference.update(zip(batch["id"].tolist(), batch["weights"].tolist(), strict=True))
        # small batches too: the minimum probability is global, not the batch's or a shard's
        for size in (512, 32, 32, 32, 8):
            batch = s.sharded.sample(size, beta=beta)
            assert batch["weights"].dtype == np.float32
            expected = np.array([reference[int(i)] for i in batch["id"]], dtype=np.float32)
            np.testing.assert_allclose(batch["weights"], expected, rtol=1e-6)
            # the global key of each row is the key its shard gave that id
            assert [priorities[int(i)][0] for i in batch["id"]] == batch["indices"].tolist()
    assert s.sharded.sample(64)["weights"].min() < 0.2  # beta 0.5 by default: not all ones


def test_uniform_draws_in_proportion_to_shard_sizes(shards):
    s = shards(2, strategy="uniform")
    s.sharded.writer_policy = "route"
    routes = {}
    for route in range(50):
        routes.setdefault(split_keys(np.array([s.sharded.add(id=0, route_key=route)]))[0][0], route)
    s.sharded.close()
    for b in s.buffers:
        b.clear()
    s.sharded.add_batch(id=np.arange(10), route_key=routes[0])
    s.sharded.add_batch(id=np.arange(30) + 100, route_key=routes[1])
    draws = 20_000
    shard_counts = np.zeros(2)
    for _ in range(draws // 500):
        batch = s.sharded.sample(500)
        assert "weights" not in batch
        shard_counts += np.bincount(split_keys(batch["indices"])[0], minlength=2)
    ok, chi2 = chi_square_ok(shard_counts, np.array([0.25, 0.75]) * draws)
    assert ok, chi2


def test_updates_go_one_message_per_shard_and_stale_keys_are_ignored(shards):
    s = shards(3, capacity=4)
    keys = [s.sharded.add_batch(id=np.arange(4)) + np.arange(4) for _ in range(3)]
    before = [b.priorities(np.arange(4)).copy() for b in s.buffers]

    def update_requests():
        # a server counts a request just after handing its reply to the socket: give it a moment
        deadline = time.monotonic() + 5
        while True:
            ops = [srv.server.stats.snapshot()["operations"] for srv in s.servers]
            counts = [op.get("update_priorities", {}).get("requests", 0) for op in ops]
            if sum(counts) >= 3 or time.monotonic() > deadline:
                time.sleep(0.05)  # and a little longer, in case a shard got a second message
                ops = [srv.server.stats.snapshot()["operations"] for srv in s.servers]
                return [op.get("update_priorities", {}).get("requests", 0) for op in ops]
            time.sleep(0.01)

    mixed = np.concatenate(keys)[::-1]  # shards interleaved, out of order
    assert s.sharded.update_priorities(mixed, priorities=np.full(12, 7.0)) == 12
    if s.transport == "socket":
        assert update_requests() == [1, 1, 1]
    else:  # through the regions: no message at all
        assert [s.sharded.transport(i) for i in range(3)] == ["shm"] * 3
        assert update_requests() == [0, 0, 0]
    for b, old in zip(s.buffers, before, strict=True):
        assert (b.priorities(np.arange(4)) == 7.0).all() and not (old == 7.0).all()
    # overwrite shard 0's items: its old keys are stale, the others' still apply
    stale = split_keys(keys[0])[0][0]
    s.buffers[stale].add_batch(id=np.arange(4))
    assert s.sharded.update_priorities(np.concatenate(keys), priorities=np.ones(12)) == 8


def test_bad_updates_change_nothing_anywhere(shards):
    s = shards(2, capacity=8)
    keys = np.concatenate([s.sharded.add_batch(id=np.arange(2)) + np.arange(2) for _ in range(2)])
    before = [b.priorities(np.arange(2)).copy() for b in s.buffers]
    with pytest.raises(ValueError, match=r"priorities\[3\] is nan"):
        s.sharded.update_priorities(keys, priorities=[1.0, 2.0, 3.0, np.nan])
    with pytest.raises(ValueError, match="priorities must be >= 0"):
        s.sharded.update_priorities(keys, priorities=[1.0, -2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="got 4 indices and 3"):
        s.sharded.update_priorities(keys, [1.0, 2.0, 3.0])
    with pytest.raises(IndexError, match="names shard 9; this buffer has 2"):
        s.sharded.update_priorities([global_key(9, 0)], [1.0])
    with pytest.raises(IndexError, match="a key shard 1 never handed out"):
        # shard 0's part is valid: it must not be applied either
        s.sharded.update_priorities([keys[0], global_key(1, 5)], [9.0, 9.0])
    with pytest.raises(IndexError, match="not a key"):
        s.sharded.update_priorities([-1], [1.0])
    with pytest.raises(TypeError, match="exactly one"):
        s.sharded.update_priorities(keys)
    with pytest.raises(TypeError, match="integer keys"):
        s.sharded.update_priorities(keys.astype(float), [1.0] * 4)
    for b, old in zip(s.buffers, before, strict=True):
        np.testing.assert_array_equal(b.priorities(np.arange(2)), old)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        s.sharded.sample(0)
    with pytest.raises(ValueError, match="beta"):
        s.sharded.sample(4, beta=float("nan"))


def test_empty_and_uniform_refusals(shards):
    s = shards(2, strategy="uniform")
    with pytest.raises(EmptyBufferError):
        s.sharded.sample(4)
    with pytest.raises(ValueError, match="prioritized"):
        s.sharded.update_priorities([0], [1.0])


def test_a_dead_shard_is_left_out_with_a_warning_and_writers_fail_over(shards):
    s = shards(3, strategy="prioritized")
    keys = np.concatenate([s.sharded.add_batch(id=np.arange(5) + 10 * i) + np.arange(5)
                           for i in range(3)])  # fmt: skip
    s.stop(1)
    with pytest.warns(ShardUnavailableWarning, match="shard 1 .* the transitions it held are lost"):
        batch = s.sharded.sample(300)
    assert set(split_keys(batch["indices"])[0].tolist()) == {0, 2}
    assert s.sharded.live_shards == [0, 2]
    stats = s.sharded.stats()
    assert stats["dead_shards"] == [1] and stats["shard_failures"] == 1 and stats["size"] == 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per shard, not at every call
        firsts = [s.sharded.add_batch(id=np.arange(2)) for _ in range(4)]
        assert 1 not in split_keys(np.array(firsts))[0]
        # keys of the dead shard are ignored, like stale ones
        assert s.sharded.update_priorities(keys, priorities=np.ones(15)) == 10
    # a pickled copy knows the shard is dead and does not try it again
    copy = pickle.loads(pickle.dumps(s.sharded))
    assert copy.live_shards == [0, 2]
    copy.close()


def test_a_shard_dying_between_writes_fails_the_writer_over(shards):
    s = shards(2, strategy="uniform", policy="round_robin")
    s.sharded.add(id=1)
    s.sharded.add(id=2)  # both shards connected
    s.stop(0)
    with pytest.warns(ShardUnavailableWarning):
        keys = [s.sharded.add(id=3) for _ in range(4)]
    assert set(split_keys(np.array(keys))[0].tolist()) == {1}
    s.stop(1)
    with pytest.warns(ShardUnavailableWarning):
        with pytest.raises(ConnectionError, match="all 2 shards"):
            s.sharded.add(id=4)
    with pytest.raises(ConnectionError, match="all 2 shards"):
        s.sharded.sample(1)


def test_pickles_as_its_description_and_routes_by_key(shards):
    s = shards(3, strategy="uniform", policy="route")
    text = json.dumps(s.sharded.describe())  # plain data: travels as JSON to any process
    assert "sample_seed" not in text
    copy = ShardedReplayBuffer.from_description(json.loads(text))
    again = pickle.loads(pickle.dumps(s.sharded))
    for route in ("episode-1", 7, ("env", 3)):
        where = {split_keys(np.array([b.add(id=1, route_key=route)]))[0][0]
                 for b in (s.sharded, copy, again) for _ in range(3)}  # fmt: skip
        assert len(where) == 1
    with pytest.raises(TypeError, match="route_key"):
        s.sharded.add(id=1)
    assert s.sharded.size() == 27
    copy.close()
    again.close()


def test_shard_configs_split_capacity_seed_and_rate_limit():
    config = BufferConfig(capacity=10, seed=5, min_size_to_sample=5, samples_per_insert=2.0)
    parts = [shard_config_of(config, i, 3) for i in range(3)]
    assert [c.capacity for c in parts] == [4, 3, 3]
    assert [c.seed for c in parts] == [5, 6, 7]
    assert [c.min_size_to_sample for c in parts] == [2, 2, 2]
    assert all(c.samples_per_insert == 2.0 for c in parts)


def test_least_full_writes_to_the_emptiest_shard(shards):
    s = shards(3, strategy="uniform", policy="least_full")
    s.buffers[0].add_batch(id=np.arange(5))
    s.buffers[2].add_batch(id=np.arange(3))
    shard_of = [split_keys(np.array([s.sharded.add(id=1)]))[0][0] for _ in range(5)]
    assert shard_of == [1, 1, 1, 1, 2]  # sizes 5,0,3 -> 5,3,3 (a tie: the lower index) -> 5,4,3


def test_local_policy_outside_ray_falls_back_to_round_robin(shards):
    s = shards(2, strategy="uniform", policy="local", transport="socket")
    shard_of = {split_keys(np.array([s.sharded.add(id=1)]))[0][0] for _ in range(4)}
    assert shard_of == {0, 1}


def test_local_policy_outside_ray_writes_to_a_shard_of_this_host(shards):
    s = shards(3, strategy="uniform", policy="local", transport="shm")
    description = s.sharded.describe()
    description["shards"][1]["host"] = "another-host/boot"  # not this host: never local
    sharded = ShardedReplayBuffer.from_description(description)
    try:
        shard_of = {split_keys(np.array([sharded.add(id=1)]))[0][0] for _ in range(4)}
        assert shard_of == {[0, 2][os.getpid() % 2]}  # one of this host's, by pid
        assert [sharded.transport(i) for i in range(3)] == ["shm", "socket", "shm"]
    finally:
        sharded.close()


def test_a_bad_description_or_policy_is_refused(shards):
    s = shards(2, strategy="uniform")
    description = s.sharded.describe()
    with pytest.raises(ValueError, match="writer_policy must be one of"):
        ShardedReplayBuffer.from_description({**description, "writer_policy": "random"})
    with pytest.raises(ValueError, match="shards 0 to N-1"):
        ShardedReplayBuffer.from_description({**description, "shards": description["shards"][1:]})


def test_a_rate_limit_timeout_is_the_callers_not_a_shard_failure(shards):
    s = shards(2, strategy="uniform", min_size_to_sample=4, rate_limit_timeout=0.2)
    s.sharded.add_batch(id=np.arange(4))  # one shard has enough, the other none
    s.sharded.add_batch(id=np.arange(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(5):  # some batches draw from the shard still below its minimum
            try:
                s.sharded.sample(8)
            except TimeoutError:
                break
        else:
            pytest.fail("no sample waited for the shard below min_size_to_sample")
    assert s.sharded.live_shards == [0, 1] and s.sharded.stats()["shard_failures"] == 0


def test_a_shard_that_does_not_reply_in_time_is_failed(shards):
    # socket only: through shared memory there is no reply to wait for, only the rate limit
    s = shards(2, strategy="uniform", min_size_to_sample=4, transport="socket")
    description = {**s.description, "timeout": 0.3}
    sharded = ShardedReplayBuffer.from_description(description)
    sharded.add_batch(id=np.arange(4))
    sharded.add_batch(id=np.arange(1))
    try:
        with pytest.warns(ShardUnavailableWarning, match="no reply from"):
            for _ in range(20):  # until a batch draws from the shard that cannot answer
                sharded.sample(8)
                if sharded.live_shards != [0, 1]:
                    break
        assert len(sharded.live_shards) == 1
    finally:
        sharded.close()


def test_shards_of_this_host_are_attached_the_others_reached_by_socket(shards):
    s = shards(3, strategy="prioritized", transport="shm")
    description = s.sharded.describe()
    assert [shard["shm"] for shard in description["shards"]] == s.names
    description["shards"][2]["host"] = "another-host/boot"
    sharded = ShardedReplayBuffer.from_description(json.loads(json.dumps(description)))
    try:
        keys = [sharded.add_batch(id=np.arange(4) + 10 * i) for i in range(6)]
        assert [sharded.transport(i) for i in range(3)] == ["shm", "shm", "socket"]
        # a server counts a request just after handing its reply to the socket: give it a moment
        deadline = time.monotonic() + 5
        while (
            s.servers[2].server.stats.snapshot()["inserts"] < 8 and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        inserts = [srv.server.stats.snapshot()["inserts"] for srv in s.servers]
        assert inserts == [0, 0, 8]  # shards 0 and 1 written through their regions
        assert [b.size() for b in s.buffers] == [8, 8, 8]
        batch = sharded.sample(300, fields=["id"])
        assert set(split_keys(batch["indices"])[0].tolist()) == {0, 1, 2}
        assert set(batch) == {"id", "indices", "weights"}
        np.testing.assert_array_equal(batch["weights"], 1.0)  # equal priorities
        all_keys = np.concatenate([k + np.arange(4) for k in keys])
        assert sharded.update_priorities(all_keys, priorities=np.arange(24) + 1.0) == 24
        for shard in range(3):
            local = split_keys(all_keys)[1][split_keys(all_keys)[0] == shard]
            expected = (np.arange(24) + 1.0)[split_keys(all_keys)[0] == shard]
            np.testing.assert_array_equal(s.buffers[shard].priorities(local), expected)
        stats = sharded.stats()
        assert stats["transports"] == {0: "shm", 1: "shm", 2: "socket"}
        assert stats["size"] == 24 and stats["per_shard"][0]["size"] == 8
        with pytest.raises(KeyError, match="no field named 'nope'"):
            sharded.sample(4, fields=["nope"])
    finally:
        sharded.close()


def test_a_region_that_cannot_be_attached_is_reached_by_socket(shards):
    s = shards(2, strategy="uniform", transport="shm")
    description = s.sharded.describe()
    description["shards"][0]["shm"] = SHM_PREFIX + "never-made"
    sharded = ShardedReplayBuffer.from_description(description)
    try:
        assert [sharded.transport(i) for i in range(2)] == ["socket", "shm"]
        sharded.add(id=1)
        sharded.add(id=2)
        assert [b.size() for b in s.buffers] == [1, 1]
    finally:
        sharded.close()


CREATOR = """
import sys, time
import numpy as np
from replay_buffer import BufferConfig, ReplayBuffer
config = BufferConfig(capacity=64, strategy="prioritized", alpha=1.0, eps=0.0, seed=9)
buffer = ReplayBuffer(config, fields={"id": {"dtype": np.int64}}, shm_name=sys.argv[1])
buffer.add_batch(id=np.arange(5) + 500)
print("ready", flush=True)
time.sleep(60)
"""


def test_a_killed_shard_process_is_dead_and_its_region_removed(shards):
    """SIGKILL the process that created a shard's region: the handle drops it like a dead
    socket shard (the region is still mapped here, but the others no longer sample it) and
    removes the orphaned name."""
    s = shards(2, strategy="prioritized", transport="shm")
    name = SHM_PREFIX + uuid.uuid4().hex[:10]
    child = subprocess.Popen(
        [sys.executable, "-c", CREATOR, name], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        description = s.sharded.describe()
        description["shards"].append(
            {"index": 2, "url": "unix:///nonexistent/shard.sock", "node_id": None,
             "host": host_id(), "shm": name}
        )  # fmt: skip
        sharded = ShardedReplayBuffer.from_description(description)
        s.buffers[0].add_batch(id=np.arange(5))
        batch = sharded.sample(200)
        assert set(split_keys(batch["indices"])[0].tolist()) == {0, 2}  # shard 1 is empty
        assert sharded.transport(2) == "shm"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        time.sleep(LIVENESS_INTERVAL)
        with pytest.warns(ShardUnavailableWarning, match="shard 2 .*died"):
            batch = sharded.sample(200)
        assert set(split_keys(batch["indices"])[0].tolist()) == {0}
        assert sharded.live_shards == [0, 1]
        with pytest.raises(FileNotFoundError):
            _core.shm_info(name)  # removed by the handle that found its creator dead
        sharded.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        try:
            _core.shm_unlink(name)
        except FileNotFoundError:
            pass


def test_a_shard_whose_region_does_not_fit_falls_back_to_private_memory(monkeypatch):
    pytest.importorskip("ray")
    from replay_buffer.errors import CapacityError
    from replay_buffer.ray import shard as shard_module

    def no_room(*args, shm_name=None, **kwargs):
        if shm_name is not None:  # what /dev/shm too small for the region raises
            raise CapacityError(f"{shm_name} does not fit in /dev/shm")
        return ReplayBuffer(*args, **kwargs)

    monkeypatch.setattr(shard_module, "ReplayBuffer", no_room)
    config = {"capacity": 8, "strategy": "uniform"}
    name = SHM_PREFIX + uuid.uuid4().hex[:10]
    server = shard_module.ShardServer(
        0, config, {"id": {"shape": [], "dtype": "int64"}}, TOKEN, host="127.0.0.1",
        shm_name=name,
    )  # fmt: skip
    try:
        described = server.describe()
        assert described["shm"] is None and "does not fit" in described["shm_error"]
        sharded = ShardedReplayBuffer.from_description({
            "shards": [described], "token": TOKEN, "strategy": "uniform", "beta": 0.4,
            "writer_policy": "local", "timeout": 20.0,
        })  # fmt: skip
        assert sharded.transport(0) == "socket"  # on this host, but there is no region
        sharded.add(id=3)
        assert server.buffer.size() == 1
        sharded.close()
    finally:
        server.stop()
