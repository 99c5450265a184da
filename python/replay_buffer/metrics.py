"""Prometheus metrics and a small HTTP endpoint for a buffer's figures.

:func:`serve` exposes an in-process (or attached shared) buffer; ``replay-buffer serve --metrics``
and ``replay-buffer metrics`` use the same :class:`MonitorServer`. It answers

- ``/metrics``: the Prometheus text format (``prometheus-client``, the ``replay_buffer[metrics]``
  extra, writes it);
- ``/stats.json``: the figures as JSON, what the dashboard polls;
- ``/``: the dashboard (:mod:`replay_buffer.dashboard`).

docs/observability.md lists every metric and what it means.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from replay_buffer.buffer import ReplayBuffer

#: A function returning the figures: ``{"buffer": ReplayBuffer.stats(), "server": ...}`` (the
#: server's part only where there is a server), read afresh for every request.
Source = Callable[[], dict[str, Any]]

PREFIX = "replay_buffer"


def _require_prometheus() -> None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ImportError(
            "Prometheus metrics need prometheus-client: pip install 'replay_buffer[metrics]'"
        ) from None


def buffer_source(buffer: ReplayBuffer) -> Source:
    """Return a :data:`Source` reading ``buffer.stats()``."""
    return lambda: {"buffer": buffer.stats(), "time": time.time()}


def _buffer_families(stats: dict[str, Any]) -> Iterator[Metric]:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeHistogramMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    def gauge(name: str, doc: str, value: float | None) -> Metric:
        shown = math.nan if value is None else value
        return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=shown)

    def counter(name: str, doc: str, value: float) -> Metric:
        return CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)

    yield gauge("capacity_items", "Transitions the buffer can hold.", stats["capacity"])
    yield gauge("size_items", "Transitions held now.", stats["size"])
    yield counter("inserted_items", "Transitions added (keys handed out).", stats["inserted"])
    yield counter("insert_calls", "add and add_batch calls that added.", stats["insert_calls"])
    yield counter("sampled_items", "Transitions sampled (rows of every batch).", stats["sampled"])
    yield counter("sample_calls", "sample calls that drew a batch.", stats["sample_calls"])
    waits = CounterMetricFamily(
        f"{PREFIX}_rate_limiter_waits",
        "Calls the rate limiter held back, timed-out ones included.",
        labels=["operation"],
    )
    waited = CounterMetricFamily(
        f"{PREFIX}_rate_limiter_wait_seconds",
        "Time calls spent held back by the rate limiter.",
        labels=["operation"],
    )
    for side in ("insert", "sample"):
        waits.add_metric([side], stats[f"{side}_waits"])
        waited.add_metric([side], stats[f"{side}_wait_seconds"])
    yield waits
    yield waited
    if stats["samples_per_insert"] is not None:
        yield gauge(
            "samples_per_insert_limit",
            "The rate limiter's samples_per_insert.",
            stats["samples_per_insert"],
        )
    yield gauge(
        "min_size_to_sample_items", "The rate limiter's min_size_to_sample.",
        stats["min_size_to_sample"],
    )  # fmt: skip
    # Bucket b holds ages in [2^(b-1), 2^b): integer ages <= 2^b - 1.
    cumulative = 0
    buckets = []
    for b, count in enumerate(stats["age_buckets"][:-1]):
        cumulative += count
        buckets.append((str(float(2**b - 1)), cumulative))
    cumulative += stats["age_buckets"][-1]
    buckets.append(("+Inf", cumulative))
    yield HistogramMetricFamily(
        f"{PREFIX}_sampled_age_inserts",
        "Inserts between a sampled item's add and its sampling (tracked keys only: every "
        "tracking_stride-th key).",
        buckets=buckets,
        sum_value=stats["age_sum"],
    )
    yield gauge(
        "sampled_age_p50_inserts", "Median age of sampled items, in inserts.", stats["age_p50"]
    )
    yield gauge(
        "sampled_age_p99_inserts", "99th percentile age of sampled items.", stats["age_p99"]
    )
    yield gauge(
        "unique_sampled_items", "Distinct items ever sampled (estimate).", stats["unique_sampled"]
    )
    yield gauge(
        "live_sampled_ratio",
        "Share of the items held now that were sampled at least once (estimate).",
        stats["live_sampled_fraction"],
    )
    yield gauge(
        "live_sample_count_mean",
        "Times the items held now were sampled, on average (estimate).",
        stats["live_sample_count_mean"],
    )
    yield gauge(
        "live_sample_count_max",
        "The most times a tracked item held now was sampled (a lower bound of the true max).",
        stats["live_sample_count_max"],
    )
    yield gauge(
        "tracking_stride_keys", "Every how many keys one is tracked.", stats["tracking_stride"]
    )
    priority = stats.get("priority")
    if priority is not None:
        yield gauge("priority_sum", "Sum of stored priorities.", priority["sum"])
        yield gauge("priority_min", "Smallest positive stored priority.", priority["min"])
        yield gauge("priority_max", "Largest stored priority.", priority["max"])
        low = priority["bucket_low_exponent"]
        cumulative = 0
        buckets = []
        for i, count in enumerate(priority["buckets"][:-1]):
            cumulative += count
            buckets.append((str(float(2.0 ** (low + i + 1))), cumulative))
        buckets.append(("+Inf", cumulative + priority["buckets"][-1]))
        yield GaugeHistogramMetricFamily(
            f"{PREFIX}_priority",
            "Stored priorities of evenly spaced live slots (at most 4096 of them).",
            buckets=buckets,
            gsum_value=priority["sampled_sum"],
        )
    if stats["shared"]:
        writers = GaugeMetricFamily(
            f"{PREFIX}_writers",
            "Writer entries of the shared region, by whether their process is alive.",
            labels=["state"],
        )
        writers.add_metric(["live"], stats["writers_live"])
        writers.add_metric(["dead"], stats["writers_dead"])
        yield writers
    yield counter(
        "takeovers", "Slots taken over from writers that died mid-write.", stats["takeovers"]
    )
    yield counter(
        "repairs", "Priority-lock acquisitions that found the holder dead.", stats["repairs"]
    )


def _server_families(server: dict[str, Any]) -> Iterator[Metric]:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    name = f"{PREFIX}_server"
    yield GaugeMetricFamily(f"{name}_connections", "Connections open now.", server["connections"])
    yield CounterMetricFamily(
        f"{name}_connections_accepted", "Connections ever accepted.", server["connections_total"]
    )
    yield CounterMetricFamily(
        f"{name}_connections_refused",
        "Connections refused for being over the limit.",
        server["connections_refused"],
    )
    requests = CounterMetricFamily(f"{name}_requests", "Requests answered.", labels=["operation"])
    rows = CounterMetricFamily(
        f"{name}_rows", "Transitions added or sampled by successful requests.", labels=["operation"]
    )
    received = CounterMetricFamily(
        f"{name}_received_bytes", "Bytes of request frames.", labels=["operation"]
    )
    sent = CounterMetricFamily(f"{name}_sent_bytes", "Bytes of reply frames.", labels=["operation"])
    errors = CounterMetricFamily(
        f"{name}_errors", "Error replies, by error type.", labels=["operation", "type"]
    )
    latency = HistogramMetricFamily(
        f"{name}_request_duration_seconds",
        "From a request frame's arrival to its reply being handed to the socket.",
        labels=["operation"],
    )
    bounds = server["latency_bounds_s"]
    for op, figures in server["operations"].items():
        requests.add_metric([op], figures["requests"])
        rows.add_metric([op], figures["rows"])
        received.add_metric([op], figures["bytes_in"])
        sent.add_metric([op], figures["bytes_out"])
        for error_type, count in figures["errors"].items():
            errors.add_metric([op, error_type], count)
        cumulative = 0
        buckets = []
        for bound, count in zip(bounds, figures["latency_buckets"], strict=False):
            cumulative += count
            buckets.append((str(float(bound)), cumulative))
        buckets.append(("+Inf", cumulative + figures["latency_buckets"][-1]))
        latency.add_metric([op], buckets, figures["seconds"])
    yield from (requests, rows, received, sent, errors, latency)


class StatsCollector:
    """A Prometheus collector that reads a :data:`Source` at every scrape."""

    def __init__(self, source: Source) -> None:
        """Collect from ``source``."""
        self._source = source

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family of one reading of the source."""
        figures = self._source()
        yield from _buffer_families(figures["buffer"])
        if "server" in figures:
            yield from _server_families(figures["server"])


