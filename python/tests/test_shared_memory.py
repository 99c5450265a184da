"""Shared-memory buffers: create and attach, lifetime, errors, and real processes at work."""

import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from replay_buffer import BufferConfig, InvalidRegionError, ReplayBuffer, _core

import shm_support as s
from conftest import SHM_PREFIX

FORK = mp.get_context("fork")
SPAWN = mp.get_context("spawn")


def shm_exists(name: str) -> bool:
    return os.path.exists(f"/dev/shm/{name}")


# --- one process ---------------------------------------------------------------------------


def test_attach_sees_the_same_buffer(shm_name):
    config = BufferConfig(
        capacity=32, strategy="prioritized", alpha=0.7, beta=0.5, eps=0.01, seed=9
    )
    with ReplayBuffer(config, fields=s.FIELDS, shm_name=shm_name) as created:
        created.add_batch(**s.rows(np.arange(10)))
        attached = ReplayBuffer.attach(shm_name)
        assert attached.config == config
        assert attached.fields.keys() == created.fields.keys()
        assert attached.fields["obs"]["shape"] == (s.OBS,)
        assert attached.shm_name == created.shm_name == shm_name
        assert len(attached) == 10 and attached.next_key() == 10
        batch = attached.sample(64)
        assert s.torn(batch) == 0 and set(batch["id"]) <= set(range(10))
        attached.add(**{k: v[0] for k, v in s.rows([10]).items()})
        assert len(created) == 11
        attached.beta = 0.9
        assert created.beta == 0.9
        assert attached.update_priorities([3], [2.0]) == 1
        np.testing.assert_allclose(created.priorities([3]), (2.0 + 0.01) ** 0.7)
        assert "shm_name=" in repr(attached)
        attached.close()
    assert not shm_exists(shm_name)


def test_names_are_checked(shm_name):
    for bad in ["", "a/b", ".x", "with space", "x" * 201]:
        with pytest.raises(ValueError, match="name"):
            s.make(bad)
        with pytest.raises(ValueError, match="name"):
            ReplayBuffer.attach(bad)
    with pytest.raises(TypeError, match="shm_mode must be an int"):
        ReplayBuffer(BufferConfig(capacity=4), fields=s.FIELDS, shm_name=shm_name, shm_mode="rw")
    with pytest.raises(ValueError, match="permission bits"):
        ReplayBuffer(BufferConfig(capacity=4), fields=s.FIELDS, shm_name=shm_name, shm_mode=0o1777)
    assert not shm_exists(shm_name)


def test_an_existing_name_is_refused(shm_name):
    with s.make(shm_name):
        with pytest.raises(FileExistsError, match=f"'{shm_name}' already exists"):
            s.make(shm_name)
        assert shm_exists(shm_name)  # the failed attempt left the first alone


def test_attaching_to_nothing_is_refused(shm_name):
    with pytest.raises(FileNotFoundError, match=f"no shared buffer named '{shm_name}'"):
        ReplayBuffer.attach(shm_name)


def test_regions_that_are_not_replay_buffers_are_refused(shm_name):
    from multiprocessing import shared_memory

    other = shared_memory.SharedMemory(name=shm_name, create=True, size=4096)
    try:
        other.buf[:8] = b"notours!"
        with pytest.raises(InvalidRegionError, match="not a replay buffer region"):
            ReplayBuffer.attach(shm_name)
        other.buf[:8] = bytes(8)
        with pytest.raises(InvalidRegionError, match="not initialised"):
            ReplayBuffer.attach(shm_name, timeout=0.05)
    finally:
        other.close()
        other.unlink()


def test_truncated_regions_are_refused(shm_name):
    with s.make(shm_name, capacity=1000):
        os.truncate(f"/dev/shm/{shm_name}", 8192)
        with pytest.raises(InvalidRegionError, match="truncated or resized"):
            ReplayBuffer.attach(shm_name)


