"""A tick that fails is never invisible: a mind that raises stops its instance in state ``failed`` with the error and
the tick in its status, the log and ``/readyz``; the other instances tick on; inputs to the failed one are refused;
shutdown completes, and a restart resumes the instance from its last committed tick, as a clean replay would.

Engines run on a SQLite file and the in-memory bus; the API is driven in process through httpx's ASGI transport.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from soulfra.api import Gateway, create_app
from soulfra.api.access import AccessSettings
from soulfra.api.app import status_for
from soulfra.api.meta import meta_router
from soulfra.bus import InMemoryBus
from soulfra.cli import EXIT_CODES
from soulfra.cli import app as cli_app
from soulfra.cli import meta as cli_meta
from soulfra.cli import server as cli_server
from soulfra.errors import InstanceFailedError, StorageUnavailableError, error_for_code
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.meta.keys import KeyRing
from soulfra.meta.package import Limits
from soulfra.meta.service import LocalPuppetMaster
from soulfra.platforms.instance import InstanceSettings
from soulfra.platforms.runtime import RuntimePlatform
from soulfra.security.audit import AuditRecorder
from soulfra.security.tokens import TokenService
from soulfra.store import InMemoryStore, MemoryDatabase
from soulfra.world import DEFAULT_WORLD, World
from soulfra.world.actions import Action
from soulfra.world.events import Event
from soulfra.world.minds.base import View
from soulfra.world.minds.cal_riven import CalRivenAgent
from soulfra.world.rng import Stream

from .support import TEST_HOST, client_for, wait_until

STEADY_SEED, DOOMED_SEED = 3, 11  # the patched mind raises only in the world of DOOMED_SEED
AGENTS = 2
FAIL_FROM = 12  # the mind raises the first time it decides at this tick or later
DEADLINE_S = 10.0


class Mind:
    """Cal Riven's decision function, made to raise in one world from ``FAIL_FROM`` on (from the first tick it
    raised at, once it has); remembers where it raised."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.raised_at: list[int] = []
        real = CalRivenAgent.decide

        def decide(mind: CalRivenAgent, view: View, agent: int, rng: Stream) -> Action:
            # From the first tick it raises at on, and never before it: the runtime's rebuild after the failure
            # replays the ticks before that one (from a snapshot that may be past FAIL_FROM, when the world ticked
            # on before the patch was in), and those must decide as they did.
            if view.state.seed == DOOMED_SEED and view.tick >= (self.raised_at[0] if self.raised_at else FAIL_FROM):
                self.raised_at.append(view.tick)
                raise ZeroDivisionError("Cal Riven divided the vote by zero")
            return real(mind, view, agent, rng)

        monkeypatch.setattr(CalRivenAgent, "decide", decide)

    @property
    def tick(self) -> int:
        assert self.raised_at, "the patched mind never raised"
        return self.raised_at[0]


@pytest.fixture
def database() -> MemoryDatabase:
    """What outlives one system: a second one over it finds what the first stored."""
    return MemoryDatabase()


class System:
    """An engine over a store and a bus, with the API in front of it, as ``soulfra up`` builds them."""

    def __init__(self, database: MemoryDatabase, default_instance: str) -> None:
        self.store = InMemoryStore(database)
        self.bus = InMemoryBus()
        self.engine = PuppetMasterEngine(self.store, self.bus, EngineSettings(instance=InstanceSettings(rate=None)))
        master = LocalPuppetMaster(self.engine, default_instance)
        gateway = Gateway(self.bus, default_instance, store=self.store, lister=master.list_instances)
        tokens = TokenService(self.store)
        app = create_app(
            gateway,
            extra=[meta_router(master, gateway, KeyRing(Path("unused")), Limits())],
            tokens=tokens,
            recorder=AuditRecorder(self.store),
            access=AccessSettings.for_host("127.0.0.1", [TEST_HOST]),
            puppet=master,
        )
        app.state.engine = self.engine  # as the composition root (soulfra.system) wires it
        _, admin = tokens.create(name=f"test-admin-{secrets.token_hex(4)}", role="admin", by="tests")
        self.http = client_for(app, admin)
        self.closed = False

    def runtime(self, instance_id: str) -> RuntimePlatform:
        return self.engine.live[instance_id].runtime

    def tick(self, instance_id: str) -> int:
        return self.runtime(instance_id).world.tick

    async def create(self, instance_id: str, seed: int) -> None:
        await self.engine.create_instance(seed=seed, spec=DEFAULT_WORLD, agents=AGENTS, instance_id=instance_id)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self.http.aclose()
            await self.engine.close()
        finally:
            await self.bus.close()
            self.store.close()


