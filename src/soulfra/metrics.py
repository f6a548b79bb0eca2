"""The process's Prometheus metrics: one ``Metrics`` per system, each with its own ``CollectorRegistry`` (never
prometheus-client's global one), so that several systems in one process (tests, benchmarks) count apart.

The composition root makes one and hands it to what it instruments: the runtime's tick loop and input path, the
puppet master's god-command dispatch, the API's HTTP middleware and live streams. Gauges of current state
(instances by status, open streams) are read at scrape time through ``on_scrape`` callbacks. The world core never
sees this module: what it measures is the platforms' work around the world, never the world's own state.

Label cardinality is bounded: the per-world series (ticks, tick lag) carry the instance's id as ``world``, and only
for the first ``MAX_INSTANCE_SERIES`` instances this process sees; every later one is counted under
``world="_other"``. (Not ``instance``: Prometheus gives every scraped series an ``instance`` label of its own, the
target's address, and would rename ours ``exported_instance``.) The bus series are by platform and op (never by
instance), a snapshot's by its kind (``SNAPSHOT_KINDS``, else ``other``), errors by their ``code`` (the error tree's,
a closed set).
"""

from __future__ import annotations

import shutil
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from soulfra.errors import LeaseLostError, SoulfraError, StorageError

__all__ = [
    "CONTENT_TYPE", "MAX_INSTANCE_SERIES", "OTHER_INSTANCES", "SNAPSHOT_KINDS", "UNMATCHED_ROUTE", "ClusterMetrics",
    "InstanceLabels", "Metrics",
]  # fmt: skip

CONTENT_TYPE = CONTENT_TYPE_LATEST  # the text exposition format, version 0.0.4
MAX_INSTANCE_SERIES = 100  # instances with series of their own; the rest aggregate under OTHER_INSTANCES
OTHER_INSTANCES = "_other"
UNMATCHED_ROUTE = "_unmatched"  # a request no route matched: its raw path would be unbounded, so it is not used

# Seconds: a tick is normally well under a millisecond, a slow one (a group commit) tens of milliseconds.
TICK_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
SNAPSHOT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
MIND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)  # a small local model: 1-3 s a call
SNAPSHOT_BYTES_BUCKETS = tuple(float(4**n * 256) for n in range(10))  # 256 B .. 64 MiB
# Seconds: an in-memory request is tens of microseconds, one over NATS about a millisecond; 5 s is the default timeout.
BUS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 5.0, 10.0)
# Seconds from a lost host's last answer to one of its worlds running on another host: ~1 s to a few tens.
FAILOVER_BUCKETS = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0)
# What a durable world's snapshots are labelled by: the types it stores them under (any other: ``other``).
SNAPSHOT_KINDS = frozenset({"periodic", "loop-seal", "manual", "unified"})
OTHER_KIND = "other"


