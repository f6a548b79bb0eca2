"""The process's Prometheus metrics: one ``Metrics`` per system, each with its own ``CollectorRegistry`` (never
prometheus-client's global one), so that several systems in one process (tests, benchmarks) count apart.

The composition root makes one and hands it to what it instruments: the runtime's tick loop and input path, the
puppet master's god-command dispatch, the API's HTTP middleware and live streams. Gauges of current state
(instances by status, open streams) are read at scrape time through ``on_scrape`` callbacks. The world core never
sees this module: what it measures is the platforms' work around the world, never the world's own state.

Label cardinality is bounded: ``instance`` labels only the per-world series (ticks, tick lag), and only for the first
``MAX_INSTANCE_SERIES`` instances this process sees; every later one is counted under ``instance="_other"``.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["CONTENT_TYPE", "MAX_INSTANCE_SERIES", "OTHER_INSTANCES", "UNMATCHED_ROUTE", "InstanceLabels", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST  # the text exposition format, version 0.0.4
MAX_INSTANCE_SERIES = 100  # instances with series of their own; the rest aggregate under OTHER_INSTANCES
OTHER_INSTANCES = "_other"
UNMATCHED_ROUTE = "_unmatched"  # a request no route matched: its raw path would be unbounded, so it is not used

# Seconds: a tick is normally well under a millisecond, a slow one (a group commit) tens of milliseconds.
TICK_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
SNAPSHOT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
SNAPSHOT_BYTES_BUCKETS = tuple(float(4**n * 256) for n in range(10))  # 256 B .. 64 MiB


class InstanceLabels:
    """The ``instance`` label value of each instance: its own id for the first ``limit`` ids asked about, in the
    order they are first seen (the default instance first in ``soulfra up``), and ``OTHER_INSTANCES`` after."""

    def __init__(self, limit: int = MAX_INSTANCE_SERIES) -> None:
        self.limit = limit
        self._own: set[str] = set()

    def __call__(self, instance_id: str) -> str:
        if instance_id in self._own:
            return instance_id
        if len(self._own) < self.limit:
            self._own.add(instance_id)
            return instance_id
        return OTHER_INSTANCES


class Metrics:
    """Every metric of one system, in its own registry. ``render`` is the text exposition ``/metrics`` serves."""

    def __init__(self, *, instance_limit: int = MAX_INSTANCE_SERIES) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.instance_label = InstanceLabels(instance_limit)
        self._scrapers: list[Callable[[], None]] = []
        self.ticks = Counter("soulfra_ticks", "Ticks run, per instance.", ["instance"], registry=r)
        self.tick_duration = Histogram(
            "soulfra_tick_duration_seconds", "Time of one tick: the world's step and its write.",
            buckets=TICK_BUCKETS, registry=r,
        )  # fmt: skip
        self.tick_lag = Gauge(
            "soulfra_tick_lag_seconds", "How far the last tick started behind its schedule, per instance.",
            ["instance"], registry=r,
        )  # fmt: skip
        self.inputs = Counter(
            "soulfra_inputs", "Inputs submitted: outcome is ok, or the code of the error that refused them.",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.god_commands = Counter(
            "soulfra_god_commands", "God-mode commands by type, and outcome (ok, or the error's code).",
            ["type", "outcome"], registry=r,
        )  # fmt: skip
        self.http_requests = Counter(
            "soulfra_http_requests", "HTTP requests by method, route template and status.",
            ["method", "route", "status"], registry=r,
        )  # fmt: skip
        self.http_duration = Histogram(
            "soulfra_http_request_duration_seconds", "Time to the end of a reply, by route template (streams: "
            "until the stream ends).", ["route"], buckets=HTTP_BUCKETS, registry=r,
        )  # fmt: skip
        self.auth_failures = Counter(
            "soulfra_auth_failures", "Requests refused for want of a valid token or session (HTTP 401).", registry=r
        )
        self.instances = Gauge("soulfra_instances", "Live instances by status.", ["status"], registry=r)
        self.stream_clients = Gauge("soulfra_stream_clients", "Open live-stream (SSE) connections.", registry=r)
        self.stream_dropped = Counter(
            "soulfra_stream_clients_dropped", "Stream clients disconnected for reading nothing.", registry=r
        )
        self.snapshot_bytes = Histogram(
            "soulfra_snapshot_bytes", "Stored size of snapshots taken on request.", buckets=SNAPSHOT_BYTES_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.snapshot_duration = Histogram(
            "soulfra_snapshot_duration_seconds", "Time to take and store a snapshot on request.",
            buckets=SNAPSHOT_BUCKETS, registry=r,
        )  # fmt: skip
        self.storage_errors = Counter(
            "soulfra_storage_errors", "Storage failures met by a tick, an input or a snapshot.", registry=r
        )

    def on_scrape(self, update: Callable[[], None]) -> None:
        """Call ``update`` before each rendering (to set gauges of current state from what the system holds)."""
        self._scrapers.append(update)

    def render(self) -> bytes:
        for update in self._scrapers:
            update()
        return generate_latest(self.registry)