@pytest.fixture
async def systems(database: MemoryDatabase, anyio_backend: str) -> AsyncIterator[Callable[[str], System]]:
    opened: list[System] = []

    def factory(default_instance: str) -> System:
        opened.append(System(database, default_instance))
        return opened[-1]

    yield factory
    for system in reversed(opened):
        await system.close()


@pytest.fixture
def failures_logged(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    """The log records that carry a traceback."""
    caplog.set_level(logging.INFO)

    def tracebacks() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.exc_info is not None]

    return tracebacks


# -- a mind that raises ----------------------------------------------------------------------------------------


async def fail_one(up: System, monkeypatch: pytest.MonkeyPatch) -> Mind:
    """Two healthy instances (ready), then a third whose mind raises; back once it has stopped."""
    await up.create("steady", STEADY_SEED)
    await up.create("calm", STEADY_SEED + 1)
    await wait_until("the instances tick", lambda: up.tick("steady") > 3 and up.tick("calm") > 3)
    ready = await up.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    mind = Mind(monkeypatch)
    await up.create("doomed", DOOMED_SEED)
    runtime = up.runtime("doomed")
    await wait_until("the doomed instance stops", lambda: not runtime.running)
    return mind


@pytest.mark.anyio
async def test_a_mind_that_raises_fails_its_instance_visibly_and_the_others_tick_on(
    systems: Callable[[str], System],
    monkeypatch: pytest.MonkeyPatch,
    failures_logged: Callable[[], list[logging.LogRecord]],
) -> None:
    up = systems("steady")
    mind = await fail_one(up, monkeypatch)
    expected = {
        "tick": mind.tick,
        "type": "ZeroDivisionError",
        "message": "Cal Riven divided the vote by zero",
        "code": "internal_error",
    }
    assert mind.raised_at == [mind.tick]  # stopped at the first failure: no tick ran after it
    status = await up.engine.live["doomed"].status()
    runtime_status = status.platforms["runtime"]
    assert (runtime_status["state"], runtime_status["failure"]) == ("failed", expected)
    assert runtime_status["tick"] == mind.tick  # the tick that failed left nothing behind
    assert status.tick == mind.tick

    shown = await up.http.get("/api/instances/doomed")
    assert shown.status_code == 200
    assert (shown.json()["state"], shown.json()["failure"], shown.json()["tick"]) == ("failed", expected, mind.tick)
    listed = {row["id"]: row for row in (await up.http.get("/api/instances")).json()["instances"]}
    assert (listed["doomed"]["state"], listed["doomed"]["failure"]) == ("failed", expected)
    assert {listed[i]["state"] for i in ("steady", "calm")} == {"running"}
    assert listed["steady"]["failure"] is None

    # the CLI's lines say what stopped it, from these same replies
    replies = {
        "/api/instances": (await up.http.get("/api/instances")).json(),
        "/api/instances/doomed": shown.json(),
        "/api/instances/doomed/status": (await up.http.get("/api/instances/doomed/status")).json(),
    }

    def canned(method: str, url: str, path: str, body: object = None) -> object:
        return replies[path]

    monkeypatch.setattr(cli_server, "_request", canned)
    monkeypatch.setattr(cli_meta, "_request", canned)
    for args in (["instance", "list"], ["instance", "show", "doomed"], ["status", "--instance", "doomed"]):
        printed = CliRunner().invoke(cli_app, args)
        assert printed.exit_code == 0, printed.output
        assert f"failed at tick {mind.tick}: ZeroDivisionError: Cal Riven divided the vote by zero" in printed.output

    ready = await up.http.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert (body["code"], body["instances"]) == ("instance_failed", ["doomed"])
    assert f"doomed at tick {mind.tick} (ZeroDivisionError: Cal Riven divided the vote by zero)" in body["detail"]
    assert "steady" not in body["detail"] and "calm" not in body["detail"]

    # the log carries the traceback, once, naming the instance and the tick
    traced = failures_logged()
    assert len(traced) == 1, [r.getMessage() for r in traced]
    assert traced[0].levelno == logging.ERROR
    assert f"doomed failed at tick {mind.tick}" in traced[0].getMessage()
    assert traced[0].exc_info is not None and traced[0].exc_info[0] is ZeroDivisionError

    # the others go on ticking
    before = {i: up.tick(i) for i in ("steady", "calm")}
    await wait_until("the others tick on", lambda: all(up.tick(i) >= before[i] + 20 for i in before))
    assert up.tick("doomed") == mind.tick


