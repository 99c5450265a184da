"""Ctrl-C ends a call that waits for the rate limiter at once, instead of after its timeout."""

import signal
import subprocess
import sys
import textwrap
import time

WAITER = textwrap.dedent(
    """
    import signal, sys, time
    # Python's own SIGINT handler, whatever disposition this process inherited (a test run may
    # leave SIGINT ignored, and an ignored SIGINT is inherited by children).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from replay_buffer import BufferConfig, ReplayBuffer
    config = BufferConfig(capacity=100, seed=0, min_size_to_sample=10, rate_limit_timeout=60)
    buffer = ReplayBuffer(config, obs_shape=(4,), action_dim=2)
    print("waiting", flush=True)
    start = time.monotonic()
    try:
        buffer.sample(4)
    except KeyboardInterrupt:
        print(f"interrupted {time.monotonic() - start:.2f}", flush=True)
        print("sampled", buffer.sampled(), flush=True)
        sys.exit(0)
    sys.exit(3)
    """
)


def test_ctrl_c_interrupts_a_sample_waiting_for_the_rate_limiter():
    proc = subprocess.Popen(
        [sys.executable, "-c", WAITER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "waiting"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)  # before the fix: waited the full 60 s
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "interrupted" in out
    assert "sampled 0" in out  # the interrupted sample counted nothing