def test_mode_is_exact_and_owner_only_by_default(shm_name):
    with s.make(shm_name):
        assert os.stat(f"/dev/shm/{shm_name}").st_mode & 0o777 == 0o600
        assert _core.shm_info(shm_name)["mode"] == 0o600
    other = shm_name + "g"
    old = os.umask(0o077)
    try:
        config = BufferConfig(capacity=4)
        with ReplayBuffer(config, fields=s.FIELDS, shm_name=other, shm_mode=0o660):
            assert os.stat(f"/dev/shm/{other}").st_mode & 0o777 == 0o660
    finally:
        os.umask(old)


def _attach_as_nobody(name, result):
    # Root opens anything whatever the mode: give root up first.
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)
    try:
        ReplayBuffer.attach(name)
        result.put("attached")
    except PermissionError as e:
        result.put(f"PermissionError: {e}")


def test_attaching_without_permission_raises_permission_error(shm_name):
    with s.make(shm_name):
        result = FORK.Queue()
        p = FORK.Process(target=_attach_as_nobody, args=(shm_name, result), daemon=True)
        p.start()
        message = result.get(timeout=10)
        p.join()
    assert message.startswith("PermissionError") and shm_name in message, message


def test_close_and_context_manager(shm_name):
    buffer = s.make(shm_name)
    buffer.add_batch(**s.rows(np.arange(8)))
    views = buffer.columns()
    attached = ReplayBuffer.attach(shm_name)
    with buffer:
        pass
    assert buffer.closed and not shm_exists(shm_name)
    buffer.close()  # idempotent
    for call in [
        lambda: buffer.add(**{k: v[0] for k, v in s.rows([1]).items()}),
        lambda: buffer.add_batch(**s.rows([1])),
        lambda: buffer.sample(2),
        lambda: buffer.sample_into({"id": np.empty(2, np.int64)}),
        lambda: len(buffer),
        lambda: buffer.size(),
        lambda: buffer.capacity(),
        lambda: buffer.columns(),
        lambda: buffer.fields,
        lambda: buffer.beta,
        lambda: buffer.strategy,
        lambda: buffer.clear(),
        lambda: buffer.next_key(),
        lambda: buffer.region_bytes(),
        lambda: buffer.check_consistency(),
        lambda: pickle.dumps(buffer),
    ]:
        with pytest.raises(ValueError, match="buffer is closed"):
            call()
    assert repr(buffer) == f"ReplayBuffer(closed, shm_name='{shm_name}')"
    # Views taken before close() keep the memory mapped; the attached process keeps working.
    np.testing.assert_array_equal(views["id"], np.arange(8))
    attached.add_batch(**s.rows(np.arange(8, 20)))
    assert s.torn(attached.sample(50)) == 0
    attached.close()
    np.testing.assert_array_equal(views["id"], np.arange(8))


def test_private_buffers_close_too():
    buffer = ReplayBuffer(BufferConfig(capacity=4), obs_shape=(2,), action_dim=2)
    assert buffer.shm_name is None
    with pytest.raises(TypeError, match="private ReplayBuffer cannot be pickled"):
        pickle.dumps(buffer)
    buffer.close()
    with pytest.raises(ValueError, match="buffer is closed"):
        buffer.sample(1)


def test_keep_leaves_the_region_for_later(shm_name):
    with s.make(shm_name, keep=True) as buffer:
        buffer.add_batch(**s.rows(np.arange(5)))
    assert shm_exists(shm_name)
    with ReplayBuffer.attach(shm_name) as again:
        assert len(again) == 5 and s.torn(again.sample(8)) == 0
    assert shm_exists(shm_name)  # attached buffers never remove the name
    _core.shm_unlink(shm_name)


def test_garbage_collection_removes_the_name(shm_name):
    buffer = s.make(shm_name)
    assert shm_exists(shm_name)
    del buffer
    assert not shm_exists(shm_name)


def test_pickle_attaches_by_name(shm_name):
    with s.make(shm_name) as buffer:
        buffer.add_batch(**s.rows(np.arange(3)))
        copy = pickle.loads(pickle.dumps(buffer))
        assert copy.shm_name == shm_name and len(copy) == 3
        copy.close()
        assert shm_exists(shm_name)  # the copy is attached, not the creator


