"""The metrics move exactly as the system does: ticks_total by the ticks run (and the tick's duration and lag read
from the runtime's clock), inputs under ok or the refusing code, god commands by type and outcome, HTTP requests
by route template and status, 401s as auth failures; /metrics takes a viewer token and parses as Prometheus text;
per-instance series stop at the cap and the rest aggregate under world="_other"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from soulfra.api.access import AccessSettings
from soulfra.bus import InMemoryBus
from soulfra.durable import DurableWorld
from soulfra.errors import NotFoundError, StorageUnavailableError, UnknownAgentError
from soulfra.meta.commands import FreezeTime
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.metrics import OTHER_INSTANCES, UNMATCHED_ROUTE, InstanceLabels, Metrics
from soulfra.platforms.instance import InstanceSettings
from soulfra.platforms.runtime import RuntimePlatform
from soulfra.security.local import read_home_token
from soulfra.store import InMemoryStore
from soulfra.system import EmbeddedSettings, embedded_app
from soulfra.world import DEFAULT_WORLD

from .support import TEST_HOST, api_in_process, client_for, sample, wait_until

pytestmark = pytest.mark.anyio


async def _runtime(metrics: Metrics, instance_id: str, memory_bus: InMemoryBus) -> RuntimePlatform:
    world = DurableWorld.create(InMemoryStore(), 0, DEFAULT_WORLD, instance_id=instance_id)
    runtime = RuntimePlatform(world, memory_bus, rate=None, metrics=metrics)
    await runtime.start()
    return runtime


async def test_ticks_total_grows_by_exactly_the_ticks_run(memory_bus: InMemoryBus) -> None:
    metrics = Metrics()
    runtime = await _runtime(metrics, "w", memory_bus)
    try:
        await runtime.launch(ticks=7)
        assert sample(metrics, "soulfra_ticks_total", world="w") == 7
        await runtime.launch(ticks=5)
        assert sample(metrics, "soulfra_ticks_total", world="w") == 12
        assert sample(metrics, "soulfra_tick_duration_seconds_count") == 12
    finally:
        await runtime.shutdown()


async def test_tick_duration_and_lag_come_from_the_runtimes_clock(memory_bus: InMemoryBus) -> None:
    """A clock that moves 2 s at each reading: the tick takes 2 s, and at one tick a second the next one is due 5 s
    before the loop looks (scheduled 1 s after the first reading, looked at on the fourth, at 6 s)."""
    readings = iter(range(0, 100 * 2_000_000_000, 2_000_000_000))
    metrics = Metrics()
    world = DurableWorld.create(InMemoryStore(), 0, DEFAULT_WORLD, instance_id="w")
    runtime = RuntimePlatform(world, memory_bus, rate=1.0, metrics=metrics, clock_ns=lambda: next(readings))
    await runtime.start()
    try:
        await runtime.launch(ticks=1)
        assert sample(metrics, "soulfra_tick_duration_seconds_sum") == 2.0
        assert sample(metrics, "soulfra_tick_lag_seconds", world="w") == 5.0
    finally:
        await runtime.shutdown()


async def test_a_refused_whisper_counts_under_its_code_and_an_accepted_one_under_ok(memory_bus: InMemoryBus) -> None:
    metrics = Metrics()
    runtime = await _runtime(metrics, "w", memory_bus)
    try:
        with pytest.raises(UnknownAgentError):
            await runtime.whisper({"target": "nobody", "text": "are you there?"})
        assert sample(metrics, "soulfra_inputs_total", outcome=UnknownAgentError.code) == 1
        assert sample(metrics, "soulfra_inputs_total", outcome="ok") == 0
        await runtime.whisper({"target": "*", "text": "hello, all"})
        await runtime.submit({"inputs": [{"type": "whisper", "target": "*", "text": str(n)} for n in range(3)]})
        assert sample(metrics, "soulfra_inputs_total", outcome="ok") == 4
        assert sample(metrics, "soulfra_inputs_total", outcome=UnknownAgentError.code) == 1
    finally:
        await runtime.shutdown()


async def test_a_snapshot_counts_its_stored_bytes_and_a_storage_failure_counts_as_one(
    memory_bus: InMemoryBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = Metrics()
    runtime = await _runtime(metrics, "w", memory_bus)
    try:
        taken = await runtime.snapshot({})
        assert sample(metrics, "soulfra_snapshot_bytes_count", kind="manual") == 1
        assert sample(metrics, "soulfra_snapshot_bytes_sum", kind="manual") == taken["stored_size"]
        assert sample(metrics, "soulfra_snapshot_duration_seconds_count", kind="manual") == 1

        def unavailable(kind: str) -> None:
            raise StorageUnavailableError("the disk went away")

        monkeypatch.setattr(runtime.world, "snapshot", unavailable)
        with pytest.raises(StorageUnavailableError):
            await runtime.snapshot({})
        assert sample(metrics, "soulfra_storage_errors_total") == 1
        assert sample(metrics, "soulfra_snapshot_bytes_count", kind="manual") == 1
    finally:
        monkeypatch.undo()
        await runtime.shutdown()


async def test_instances_past_the_cap_aggregate_under_other(memory_bus: InMemoryBus) -> None:
    metrics = Metrics(instance_limit=2)
    runtimes = [await _runtime(metrics, name, memory_bus) for name in ("w1", "w2", "w3", "w4")]
    try:
        for n, runtime in enumerate(runtimes, start=1):
            await runtime.launch(ticks=n)
        assert sample(metrics, "soulfra_ticks_total", world="w1") == 1
        assert sample(metrics, "soulfra_ticks_total", world="w2") == 2
        assert sample(metrics, "soulfra_ticks_total", world=OTHER_INSTANCES) == 3 + 4
        assert metrics.registry.get_sample_value("soulfra_ticks_total", {"world": "w3"}) is None
    finally:
        for runtime in runtimes:
            await runtime.shutdown()


def test_instance_labels_keep_the_first_ones_seen() -> None:
    labels = InstanceLabels(limit=2)
    assert [labels(i) for i in ("b", "a", "c", "b", "a", "d")] == ["b", "a", OTHER_INSTANCES, "b", "a", OTHER_INSTANCES]


# -- through the engine and the API ----------------------------------------------------------------------------------


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, PuppetMasterEngine, httpx.AsyncClient]]:
    settings = EngineSettings(instance=InstanceSettings(rate=20.0))
    async with api_in_process(tmp_path, "a", settings) as (app, engine, admin):
        await engine.create_instance(seed=0, spec=DEFAULT_WORLD, agents=1, instance_id="a")
        yield app, engine, admin


async def test_god_commands_count_by_type_and_outcome(
    system: tuple[FastAPI, PuppetMasterEngine, httpx.AsyncClient],
) -> None:
    _, engine, _ = system
    await engine.execute(FreezeTime(instances=["a"]))
    with pytest.raises(NotFoundError):
        await engine.execute(FreezeTime(instances=["nowhere"]))
    assert sample(engine.metrics, "soulfra_god_commands_total", type="FREEZE_TIME", outcome="ok") == 1
    assert sample(engine.metrics, "soulfra_god_commands_total", type="FREEZE_TIME", outcome=NotFoundError.code) == 1


async def test_http_requests_count_by_route_template_and_status(
    system: tuple[FastAPI, PuppetMasterEngine, httpx.AsyncClient],
) -> None:
    app, engine, admin = system
    metrics: Metrics = app.state.metrics
    assert metrics is engine.metrics  # one registry for the whole system
    assert (await admin.get("/api/instances/a/status")).status_code == 200
    assert (await admin.get("/api/instances/a/status")).status_code == 200
    assert (await admin.get("/api/instances/nowhere/status")).status_code == 404
    assert (await admin.get("/no/such/path")).status_code == 404
    template = "/api/instances/{instance_id}/status"
    assert sample(metrics, "soulfra_http_requests_total", method="GET", route=template, status="200") == 2
    assert sample(metrics, "soulfra_http_requests_total", method="GET", route=template, status="404") == 1
    assert sample(metrics, "soulfra_http_requests_total", method="GET", route=UNMATCHED_ROUTE, status="404") == 1
    assert sample(metrics, "soulfra_http_request_duration_seconds_count", route=template) == 3
    routes = {s.labels["route"] for f in _families(metrics) for s in f.samples if "route" in s.labels}
    assert not any("/a/" in route or "nowhere" in route or "such" in route for route in routes), routes
    assert sample(metrics, "soulfra_auth_failures_total") == 0


async def test_a_401_counts_as_an_auth_failure(system: tuple[FastAPI, PuppetMasterEngine, httpx.AsyncClient]) -> None:
    app, _, _ = system
    metrics: Metrics = app.state.metrics
    async with client_for(app) as anonymous, client_for(app, "sft_not-a-token") as wrong:
        assert (await anonymous.get("/api/instances")).status_code == 401
        assert (await wrong.get("/api/instances")).status_code == 401
        assert (await anonymous.get("/api/vibe/weather")).status_code == 200  # public: no failure
    assert sample(metrics, "soulfra_auth_failures_total") == 2
    assert sample(metrics, "soulfra_http_requests_total", method="GET", route="/api/instances", status="401") == 2


async def test_metrics_needs_a_viewer_token_and_parses_as_prometheus_text(
    system: tuple[FastAPI, PuppetMasterEngine, httpx.AsyncClient],
) -> None:
    app, engine, _ = system
    _, viewer = app.state.tokens.create(name="scraper", role="viewer", by="tests")
    async with client_for(app) as anonymous, client_for(app, viewer) as scraper:
        assert (await anonymous.get("/metrics")).status_code == 401
        reply = await scraper.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    for name in ("soulfra_ticks", "soulfra_tick_duration_seconds", "soulfra_inputs", "soulfra_god_commands",
                 "soulfra_http_requests", "soulfra_auth_failures", "soulfra_instances", "soulfra_stream_clients",
                 "soulfra_stream_clients_dropped", "soulfra_snapshot_bytes", "soulfra_storage_errors"):  # fmt: skip
        assert name in families, name
    assert families["soulfra_ticks"].type == "counter"
    assert families["soulfra_tick_duration_seconds"].type == "histogram"
    live = {s.labels["status"]: s.value for s in families["soulfra_instances"].samples}
    assert sum(live.values()) == len(engine.live)
    assert live["running"] == len(engine.live)
    assert {s.value for s in families["soulfra_stream_clients"].samples} == {0.0}


def _families(metrics: Metrics) -> list[Metric]:
    return list(text_string_to_metric_families(metrics.render().decode()))


async def test_soulfra_up_counts_its_ticks_and_requests_in_one_registry(tmp_path: Path) -> None:
    """The composition root wires one ``Metrics`` through the engine, every runtime and the API: the default
    instance's ticks show on /metrics beside the requests that read them."""
    access = AccessSettings.for_host("127.0.0.1", [TEST_HOST])
    settings = EmbeddedSettings(data=tmp_path / "data", home=tmp_path / "home", rate=200.0, access=access)
    app = embedded_app(settings)
    token = read_home_token(settings.home)
    async with app.router.lifespan_context(app), client_for(app, token) as client:
        metrics: Metrics = app.state.metrics
        assert metrics is app.state.engine.metrics
        default = app.state.gateway.default_instance
        await wait_until(
            "the default instance ticks", lambda: sample(metrics, "soulfra_ticks_total", world=default) > 2
        )
        reply = await client.get("/metrics")
        assert reply.status_code == 200
        ticks = {s.labels["world"]: s.value for f in text_string_to_metric_families(reply.text)
                 if f.name == "soulfra_ticks" for s in f.samples if s.name == "soulfra_ticks_total"}  # fmt: skip
        assert set(ticks) == {default}
        assert ticks[default] > 2
        assert (await client.get("/metrics")).status_code == 200
        assert sample(metrics, "soulfra_http_requests_total", method="GET", route="/metrics", status="200") == 2
