"""The operations metrics move exactly as the system does: a memory_bus request's round trip by platform and op (and its
error by code), for the API's calls and the god commands' alike; the writer leases held and a lost one counted once;
every snapshot a running world writes, by kind; each audit-log verification and whether it held; the data disk's
free bytes, read at each scrape."""

from __future__ import annotations

import contextlib
import itertools
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from soulfra.api.access import AccessSettings
from soulfra.api.operations import audit_watch
from soulfra.bus import InMemoryBus
from soulfra.durable import DurabilitySettings, DurableWorld
from soulfra.errors import LeaseLostError, NoRespondersError, UnknownAgentError
from soulfra.meta.commands import FreezeTime
from soulfra.metrics import OTHER_INSTANCES, Metrics
from soulfra.platforms.bridge import CrossPlatformBridge
from soulfra.platforms.runtime import RuntimePlatform
from soulfra.security.audit import AuditRecorder
from soulfra.security.local import read_home_token
from soulfra.store import InMemoryStore, MemoryDatabase
from soulfra.system import EmbeddedSettings, embedded_app
from soulfra.world import DEFAULT_WORLD

from .support import TEST_HOST, client_for, sample, wait_until

pytestmark = pytest.mark.anyio


def stepping_clock() -> Metrics:
    """Metrics whose clock moves one second at each reading: every duration it measures is exactly 1 s."""
    ticks = itertools.count()
    return Metrics(clock=lambda: float(next(ticks)))


# -- bus requests ------------------------------------------------------------------------------------------------


async def test_a_bridge_times_each_request_by_platform_and_op_and_counts_errors_by_code(
    memory_bus: InMemoryBus,
) -> None:
    metrics = stepping_clock()
    world = DurableWorld.create(InMemoryStore(), 0, DEFAULT_WORLD, instance_id="w")
    runtime = RuntimePlatform(world, memory_bus, rate=None)  # its own registry: only the bridge counts into ``metrics``
    await runtime.start()
    bridge = CrossPlatformBridge(memory_bus, "w", metrics=metrics)
    try:
        await bridge.request("runtime", "status")
        await bridge.request("runtime", "status")
        with pytest.raises(UnknownAgentError):
            await bridge.send_whisper_to_runtime("are you there?", target="nobody")
        with pytest.raises(NoRespondersError):
            await bridge.request("surface", "weather")  # no surface runs
    finally:
        await runtime.shutdown()
    assert sample(metrics, "soulfra_bus_request_duration_seconds_count", platform="runtime", op="status") == 2
    assert sample(metrics, "soulfra_bus_request_duration_seconds_sum", platform="runtime", op="status") == 2.0
    assert sample(metrics, "soulfra_bus_request_duration_seconds_count", platform="runtime", op="whisper") == 1
    assert sample(metrics, "soulfra_bus_request_duration_seconds_count", platform="surface", op="weather") == 1
    errors = {
        (s.labels["platform"], s.labels["op"], s.labels["code"]): s.value
        for f in metrics.registry.collect() if f.name == "soulfra_bus_request_errors"
        for s in f.samples if s.name == "soulfra_bus_request_errors_total"
    }  # fmt: skip
    assert errors == {("runtime", "whisper", UnknownAgentError.code): 1, ("surface", "weather", "no_responders"): 1}


async def test_the_api_and_god_commands_time_their_bus_requests_in_the_systems_registry(tmp_path: Path) -> None:
    access = AccessSettings.for_host("127.0.0.1", [TEST_HOST])
    settings = EmbeddedSettings(data=tmp_path / "data", home=tmp_path / "home", rate=50.0, access=access)
    app = embedded_app(settings)
    async with app.router.lifespan_context(app), client_for(app, read_home_token(settings.home)) as client:
        metrics: Metrics = app.state.metrics
        default = app.state.gateway.default_instance
        assert sample(metrics, "soulfra_bus_request_duration_seconds_count", platform="runtime", op="snapshots") == 0
        assert (await client.get(f"/api/instances/{default}/snapshots")).status_code == 200
        assert (await client.get(f"/api/instances/{default}/snapshots")).status_code == 200
        assert sample(metrics, "soulfra_bus_request_duration_seconds_count", platform="runtime", op="snapshots") == 2
        await app.state.engine.execute(FreezeTime(instances=[default]))  # the engine's bridge asks the runtime
        assert sample(metrics, "soulfra_bus_request_duration_seconds_count", platform="runtime", op="pause") == 1
        families = _scrape_names(await client.get("/metrics"))
        assert {
            "soulfra_bus_request_duration_seconds",
            "soulfra_leases_held",
            "soulfra_data_disk_free_bytes",
        } <= families
        # the server's own lease and the default instance's, as its store holds them
        held = app.state.gateway.store.leases.held()
        assert len(held) == 2
        assert sample(metrics, "soulfra_leases_held") == 2


def _scrape_names(reply: httpx.Response) -> set[str]:
    assert reply.status_code == 200
    return {f.name for f in text_string_to_metric_families(reply.text)}


# -- leases -------------------------------------------------------------------------------------------------------