def test_consistency_check_reports_slot_states(shm_name):
    with s.make(shm_name, capacity=16, strategy="rank") as buffer:
        buffer.add_batch(**s.rows(np.arange(10)))
        report = buffer.check_consistency()
        assert report == {
            "readable": 10,
            "being_written": 0,
            "abandoned": 0,
            "unwritten": 6,
            "repaired": False,
            "takeovers": 0,
            "repairs": 0,
        }


# --- processes -----------------------------------------------------------------------------


def run(processes, timeout=60):
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout)
        assert p.exitcode == 0, f"{p.name} exited with {p.exitcode}"


def results(queue, n):
    return [queue.get(timeout=30) for _ in range(n)]


@pytest.mark.parametrize("ctx", [FORK, SPAWN], ids=["fork", "spawn"])
def test_one_writer_many_readers(shm_name, ctx):
    with s.make(shm_name, capacity=16) as buffer:
        buffer.add_batch(**s.rows(np.arange(16)))
        start, stop, queue = ctx.Barrier(4), ctx.Event(), ctx.Queue()
        readers = [
            ctx.Process(target=s.reader, args=(shm_name, 200, queue, start, stop), daemon=True)
            for _ in range(3)
        ]
        for p in readers:
            p.start()
        buffer_writer = ctx.Process(
            target=s.writer, args=(shm_name, 16, 20_000, 1, start), daemon=True
        )
        buffer_writer.start()
        buffer_writer.join(60)
        stop.set()
        for p in readers:
            p.join(60)
        assert buffer_writer.exitcode == 0 and all(p.exitcode == 0 for p in readers)
        counts = results(queue, 3)
        assert [bad for bad, _ in counts] == [0, 0, 0]
        assert buffer.next_key() == 16 + 20_000
        batch = buffer.sample(256)
        assert (batch["id"] >= 20_000).all()  # the newest 16
        np.testing.assert_array_equal(batch["id"], batch["indices"])  # one writer: id == key


def test_many_writers_one_reader(shm_name):
    with s.make(shm_name, capacity=32) as buffer:
        buffer.add_batch(**s.rows(np.arange(32)))
        start, stop, queue = FORK.Barrier(4), FORK.Event(), FORK.Queue()
        writers = [
            FORK.Process(
                target=s.writer, args=(shm_name, (w + 1) * 10**6, 6000, batch, start), daemon=True
            )
            for w, batch in enumerate([1, 7, 40])
        ]
        reader = FORK.Process(
            target=s.reader, args=(shm_name, 200, queue, start, stop), daemon=True
        )
        reader.start()
        run(writers)
        stop.set()
        reader.join(60)
        assert reader.exitcode == 0
        assert results(queue, 1)[0][0] == 0
        assert buffer.next_key() == 32 + 3 * 6000
        report = buffer.check_consistency()
        assert report["readable"] == 32 and report["abandoned"] == 0
        # Every writer's id range is present in what it wrote last, whole.
        ids = buffer.columns()["id"]
        assert s.torn(buffer.sample(1000)) == 0 and len(np.unique(ids)) == 32


def test_readers_attach_and_detach_while_writers_run(shm_name):
    with s.make(shm_name, capacity=64) as buffer:
        buffer.add_batch(**s.rows(np.arange(64)))
        queue = FORK.Queue()
        writers = [
            FORK.Process(target=s.writer, args=(shm_name, (w + 1) * 10**6, 30_000, 3), daemon=True)
            for w in range(2)
        ]
        for p in writers:
            p.start()
        # Readers come and go (attach, sample, close) while the writers run, and again after.
        rounds = 0
        while any(p.is_alive() for p in writers) or rounds < 3:
            p = FORK.Process(target=s.reader, args=(shm_name, 20, queue), daemon=True)
            p.start()
            p.join(30)
            assert p.exitcode == 0
            assert results(queue, 1)[0][0] == 0
            rounds += 1
        for p in writers:
            p.join(30)
            assert p.exitcode == 0
        assert rounds >= 3