class Ticking(Protocol):
    """What ``soulfra_world_running`` reads of a runtime at each scrape."""

    @property
    def ticking(self) -> bool:
        """Whether its tick loop runs: launched, and not paused, overridden or failed."""


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

    def __init__(
        self,
        *,
        instance_limit: int = MAX_INSTANCE_SERIES,
        clock: Callable[[], float] = time.perf_counter,
        leases: Callable[[], Collection[str]] | None = None,
        disk: Path | None = None,
    ) -> None:
        """``leases``: what reads the writer leases this process holds (a store's ``leases.held``); ``disk``: the
        data directory whose filesystem's free bytes are read. Both at each scrape (``watch_leases``,
        ``watch_disk``); without them those gauges stay at 0."""
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.instance_label = InstanceLabels(instance_limit)
        self.clock = clock  # seconds, for the durations measured here (bus requests, snapshots)
        self._scrapers: list[Callable[[], None]] = []
        self.ticks = Counter("soulfra_ticks", "Ticks run, per instance.", ["world"], registry=r)
        self.tick_duration = Histogram(
            "soulfra_tick_duration_seconds", "Time of one tick: the world's step and its write.",
            buckets=TICK_BUCKETS, registry=r,
        )  # fmt: skip
        self.tick_lag = Gauge(
            "soulfra_tick_lag_seconds", "How far the last tick started behind its schedule, per instance.",
            ["world"], registry=r,
        )  # fmt: skip
        self.world_running = Gauge(
            "soulfra_world_running", "Instances whose tick loop runs (not paused, overridden, failed or stopped): 1 "
            "or 0 per instance, and how many under world=\"_other\".", ["world"], registry=r,
        )  # fmt: skip
        self._worlds: weakref.WeakKeyDictionary[Ticking, str] = weakref.WeakKeyDictionary()
        self._world_labels: set[str] = set()
        self.on_scrape(self._count_running)
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
            "soulfra_snapshot_bytes", "Stored size of the snapshots a running world writes, by kind (periodic, "
            "loop-seal, manual, unified).", ["kind"], buckets=SNAPSHOT_BYTES_BUCKETS, registry=r,
        )  # fmt: skip
        self.snapshot_duration = Histogram(
            "soulfra_snapshot_duration_seconds", "Time to write a snapshot (and the progress before it), by kind.",
            ["kind"], buckets=SNAPSHOT_BUCKETS, registry=r,
        )  # fmt: skip
        self.storage_errors = Counter(
            "soulfra_storage_errors", "Storage failures met by a tick, an input or a snapshot.", registry=r
        )
        self.bus_duration = Histogram(
            "soulfra_bus_request_duration_seconds", "Round trip of a request to a platform over the bus (replies "
            "and errors alike), by platform and op.", ["platform", "op"], buckets=BUS_BUCKETS, registry=r,
        )  # fmt: skip
        self.bus_errors = Counter(
            "soulfra_bus_request_errors", "Requests to a platform that ended in an error, by platform, op and the "
            "error's code (bus_timeout, no_responders, or the one the platform raised).",
            ["platform", "op", "code"], registry=r,
        )  # fmt: skip
        self.leases_held = Gauge("soulfra_leases_held", "Writer leases this process holds.", registry=r)
        self.leases_lost = Counter(
            "soulfra_leases_lost", "Writer leases of running worlds taken over by another writer (once per world).",
            registry=r,
        )  # fmt: skip
        self.audit_verifications = Counter(
            "soulfra_audit_verifications", "Verifications of the audit log's hash chain this process ran.", registry=r
        )
        self.audit_verify_failures = Counter(
            "soulfra_audit_verify_failures", "Verifications that found the audit log broken.", registry=r
        )
        self.audit_last_verify_ok = Gauge(
            "soulfra_audit_last_verify_ok", "1 if the last verification of the audit log held, 0 if it found it "
            "broken (or none has run: see soulfra_audit_verifications_total).", registry=r,
        )  # fmt: skip
        self.mind_calls = Counter(
            "soulfra_mind_calls", "Language-model asks for language agents, by outcome: reply, unparsed, timeout, "
            "rate-limited, server-error, unreachable, refused; skipped (over budget, never sent), late (answered "
            "after its tick).", ["outcome"], registry=r,
        )  # fmt: skip
        self.mind_tokens = Counter(
            "soulfra_mind_tokens", "Tokens language-model calls used, by kind (prompt, completion).", ["kind"],
            registry=r,
        )  # fmt: skip
        self.mind_duration = Histogram(
            "soulfra_mind_call_duration_seconds", "Time of one language-model call, answered or failed.",
            buckets=MIND_BUCKETS, registry=r,
        )  # fmt: skip
        self.disk_free = Gauge(
            "soulfra_data_disk_free_bytes", "Bytes free (to this user) on the data directory's filesystem.", registry=r
        )
        self.disk_size = Gauge("soulfra_data_disk_size_bytes", "Size of the data directory's filesystem.", registry=r)
        if leases is not None:
            self.watch_leases(leases)
        if disk is not None:
            self.watch_disk(disk)

    def track_world(self, runtime: Ticking, label: str) -> None:
        """Count ``runtime`` in ``soulfra_world_running{world=label}`` from now on (for as long as it lives)."""
        self._worlds[runtime] = label

    def _count_running(self) -> None:
        counts = dict.fromkeys(self._world_labels, 0)
        for runtime, label in list(self._worlds.items()):
            counts[label] = counts.get(label, 0) + runtime.ticking
        self._world_labels.update(counts)
        for label, running in counts.items():
            self.world_running.labels(label).set(running)

    @contextmanager
    def bus_request(self, platform: str, op: str) -> Iterator[None]:
        """Time one request to ``platform``'s ``op`` and count it as an error if it raises a Soulfra error (a
        request cancelled by its caller is neither: it got no answer)."""
        started = self.clock()
        try:
            yield
        except SoulfraError as exc:
            self.bus_duration.labels(platform, op).observe(self.clock() - started)
            self.bus_errors.labels(platform, op, exc.code).inc()
            raise
        self.bus_duration.labels(platform, op).observe(self.clock() - started)

    def snapshot_written(self, kind: str, stored_size: int, seconds: float) -> None:
        label = kind if kind in SNAPSHOT_KINDS else OTHER_KIND
        self.snapshot_bytes.labels(label).observe(stored_size)
        self.snapshot_duration.labels(label).observe(seconds)

    def storage_failed(self, error: StorageError, *, lease_counted: bool = False) -> bool:
        """Count a storage failure; a lost lease also as one, unless ``lease_counted`` (that world's loss was
        counted already). Whether the lease is now counted as lost."""
        self.storage_errors.inc()
        if isinstance(error, LeaseLostError):
            if not lease_counted:
                self.leases_lost.inc()
            return True
        return lease_counted

    def audit_verified(self, *, ok: bool) -> None:
        """A verification of the audit log ran: it held (``ok``) or found the log broken."""
        self.audit_verifications.inc()
        if not ok:
            self.audit_verify_failures.inc()
        self.audit_last_verify_ok.set(1 if ok else 0)

    def watch_leases(self, held: Callable[[], Collection[str]]) -> None:
        """Read the writer leases held (a store's ``leases.held``) at each scrape."""
        self.on_scrape(lambda: self.leases_held.set(len(held())))

    def watch_disk(self, path: Path) -> None:
        """Read the free and total bytes of ``path``'s filesystem at each scrape (kept as they were while it
        cannot be read)."""

        def update() -> None:
            try:
                usage = shutil.disk_usage(path)
            except OSError:
                return
            self.disk_free.set(usage.free)
            self.disk_size.set(usage.total)

        self.on_scrape(update)

    def on_scrape(self, update: Callable[[], None]) -> None:
        """Call ``update`` before each rendering (to set gauges of current state from what the system holds)."""
        self._scrapers.append(update)

    def render(self) -> bytes:
        for update in self._scrapers:
            update()
        return generate_latest(self.registry)


