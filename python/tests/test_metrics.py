"""Prometheus metrics and the HTTP endpoint: scraped and parsed with Prometheus' text parser."""

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from service_support import ServerProcess

from replay_buffer import BufferConfig, ReplayBuffer, metrics
from replay_buffer.service import connect

from conftest import cartpole, counter_transition, shm_name  # noqa: F401

parser = pytest.importorskip("prometheus_client.parser")


def batch(n: int, first: int = 0) -> dict:
    rows = [counter_transition(first + i) for i in range(n)]
    return {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}


def scrape(url: str, headers: dict | None = None) -> dict:
    """Fetch /metrics and return {sample name + sorted labels: value}."""
    request = urllib.request.Request(url + "/metrics", headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain; version=")
        text = reply.read().decode()
    samples = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + "".join(f"[{k}={v}]" for k, v in sorted(sample.labels.items()))
            samples[key] = sample.value
    return samples


def test_buffer_metrics_follow_the_prometheus_conventions():
    config = BufferConfig(capacity=64, strategy="prioritized", alpha=1.0, eps=0.0)
    buffer = ReplayBuffer(config, obs_shape=(4,), action_dim=2)
    buffer.add_batch(**batch(64))
    buffer.update_priorities(np.arange(64), priorities=np.full(64, 2.0))
    for _ in range(10):
        buffer.sample(16)
    with metrics.serve(buffer, "127.0.0.1:0") as server:
        m = scrape(server.url)
        stats = buffer.stats()
    assert m["replay_buffer_capacity_items"] == 64 and m["replay_buffer_size_items"] == 64
    assert m["replay_buffer_inserted_items_total"] == 64
    assert m["replay_buffer_insert_calls_total"] == 1
    assert m["replay_buffer_sampled_items_total"] == 160
    assert m["replay_buffer_sample_calls_total"] == 10
    assert m["replay_buffer_rate_limiter_waits_total[operation=insert]"] == 0
    assert m["replay_buffer_rate_limiter_wait_seconds_total[operation=sample]"] == 0
    # The age histogram: cumulative buckets, +Inf equal to _count, as many as tracked samples.
    tracked = sum(stats["age_buckets"])
    assert m["replay_buffer_sampled_age_inserts_count"] == tracked
    assert m["replay_buffer_sampled_age_inserts_bucket[le=+Inf]"] == tracked
    assert m["replay_buffer_sampled_age_inserts_bucket[le=63.0]"] == tracked  # ages < 64
    assert m["replay_buffer_sampled_age_inserts_bucket[le=7.0]"] == sum(stats["age_buckets"][:4])
    assert m["replay_buffer_priority_sum"] == 128 and m["replay_buffer_priority_max"] == 2
    assert m["replay_buffer_priority_gcount"] == 64
    assert m["replay_buffer_priority_bucket[le=2.0]"] == 0  # 2.0 is in [2, 4)
    assert m["replay_buffer_priority_bucket[le=4.0]"] == 64
    assert m["replay_buffer_unique_sampled_items"] == stats["unique_sampled"]


def test_the_json_endpoint_and_the_dashboard_page():
    buffer = cartpole(capacity=10)
    buffer.add(**counter_transition(1))
    with metrics.serve(buffer, "127.0.0.1:0") as server:
        with urllib.request.urlopen(server.url + "/stats.json", timeout=10) as reply:
            figures = json.load(reply)
        with urllib.request.urlopen(server.url + "/", timeout=10) as reply:
            page = reply.read().decode()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(server.url + "/nothing", timeout=10)
    assert figures["buffer"]["inserted"] == 1 and "server" not in figures
    assert "stats.json" in page and "http" not in page.split("<script>")[1]  # nothing fetched


def test_addresses_and_tokens():
    buffer = cartpole(capacity=10)
    with pytest.raises(ValueError, match="HOST:PORT"):
        metrics.serve(buffer, "localhost")
    with pytest.raises(ValueError, match="without a token"):
        metrics.serve(buffer, "0.0.0.0:0")
    with metrics.MonitorServer(metrics.buffer_source(buffer), "0.0.0.0:0", b"s3cret") as server:
        url = server.url.replace("0.0.0.0", "127.0.0.1")
        with pytest.raises(urllib.error.HTTPError, match="401"):
            scrape(url)
        with pytest.raises(urllib.error.HTTPError, match="401"):
            scrape(url, {"Authorization": "Bearer wrong"})
        assert scrape(url, {"Authorization": "Bearer s3cret"})["replay_buffer_size_items"] == 0
        with urllib.request.urlopen(url + "/stats.json?token=s3cret", timeout=10) as reply:
            assert json.load(reply)["buffer"]["capacity"] == 10


def _wait_for(log: list, pattern: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in list(log):
            found = re.search(pattern, line)
            if found:
                return found.group(1)
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} never logged:\n" + "".join(log))


def test_serve_with_metrics_exposes_the_buffer_and_the_server():
    server = ServerProcess("--metrics", "127.0.0.1:0")
    try:
        url = _wait_for(server.log, r"metrics at (http://\S+)/metrics")
        with connect(server.unix_url) as client:
            client.add_batch(**batch(10))
            client.sample(4)
            with pytest.raises(ValueError):
                client.sample(0)
        m = scrape(url)
    finally:
        assert server.stop() == 0
    assert m["replay_buffer_inserted_items_total"] == 10
    assert m["replay_buffer_server_requests_total[operation=sample]"] == 2
    assert m["replay_buffer_server_rows_total[operation=add_batch]"] == 10
    assert m["replay_buffer_server_errors_total[operation=sample][type=ValueError]"] == 1
    assert m["replay_buffer_server_request_duration_seconds_count[operation=sample]"] == 2
    assert m["replay_buffer_server_request_duration_seconds_bucket[le=+Inf][operation=sample]"] == 2
    assert m["replay_buffer_server_connections_accepted_total"] >= 1


def test_metrics_command_watches_a_shared_buffer(shm_name):  # noqa: F811
    config = BufferConfig(capacity=32)
    buffer = ReplayBuffer(config, obs_shape=(4,), action_dim=2, shm_name=shm_name)
    buffer.add_batch(**batch(5))
    proc = subprocess.Popen(
        [sys.executable, "-m", "replay_buffer.tools.cli", "metrics", shm_name, "--listen",
         "127.0.0.1:0"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        url = re.search(r"metrics at (http://\S+)/metrics", line).group(1)
        assert scrape(url)["replay_buffer_inserted_items_total"] == 5
        buffer.add_batch(**batch(3))
        m = scrape(url)
        assert m["replay_buffer_inserted_items_total"] == 8
        assert m["replay_buffer_writers[state=live]"] == 1
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
        buffer.close()


def test_stats_command_prints_a_summary(shm_name):  # noqa: F811
    config = BufferConfig(capacity=32)
    buffer = ReplayBuffer(config, obs_shape=(4,), action_dim=2, shm_name=shm_name)
    buffer.add_batch(**batch(8))
    buffer.sample(4)
    command = [sys.executable, "-m", "replay_buffer.tools.cli", "stats", shm_name]
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert "8 of 32 (25.0 % full)" in text
    assert "4 items in 1 calls" in text
    figures = json.loads(
        subprocess.run([*command, "--json"], capture_output=True, text=True, check=True).stdout
    )
    assert figures["buffer"]["sampled"] == 4
    watch = subprocess.Popen([*command, "--watch", "0.2"], stdout=subprocess.PIPE, text=True)
    try:
        refreshes = 0
        while refreshes < 3:  # the first summary and two refreshes
            line = watch.stdout.readline()
            assert line, "stats --watch stopped"
            refreshes += "samples per insert" in line
    finally:
        watch.terminate()
        watch.communicate(timeout=20)
        buffer.close()


def test_watching_a_missing_buffer_says_so():
    for command in ("stats", "metrics"):
        done = subprocess.run(
            [sys.executable, "-m", "replay_buffer.tools.cli", command, "rb_no_such_buffer_x"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode != 0
        assert "cannot watch rb_no_such_buffer_x" in done.stderr
        assert "Traceback" not in done.stderr