@pytest.mark.anyio
async def test_a_failed_instance_serves_reads_and_refuses_inputs(
    systems: Callable[[str], System], monkeypatch: pytest.MonkeyPatch
) -> None:
    up = systems("steady")
    mind = await fail_one(up, monkeypatch)
    for path in ("vibe/weather", "agents/echo", "agents", "agents/arty", "status", "snapshots", "inputs"):
        read = await up.http.get(f"/api/instances/doomed/{path}")
        assert read.status_code == 200, (path, read.text)
    agents = (await up.http.get("/api/instances/doomed/agents")).json()
    assert agents["tick"] == mind.tick

    # inputs are refused rather than acknowledged into a world that will not apply them
    whispered = await up.http.post("/api/instances/doomed/whispers", json={"text": "wake up"})
    assert (whispered.status_code, whispered.json()["code"]) == (409, InstanceFailedError.code)
    assert f"doomed failed at tick {mind.tick}" in whispered.json()["detail"]
    assert "restart" in whispered.json()["detail"]
    possessed = await up.http.post("/api/god/possess", json={"instance": "doomed", "agent": "arty"})
    assert (possessed.status_code, possessed.json()["code"]) == (409, "instance_failed")
    snapshot = await up.http.post("/api/instances/doomed/snapshots", json={})
    assert (snapshot.status_code, snapshot.json()["code"]) == (409, "instance_failed")
    assert up.store.inputs.read("doomed") == []

    # a command over every instance still goes through: its notes (marks) change no world
    frozen = await up.http.post("/api/god/freeze", json={})
    assert frozen.status_code == 200, frozen.text
    thawed = await up.http.post("/api/god/thaw", json={})
    assert thawed.status_code == 200, thawed.text
    assert (await up.http.get("/api/instances/doomed")).json()["state"] == "failed"
    assert {s.input.type for s in up.store.inputs.read("doomed")} == {"mark"}

    whispered = await up.http.post("/api/instances/steady/whispers", json={"text": "carry on"})
    assert whispered.status_code == 202, whispered.text


@pytest.mark.anyio
async def test_after_a_failure_shutdown_completes_and_a_restart_resumes_from_the_last_committed_tick(
    systems: Callable[[str], System],
    database: MemoryDatabase,
    monkeypatch: pytest.MonkeyPatch,
    failures_logged: Callable[[], list[logging.LogRecord]],
) -> None:
    up = systems("steady")
    await up.create("steady", STEADY_SEED)
    await up.create("doomed", DOOMED_SEED)
    # a whisper taken before the failure, for a tick after it: stored, so it applies once the world gets there
    bridge = up.engine.live["doomed"].bridge
    later = up.tick("doomed") + 200
    await bridge.send_whisper_to_runtime("hold on", tick=later)
    with monkeypatch.context() as patch:
        mind = Mind(patch)
        await wait_until("the doomed instance stops", lambda: not up.runtime("doomed").running)
        assert up.runtime("doomed").failure is not None
        failed_at = mind.tick  # FAIL_FROM, or later if the world ticked past it before the patch was in
        served = up.runtime("doomed").world.world.state_hash()
        inputs = [s.input for s in up.store.inputs.read("doomed")]
        await up.close()  # neither raises nor logs another traceback
    # what it served was the world as it stood before the failed tick, not the half of it that ran (rebuilt with the
    # real mind: the patched one would raise on the way there)
    clean = World.create(DOOMED_SEED, DEFAULT_WORLD, agents=AGENTS)
    clean.run_to(failed_at, inputs)
    assert served == clean.state_hash()
    assert failed_at < later
    assert len(failures_logged()) == 1
    store = InMemoryStore(database)
    try:
        assert store.instances.get("doomed").head_tick == failed_at  # every tick before the failure was committed
    finally:
        store.close()

    again = systems("steady")
    await again.engine.start()  # the mind is mended: the instance resumes where it stopped
    doomed = again.runtime("doomed")
    assert doomed.world.resumed_from == failed_at
    await wait_until("the doomed instance ticks past the whisper", lambda: again.tick("doomed") > later + 5)
    tick = (await again.engine.live["doomed"].pause()).tick
    live_hash = doomed.world.world.state_hash()

    clean = World.create(DOOMED_SEED, DEFAULT_WORLD, agents=AGENTS)
    stored = again.store.inputs.read("doomed")
    assert [(s.input.type, s.tick) for s in stored] == [("whisper", later)]
    clean.run_to(tick, (s.input for s in stored))
    assert live_hash == clean.state_hash()
    assert doomed.failure is None
    ready = await again.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert len(failures_logged()) == 1