class ClusterMetrics:
    """The cluster puppet master's own series, in the registry of its system's ``Metrics`` (only a cluster's process
    has them): worlds per host (labelled ``node`` with the host's name; a lost host's series stays, at 0), hosts lost,
    and each world taken over from a lost host with the seconds it took."""

    def __init__(self, metrics: Metrics, placement: Callable[[], Mapping[str, int]]) -> None:
        """``placement``: what reads the number of worlds each live host runs, by node, at each scrape."""
        r = metrics.registry
        self.worlds = Gauge(
            "soulfra_cluster_worlds", "Worlds each host of the cluster runs, by host (its node's name, #2, #3... for "
            "a node's second host on; 0 once the host is lost).",
            ["node"], registry=r,
        )  # fmt: skip
        self.hosts = Gauge("soulfra_cluster_hosts", "Live hosts of the cluster (some on each node).", registry=r)
        self.hosts_lost = Counter(
            "soulfra_cluster_hosts_lost", "Hosts found dead (their node lost, or their process gone).", registry=r
        )
        self.failovers = Counter(
            "soulfra_cluster_failovers", "Worlds of a lost host started again on another host.", registry=r
        )
        self.failover_duration = Histogram(
            "soulfra_cluster_failover_seconds", "Per world taken over: seconds from its lost host's last answer to "
            "the world running on another host (an upper bound of the time it did not tick).",
            buckets=FAILOVER_BUCKETS, registry=r,
        )  # fmt: skip
        self._nodes: set[str] = set()
        self._placement = placement
        metrics.on_scrape(self._count)

    def _count(self) -> None:
        live = dict(self._placement())
        counts = dict.fromkeys(self._nodes, 0) | live
        self._nodes.update(counts)
        for node, worlds in counts.items():
            self.worlds.labels(node).set(worlds)
        self.hosts.set(len(live))

    def host_lost(self) -> None:
        self.hosts_lost.inc()

    def failed_over(self, seconds: float) -> None:
        self.failovers.inc()
        self.failover_duration.observe(seconds)
