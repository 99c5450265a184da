"""The server's counters: one stats object that every connection reports into."""

import time

import numpy as np
import pytest
from service_support import ThreadedServer, frame, hello_frame, raw_connect, read_frame

from replay_buffer.service import connect
from replay_buffer.service import protocol as p
from replay_buffer.service.stats import ServerStats

from conftest import cartpole, counter_transition


def test_stats_object_counts_per_kind_and_totals():
    now = [100.0]
    stats = ServerStats(clock=lambda: now[0])
    stats.connection_opened()
    stats.connection_opened()
    stats.connection_refused()
    stats.connection_closed()
    stats.request("add_batch", bytes_in=500, bytes_out=32, seconds=0.5, rows=10)
    stats.request("add", bytes_in=100, bytes_out=32, seconds=0.25, rows=1)
    stats.request("sample", bytes_in=56, bytes_out=900, seconds=0.125, rows=8)
    stats.request("sample", bytes_in=56, bytes_out=60, seconds=0.125, error_type="ValueError")
    stats.request("invalid", bytes_in=24, bytes_out=70, seconds=0.0, error_type="ProtocolError")
    now[0] = 103.0
    snapshot = stats.snapshot()
    operations = snapshot.pop("operations")
    assert snapshot == {
        "uptime_s": 3.0, "inserts": 11, "samples": 8, "requests": 5, "errors": 2,
        "connections": 1, "connections_total": 3, "connections_refused": 1,
        "bytes_in": 736, "bytes_out": 1094,
    }  # fmt: skip
    assert operations["sample"] == {
        "requests": 2, "errors": {"ValueError": 1}, "rows": 8, "bytes_in": 112, "bytes_out": 960,
        "seconds": 0.25,
    }  # fmt: skip
    assert operations["invalid"]["errors"] == {"ProtocolError": 1}
    assert list(operations) == ["add", "add_batch", "invalid", "sample"]


def wait_for_connections(client, count: int) -> dict:
    deadline = time.monotonic() + 10
    while (stats := client.stats())["connections"] != count:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return stats


def test_connections_report_every_frame_into_the_stats():
    server = ThreadedServer(cartpole(capacity=100), max_connections=2)
    try:
        with connect(server.unix_url) as client:
            client.add_batch(**{k: np.stack([v] * 10) for k, v in counter_transition(1).items()})
            client.sample(4)
            client.sample(4)
            with pytest.raises(ValueError):
                client.sample(0)
            client.size()
            garbage = raw_connect(server.path)
            garbage.sendall(hello_frame() + frame(0x42))
            assert read_frame(garbage)[0] == p.MsgType.HELLO | p.RESPONSE_BIT
            assert read_frame(garbage)[0] == p.MsgType.ERROR
            assert read_frame(garbage) is None
            garbage.close()
            wait_for_connections(client, 1)
            with connect(server.unix_url):
                with pytest.raises(ConnectionError, match="limit of 2 connections"):
                    connect(server.unix_url)
            stats = wait_for_connections(client, 1)
    finally:
        server.stop()
    sample = stats["operations"]["sample"]
    assert sample["requests"] == 3 and sample["errors"] == {"ValueError": 1}
    assert sample["rows"] == 8 and stats["samples"] == 8 and stats["inserts"] == 10
    assert sample["bytes_in"] == 3 * (p.HEADER_SIZE + p.SAMPLE_REQUEST.size)
    size = stats["operations"]["size"]
    assert size == {
        "requests": 1, "errors": {}, "rows": 0, "bytes_in": p.HEADER_SIZE,
        "bytes_out": p.HEADER_SIZE + p.SIZE_REPLY.size, "seconds": size["seconds"],
    }  # fmt: skip
    assert stats["operations"]["invalid"]["errors"] == {"ProtocolError": 1}
    assert stats["operations"]["hello"]["requests"] == 3  # the refused connection's was not read
    assert stats["connections_total"] == 4 and stats["connections_refused"] == 1
    assert stats["errors"] == 2
    assert stats["requests"] == sum(op["requests"] for op in stats["operations"].values())