@pytest.mark.anyio
async def test_a_tick_the_database_refuses_fails_its_instance_with_the_storage_code(
    systems: Callable[[str], System],
    database: MemoryDatabase,
    failures_logged: Callable[[], list[logging.LogRecord]],
) -> None:
    up = systems("steady")
    await up.create("steady", STEADY_SEED)
    await up.create("doomed", DOOMED_SEED)
    world = up.runtime("doomed").world
    failing_tick = world.tick + 5
    record = world.record_tick

    def refused() -> None:
        raise StorageUnavailableError("the database went away")

    def record_tick(events: list[Event]) -> Callable[[], object] | None:
        if world.tick == failing_tick + 1:  # the world has run the tick; storing it fails
            record(events)
            return refused
        return record(events)

    world.record_tick = record_tick  # type: ignore[method-assign]
    await wait_until("the doomed instance stops", lambda: not up.runtime("doomed").running)

    expected = {
        "tick": failing_tick,
        "type": "StorageUnavailableError",
        "message": "the database went away",
        "code": "storage_unavailable",
    }
    shown = (await up.http.get("/api/instances/doomed")).json()
    assert (shown["state"], shown["failure"]) == ("failed", expected)
    ready = await up.http.get("/readyz")
    assert (ready.status_code, ready.json()["instances"]) == (503, ["doomed"])
    whispered = await up.http.post("/api/instances/doomed/whispers", json={"text": "still there?"})
    assert (whispered.status_code, whispered.json()["code"]) == (409, "instance_failed")
    assert len(failures_logged()) == 1
    metrics = up.engine.metrics  # the failure counted once, the whisper refused under its code, the instance failed
    metrics.render()  # the gauges of current state are read at a scrape
    sample = metrics.registry.get_sample_value
    assert sample("soulfra_storage_errors_total") == 1
    assert sample("soulfra_inputs_total", {"outcome": "instance_failed"}) == 1
    assert sample("soulfra_instances", {"status": "failed"}) == 1
    ran = up.tick("doomed")  # the tick ran in memory: the database failed, not the world
    assert ran == failing_tick + 1

    await up.close()  # the database is back: what ran is flushed
    again = systems("steady")
    await again.engine.start()
    doomed = again.runtime("doomed")
    assert doomed.world.resumed_from == ran
    await wait_until("the doomed instance ticks again", lambda: again.tick("doomed") >= ran + 10)
    tick = (await again.engine.live["doomed"].pause()).tick
    clean = World.create(DOOMED_SEED, DEFAULT_WORLD, agents=AGENTS)
    clean.run_to(tick)
    assert doomed.world.world.state_hash() == clean.state_hash()
    assert len(failures_logged()) == 1


def test_a_refusal_by_a_failed_instance_is_a_conflict_over_http_and_a_temporary_failure_in_the_shell() -> None:
    refused = error_for_code(InstanceFailedError.code, "doomed failed at tick 17")
    assert type(refused) is InstanceFailedError
    assert (status_for(refused), EXIT_CODES[InstanceFailedError]) == (409, 75)