def test_unrelated_processes_started_from_a_shell(shm_name):
    with s.make(shm_name, capacity=128) as buffer:
        code = textwrap.dedent(
            f"""
            import numpy as np, shm_support as s
            from replay_buffer import ReplayBuffer
            b = ReplayBuffer.attach({shm_name!r})
            b.add_batch(**s.rows(np.arange(1000, 1100)))
            assert s.torn(b.sample(500)) == 0
            print(len(b), b.config.capacity)
            """
        )
        env = dict(os.environ, PYTHONPATH=os.path.dirname(__file__))
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["100", "128"]
        assert set(buffer.sample(200)["id"]) <= set(range(1000, 1100))


@pytest.mark.parametrize("keep", [False, True], ids=["removed", "kept"])
def test_the_creator_exits_first(shm_name, keep):
    ready, release = FORK.Event(), FORK.Event()
    creator = FORK.Process(target=s.creator, args=(shm_name, keep, ready, release), daemon=True)
    creator.start()
    assert ready.wait(30)
    attached = ReplayBuffer.attach(shm_name)
    release.set()
    creator.join(30)
    assert creator.exitcode == 0
    # The creator's exit removed the name (at interpreter exit) unless kept; either way the
    # attached process keeps a working buffer.
    assert shm_exists(shm_name) == keep
    attached.add_batch(**s.rows(np.arange(100, 200)))
    assert s.torn(attached.sample(100)) == 0
    if keep:
        again = ReplayBuffer.attach(shm_name)
        assert again.next_key() == 164
        again.close()
    else:
        with pytest.raises(FileNotFoundError):
            ReplayBuffer.attach(shm_name)
    attached.close()


def test_a_crashed_creator_leaves_a_region_that_can_be_reopened_and_removed(shm_name):
    ready = FORK.Event()
    creator = FORK.Process(target=s.crashing_creator, args=(shm_name, ready), daemon=True)
    creator.start()
    creator.join(30)
    assert creator.exitcode == -signal.SIGKILL
    info = _core.shm_info(shm_name)
    assert info["creator_pid"] == creator.pid and info["creator_alive"] is False
    assert info["size"] == 10
    with ReplayBuffer.attach(shm_name) as reopened:
        assert s.torn(reopened.sample(20)) == 0
    _core.shm_unlink(shm_name)


def test_buffers_pass_to_spawned_processes_by_name(shm_name):
    with s.make(shm_name) as buffer:
        p = SPAWN.Process(target=s.writer_into, args=(buffer, 500), daemon=True)
        p.start()
        p.join(60)
        assert p.exitcode == 0
        assert len(buffer) == 64 and buffer.next_key() == 500


def test_prioritized_updates_never_reach_another_occupant(shm_name):
    with s.make(shm_name, capacity=64, strategy="prioritized", alpha=1.0, eps=0.0) as buffer:
        buffer.add_batch(**s.rows(np.arange(64)))  # id == key from here on: one actor
        start, stop, queue = FORK.Barrier(3), FORK.Event(), FORK.Queue()
        learners = [
            FORK.Process(target=s.learner, args=(shm_name, stop, queue, start), daemon=True)
            for _ in range(2)
        ]
        for p in learners:
            p.start()
        actor = FORK.Process(target=s.writer, args=(shm_name, 64, 40_000, 4, start), daemon=True)
        actor.start()
        actor.join(60)
        stop.set()
        for p in learners:
            p.join(60)
        assert actor.exitcode == 0 and all(p.exitcode == 0 for p in learners)
        outcomes = results(queue, 2)
        assert [bad for bad, _ in outcomes] == [0, 0]
        # What remains: each row has the priority a learner set from its own id, or 1 (new rows
        # get the maximum, which rows with keys divisible by 8 hold throughout).
        keys = np.arange(buffer.next_key() - 64, buffer.next_key())
        stored = buffer.priorities(keys)
        assert ((stored == 1.0) | (stored == s.priority_of(keys))).all()
        assert (stored[keys % 8 == 0] == 1.0).all()
        buffer.check_consistency()


def test_no_regions_left_behind():
    assert [n for n in os.listdir("/dev/shm") if n.startswith(SHM_PREFIX)] == []