def test_leases_held_are_read_at_each_scrape() -> None:
    held = ["w1"]
    metrics = Metrics(leases=lambda: held)
    metrics.render()
    assert sample(metrics, "soulfra_leases_held") == 1
    held.extend(["w2", ":puppet-master"])
    assert sample(metrics, "soulfra_leases_held") == 1  # read at the scrape, not before
    metrics.render()
    assert sample(metrics, "soulfra_leases_held") == 3


async def test_a_lease_taken_over_counts_once_and_each_refused_write_as_a_storage_error(
    memory_bus: InMemoryBus,
) -> None:
    database = MemoryDatabase()
    old = InMemoryStore(database)
    metrics = Metrics(leases=old.leases.held)
    world = DurableWorld.create(old, 0, DEFAULT_WORLD, instance_id="w", settings=DurabilitySettings(snapshot_every=5))
    runtime = RuntimePlatform(world, memory_bus, rate=None, metrics=metrics)
    await runtime.start()
    try:
        await runtime.whisper({"text": "still mine"})
        database.live.discard(old.leases.token)  # as if this process had died: another one takes the world over
        new = InMemoryStore(database)
        new.leases.acquire("w")
        for _ in range(2):
            with pytest.raises(LeaseLostError):
                await runtime.whisper({"text": "never stored"})
        assert sample(metrics, "soulfra_leases_lost_total") == 1
        assert sample(metrics, "soulfra_storage_errors_total") == 2
        await runtime.launch(ticks=10)  # the snapshot at tick 5 is refused: the world stops
        assert runtime.failure is not None and runtime.failure.code == LeaseLostError.code
        assert sample(metrics, "soulfra_leases_lost_total") == 1
        assert sample(metrics, "soulfra_storage_errors_total") == 3
        metrics.render()
        assert sample(metrics, "soulfra_leases_held") == 1  # as far as this process knows
    finally:
        with contextlib.suppress(LeaseLostError):  # its last flush is refused too
            await runtime.shutdown()


# -- snapshots ----------------------------------------------------------------------------------------------------


async def test_every_snapshot_a_running_world_writes_is_observed_by_kind(memory_bus: InMemoryBus) -> None:
    """Periodic and loop-seal snapshots from the tick loop, one on request, one saved from a capture: each kind's
    count and bytes are those of the snapshots stored, and each took one step of the clock."""
    metrics = stepping_clock()
    store = InMemoryStore()
    spec = replace(DEFAULT_WORLD, loop_length=7)
    world = DurableWorld.create(store, 0, spec, instance_id="w", settings=DurabilitySettings(snapshot_every=5))
    runtime = RuntimePlatform(world, memory_bus, rate=None, metrics=metrics)
    await runtime.start()
    try:
        await runtime.launch(ticks=31)  # periodic at 5, 10, ..., 30; sealed at 7, 14, 21, 28
        await runtime.snapshot({})  # at tick 31 (one snapshot a tick is kept: each of these at a tick of its own)
        await runtime.launch(ticks=1)
        captured = await runtime.capture({})  # at tick 32
        await runtime.save_capture({"capture": captured["capture"], "type": "unified"})
    finally:
        await runtime.shutdown()
    stored = [s for s in store.snapshots.list_snapshots("w") if s.type != "genesis"]
    kinds = {s.type for s in stored}
    assert sorted((s.tick, s.type) for s in stored if s.type in ("manual", "unified")) == [
        (31, "manual"),
        (32, "unified"),
    ]
    assert sample(metrics, "soulfra_snapshot_bytes_count", kind="periodic") == 6
    assert sample(metrics, "soulfra_snapshot_bytes_count", kind="loop-seal") == 4
    for kind in kinds:
        of_kind = [s for s in stored if s.type == kind]
        assert sample(metrics, "soulfra_snapshot_bytes_count", kind=kind) == len(of_kind), kind
        assert sample(metrics, "soulfra_snapshot_bytes_sum", kind=kind) == sum(s.stored_size for s in of_kind), kind
        assert sample(metrics, "soulfra_snapshot_duration_seconds_sum", kind=kind) == len(of_kind), kind
    assert sample(metrics, "soulfra_snapshot_bytes_count", kind="genesis") == 0  # before any runtime ran it


def test_a_durable_world_without_metrics_observes_nothing_and_an_unknown_kind_is_other() -> None:
    metrics = stepping_clock()
    world = DurableWorld.create(InMemoryStore(), 0, DEFAULT_WORLD, instance_id="w")
    world.snapshot("manual")  # no metrics set: nothing to count into
    world.metrics = metrics
    info = world.snapshot("export-check")
    assert sample(metrics, "soulfra_snapshot_bytes_sum", kind="other") == info.stored_size
    assert sample(metrics, "soulfra_snapshot_bytes_count", kind="manual") == 0


# -- the audit log ------------------------------------------------------------------------------------------------