def render(source: Source) -> bytes:
    """Return one reading of ``source`` in the Prometheus text format."""
    _require_prometheus()
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(source))  # type: ignore[arg-type]
    return generate_latest(registry)


def parse_listen(address: str) -> tuple[str, int]:
    """Parse ``HOST:PORT`` (``[::1]:PORT`` for IPv6; ``:PORT`` means 127.0.0.1).

    Raises:
        ValueError: not HOST:PORT, or a port outside 0-65535.

    """
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:9100), got {address!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port_text)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MonitorServer:
    """An HTTP server, in a daemon thread, for ``/metrics``, ``/stats.json`` and the dashboard.

    On a loopback address anyone on the machine may read it. On any other address it needs a
    token, which requests must present as ``Authorization: Bearer TOKEN`` (Prometheus sends
    it with ``authorization: {credentials: ...}`` in its scrape config), or as
    ``?token=TOKEN`` for a browser.
    """

    def __init__(self, source: Source, address: str, token: bytes | None = None) -> None:
        """Bind ``address`` (``HOST:PORT``; port 0 picks a free one) and start answering.

        Raises:
            ValueError: a bad address, or a non-loopback one without a token.
            OSError: the address cannot be bound.

        """
        host, port = parse_listen(address)
        if not _is_loopback(host) and not token:
            raise ValueError(
                f"refusing to serve metrics on {host} without a token: a non-loopback address "
                "needs a shared secret (--token-file or --token-env)"
            )
        self._source = source
        self._token = token
        handler = _handler_for(self)
        server_class = type("Server", (ThreadingHTTPServer,), {"daemon_threads": True})
        if ":" in host:
            import socket

            server_class.address_family = socket.AF_INET6
        self._http = server_class((host, port), handler)
        bound_host, bound_port = self._http.server_address[:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        #: Where it listens, as ``http://HOST:PORT``.
        self.url = f"http://{shown}:{bound_port}"
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="rb-metrics", daemon=True
        )
        self._thread.start()

    def figures(self) -> dict[str, Any]:
        """Read the source once."""
        return self._source()

    def allowed(self, authorization: str | None, query_token: str | None) -> bool:
        """Whether a request presented the token (always, when there is none)."""
        if self._token is None:
            return True
        given = None
        if authorization and authorization.startswith("Bearer "):
            given = authorization[len("Bearer ") :]
        elif query_token:
            given = query_token
        return given is not None and hmac.compare_digest(given.encode(), self._token)

    def close(self) -> None:
        """Stop answering and release the address. Idempotent."""
        if self._thread.is_alive():
            self._http.shutdown()
            self._thread.join(10)
        self._http.server_close()

    def __enter__(self) -> MonitorServer:
        """Return the server itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close it."""
        self.close()


