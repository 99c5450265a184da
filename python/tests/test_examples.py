"""The examples and the command-line entry points run and say what they did."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_actor_learner_example():
    out = run(str(ROOT / "examples" / "actor_learner_threads.py"))
    assert "2 actors added 40,000 transitions" in out
    assert "beta 1.00" in out


def test_demo_command():
    out = run("-m", "replay_buffer", "demo", "--capacity", "20000")
    assert "add_batch 20,000 transitions" in out
    assert "indices: int64[32]" in out


def test_bench_quick_prints_every_row():
    out = run("-m", "replay_buffer", "bench", "--quick")
    for row in ("add ", "add_batch 256", "sample 32", "sample 256", "memory overhead"):
        assert row in out
    assert "sample+update 32" in out
    assert "replay_buffer rank" in out
