"""Processes SIGKILLed at random moments leave a shared buffer that the others keep using.

Writers (add, add_batch) and updaters (sample + update_priorities) are killed hundreds of times,
mid-copy and holding the priority lock among other places, while a steady writer and this
process keep working. Afterwards every sampled row must be whole, the priority trees must equal
a recomputation from their priorities, and the next lap of writes must reclaim every slot a dead
writer left half-written.
"""

import multiprocessing as mp
import os
import random
import signal
import time

import numpy as np
import pytest

import shm_support as s

FORK = mp.get_context("fork")
VICTIMS_AT_ONCE = 3


@pytest.mark.parametrize(
    "strategy, seconds, min_kills", [("prioritized", 9.0, 200), ("rank", 5.0, 100)]
)
def test_killed_writers_and_updaters_leave_a_usable_buffer(shm_name, strategy, seconds, min_kills):
    capacity = 1 << 16
    buffer = s.make(shm_name, capacity=capacity, strategy=strategy, alpha=0.7)
    buffer.add_batch(**s.rows(np.arange(capacity)))
    stop = FORK.Event()
    progress = FORK.Value("q", 0, lock=False)
    steady = FORK.Process(target=s.steady_writer, args=(shm_name, stop, progress), daemon=True)
    steady.start()
    rng = random.Random(strategy)
    victims = []  # (process, when to kill it)
    kills = 0
    try:
        last_progress, last_change, longest_stall = progress.value, time.monotonic(), 0.0
        # Kill for `seconds`, and on past it until `min_kills` deaths (a slow or busy machine
        # kills fewer per second), within a generous cap.
        start = time.monotonic()
        while time.monotonic() - start < seconds or (
            kills < min_kills and time.monotonic() - start < 6 * seconds
        ):
            while len(victims) < VICTIMS_AT_ONCE:
                kind = rng.choice(["add", "add_batch", "update"])
                inherited = buffer if rng.random() < 0.5 else None  # else it attaches by name
                args = (shm_name, kind, rng.randrange(10**6), inherited)
                p = FORK.Process(target=s.busy, args=args, daemon=True)
                p.start()
                victims.append((p, time.monotonic() + rng.uniform(0.0, 0.03)))
            victims.sort(key=lambda v: v[1])
            p, when = victims.pop(0)
            time.sleep(max(0.0, when - time.monotonic()))
            os.kill(p.pid, signal.SIGKILL)
            p.join()
            assert p.exitcode == -signal.SIGKILL, f"a victim exited with {p.exitcode} (3: torn)"
            kills += 1
            # Right after each death the trees are exact (repaired by this lock acquisition if
            # the victim died holding the lock), and the survivors keep working: this process
            # samples, checks and updates priorities.
            buffer.check_consistency()
            batch = buffer.sample(64)
            assert s.torn(batch) == 0
            buffer.update_priorities(batch["indices"], priorities=s.priority_of(batch["id"]))
            now = time.monotonic()
            if progress.value != last_progress:
                last_progress, last_change = progress.value, now
            longest_stall = max(longest_stall, now - last_change)
    finally:
        for p, _ in victims:
            os.kill(p.pid, signal.SIGKILL)
            p.join()
        stop.set()
        steady.join(30)
        if steady.exitcode is None:
            os.kill(steady.pid, signal.SIGKILL)
            steady.join()
    assert steady.exitcode == 0, "the steady writer got stuck"
    assert kills >= min_kills
    # A deadlock check, not a speed one: a stuck writer stalls for ever, a descheduled one briefly.
    assert longest_stall < 10.0, f"the steady writer made no progress for {longest_stall:.2f} s"

    for _ in range(100):
        assert s.torn(buffer.sample(128)) == 0
    report = buffer.check_consistency()  # raises if the trees differ from a recomputation
    # Dead writers' slots were taken over by later writers (and more may wait for the next lap);
    # dead lock holders were found by the next locker, which rebuilt the trees.
    assert report["takeovers"] + report["abandoned"] > 0, report
    assert report["repairs"] > 0, report
    # One more lap: every slot a dead writer left is reclaimed.
    buffer.add_batch(**s.rows(np.arange(10**7, 10**7 + 2 * capacity)))
    report = buffer.check_consistency()
    assert report["readable"] == capacity and report["abandoned"] == 0, report
    batch = buffer.sample(1000)
    assert s.torn(batch) == 0 and (batch["id"] >= 10**7 + capacity).all()
    buffer.close()