def _json_default(value: object) -> object:
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _handler_for(server: MonitorServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            from urllib.parse import parse_qs, urlsplit

            url = urlsplit(self.path)
            query_token = parse_qs(url.query).get("token", [None])[0]
            if not server.allowed(self.headers.get("Authorization"), query_token):
                self._reply(401, "text/plain; charset=utf-8", b"a token is required\n")
                return
            try:
                if url.path == "/metrics":
                    from prometheus_client import CONTENT_TYPE_LATEST

                    body = render(server.figures)
                    self._reply(200, CONTENT_TYPE_LATEST, body)
                elif url.path == "/stats.json":
                    body = json.dumps(server.figures(), default=_json_default).encode()
                    self._reply(200, "application/json", body)
                elif url.path in ("/", "/index.html"):
                    from replay_buffer.dashboard import page

                    self._reply(200, "text/html; charset=utf-8", page())
                else:
                    self._reply(404, "text/plain; charset=utf-8", b"not found\n")
            except Exception as exc:  # noqa: BLE001 (the answer says what went wrong)
                message = f"{type(exc).__name__}: {exc}\n".encode()
                self._reply(500, "text/plain; charset=utf-8", message)

        def _reply(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # scrapes every few seconds would flood the log

    return Handler


def serve(
    buffer: ReplayBuffer, address: str = "127.0.0.1:9100", token: bytes | None = None
) -> MonitorServer:
    """Serve ``buffer``'s figures at ``http://ADDRESS/metrics`` (and the dashboard at ``/``).

    Returns the running :class:`MonitorServer`; ``close()`` it (or use it as a context manager)
    to stop. Needs prometheus-client for ``/metrics`` (``pip install 'replay_buffer[metrics]'``).

    Raises:
        ImportError: prometheus-client is not installed.
        ValueError: a bad address, or a non-loopback one without a token.
        OSError: the address cannot be bound.

    """
    _require_prometheus()
    return MonitorServer(buffer_source(buffer), address, token)