async def test_each_audit_verification_counts_and_a_broken_log_sets_last_ok_to_0(tmp_path: Path) -> None:
    access = AccessSettings.for_host("127.0.0.1", [TEST_HOST])
    settings = EmbeddedSettings(data=tmp_path / "data", home=tmp_path / "home", rate=None, access=access)
    app = embedded_app(settings)
    async with app.router.lifespan_context(app), client_for(app, read_home_token(settings.home)) as client:
        metrics: Metrics = app.state.metrics
        await wait_until(
            "the watch verifies the log at start", lambda: sample(metrics, "soulfra_audit_verifications_total") == 1
        )
        assert sample(metrics, "soulfra_audit_last_verify_ok") == 1
        assert (await client.get("/api/audit/verify")).json()["ok"] is True
        assert sample(metrics, "soulfra_audit_verifications_total") == 2
        assert sample(metrics, "soulfra_audit_verify_failures_total") == 0
        with sqlite3.connect(settings.data / "soulfra.db") as conn:
            conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE id = 1")
        assert (await client.get("/api/audit/verify")).json()["ok"] is False
        assert sample(metrics, "soulfra_audit_verifications_total") == 3
        assert sample(metrics, "soulfra_audit_verify_failures_total") == 1
        assert sample(metrics, "soulfra_audit_last_verify_ok") == 0


async def test_the_audit_watch_verifies_at_start_and_again_each_period() -> None:
    metrics = Metrics()
    recorder = AuditRecorder(InMemoryStore())
    async with audit_watch(recorder, metrics, every=0.01):
        await wait_until("two verifications", lambda: sample(metrics, "soulfra_audit_verifications_total") >= 2)
    done = sample(metrics, "soulfra_audit_verifications_total")
    assert sample(metrics, "soulfra_audit_verify_failures_total") == 0
    assert sample(metrics, "soulfra_audit_last_verify_ok") == 1
    assert sample(metrics, "soulfra_audit_verifications_total") == done  # stopped with the context


def test_audit_last_verify_ok_follows_the_last_verification() -> None:
    metrics = Metrics()
    metrics.audit_verified(ok=False)
    metrics.audit_verified(ok=True)
    assert sample(metrics, "soulfra_audit_last_verify_ok") == 1
    assert sample(metrics, "soulfra_audit_verify_failures_total") == 1
    assert sample(metrics, "soulfra_audit_verifications_total") == 2


# -- the data disk ------------------------------------------------------------------------------------------------


class Usage(NamedTuple):
    total: int
    used: int
    free: int


def test_the_data_disks_free_bytes_are_read_at_each_scrape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    usage = [Usage(total=1000, used=600, free=400)]
    seen: list[Path] = []

    def disk_usage(path: Path) -> object:
        seen.append(path)
        return usage[-1]

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    metrics = Metrics(disk=tmp_path)
    metrics.render()
    assert (sample(metrics, "soulfra_data_disk_free_bytes"), sample(metrics, "soulfra_data_disk_size_bytes")) == (
        400,
        1000,
    )
    usage.append(Usage(total=1000, used=900, free=100))
    metrics.render()
    assert sample(metrics, "soulfra_data_disk_free_bytes") == 100
    assert seen == [tmp_path, tmp_path]


def test_a_data_disk_that_cannot_be_read_keeps_its_last_reading(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    metrics = Metrics(disk=gone)
    metrics.render()
    assert sample(metrics, "soulfra_data_disk_size_bytes") == shutil.disk_usage(tmp_path).total
    gone.rmdir()
    metrics.render()  # no error at the scrape
    assert sample(metrics, "soulfra_data_disk_size_bytes") == shutil.disk_usage(tmp_path).total


# -- running worlds -----------------------------------------------------------------------------------------------


async def test_world_running_is_1_while_the_tick_loop_runs_and_others_past_the_cap_are_summed(
    memory_bus: InMemoryBus,
) -> None:
    metrics = Metrics(instance_limit=1)
    runtimes = []
    for name in ("w1", "w2", "w3"):
        world = DurableWorld.create(InMemoryStore(), 0, DEFAULT_WORLD, instance_id=name)
        runtimes.append(RuntimePlatform(world, memory_bus, rate=100.0, metrics=metrics))
    w1, w2, w3 = runtimes

    def running() -> dict[str, float]:
        metrics.render()
        return {w: sample(metrics, "soulfra_world_running", world=w) for w in ("w1", OTHER_INSTANCES)}

    for runtime in runtimes:
        await runtime.start()
    try:
        assert running() == {"w1": 0, OTHER_INSTANCES: 0}
        for runtime in runtimes:
            runtime.launch()
        assert running() == {"w1": 1, OTHER_INSTANCES: 2}
        await w1.pause({})
        await w2.override({"reason": "tests"})
        assert running() == {"w1": 0, OTHER_INSTANCES: 1}
        await w1.resume({})
        assert running() == {"w1": 1, OTHER_INSTANCES: 1}
        await w3.shutdown()
        assert running() == {"w1": 1, OTHER_INSTANCES: 0}
    finally:
        for runtime in (w1, w2):
            await runtime.shutdown()
    assert running() == {"w1": 0, OTHER_INSTANCES: 0}
