"""Language minds against a small OpenAI-compatible server on loopback: every reply (and every failure) is recorded
as an input, so a replay with the server stopped gives the same state hash at every tick; a fork asks again only
from its fork tick; an export imports and verifies without the server; the budget holds under 1,000 agents."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from soulfra.bus import InMemoryBus
from soulfra.durable import DurableWorld, state_at
from soulfra.errors import ConfigError
from soulfra.language import Answer, Budget, MindAsker, MindSettings, OpenAIChat, Prompt
from soulfra.meta.keys import KeyRing
from soulfra.meta.lineage import fork_record
from soulfra.meta.package import read_package, write_package
from soulfra.meta.transfer import bundle_for, import_bundle
from soulfra.metrics import Metrics
from soulfra.platforms.instance import FourPlatformInstance, InstanceSettings
from soulfra.platforms.runtime import RuntimePlatform
from soulfra.settings import ModelSettings
from soulfra.store import InMemoryStore
from soulfra.store.ports import Store
from soulfra.verification import verify
from soulfra.world import World, WorldSpec, schedule, state_hash
from soulfra.world.events import Event
from soulfra.world.genesis import DEFAULT_AGENTS
from soulfra.world.inputs import FAILURES, MindReply

from .fake_model import FakeModel
from .support import free_port

pytestmark = pytest.mark.anyio

SEED = 5
SPEC = WorldSpec(agents=DEFAULT_AGENTS, generated_model="fake-135m")


def asker_for(url: str, metrics: Metrics, **budget: float) -> MindAsker:
    settings = MindSettings(url=url, budget=Budget(**{"timeout": 5.0, **budget}))  # type: ignore[arg-type]
    return MindAsker(OpenAIChat(url, max_in_flight=settings.budget.max_in_flight), settings, metrics=metrics)


async def run(runtime: RuntimePlatform, ticks: int) -> tuple[dict[int, str], int]:
    """Run ``ticks`` ticks one at a time, then shut the runtime down: the state hash after each tick, by tick, and
    how many thoughts were still pending (asked for, due after the last tick run)."""
    hashes = {}
    try:
        for _ in range(ticks):
            await runtime.launch(ticks=1)
            hashes[runtime.world.tick] = runtime.world.world.state_hash()
        return hashes, len(runtime.world.world.state.thinking)
    finally:
        await runtime.shutdown()


def replayed(store: Store, instance_id: str, upto: int) -> dict[int, str]:
    """The state hash at every tick from a replay of the stored inputs, from the instance's base (no server)."""
    record = store.instances.get(instance_id)
    start = record.fork_tick or 0
    parent = record.parent_id or instance_id
    world = World(state_at(store, parent, start))
    due = schedule((s.input for s in store.inputs.read(instance_id)), start)
    hashes = {}
    while world.tick < upto:
        world.step(due.get(world.tick, ()))
        hashes[world.tick] = world.state_hash()
    return hashes


def first_divergence(live: dict[int, str], again: dict[int, str]) -> int | None:
    return next((tick for tick in sorted(live) if live[tick] != again.get(tick)), None)


def replies(store: Store, instance_id: str) -> list[MindReply]:
    return [s.input for s in store.inputs.read(instance_id) if isinstance(s.input, MindReply)]


async def lang_runtime(
    store: Store, bus: InMemoryBus, url: str, metrics: Metrics, *, agents: int = 12, instance_id: str = "lang",
    **budget: float,
) -> RuntimePlatform:  # fmt: skip
    world = DurableWorld.create(store, SEED, SPEC, agents=agents, instance_id=instance_id)
    runtime = RuntimePlatform(world, bus, rate=None, metrics=metrics, asker=asker_for(url, metrics, **budget))
    await runtime.start()
    return runtime


async def test_replies_are_recorded_and_a_replay_without_the_server_matches_every_tick(bus: InMemoryBus) -> None:
    store, metrics = InMemoryStore(), Metrics()
    async with FakeModel() as fake:
        live, thinking = await run(await lang_runtime(store, bus, fake.url, metrics), 30)
    recorded = replies(store, "lang")
    assert recorded, "no reply was recorded"
    assert {r.outcome for r in recorded} == {"reply"}
    assert len(recorded) <= fake.requests <= len(recorded) + thinking
    assert {r.decision.action for r in recorded if r.decision} >= {"post"}
    assert all(r.prompt.startswith("b2:") and r.model == "fake-135m" for r in recorded)
    # the server is stopped: the replay uses the recorded replies alone
    assert first_divergence(live, replayed(store, "lang", 30)) is None
    report = verify(store, "lang")
    assert report.ok and report.state_hash == live[30]


async def test_a_world_with_no_asker_falls_back_the_same_way_every_time(bus: InMemoryBus) -> None:
    hashes = []
    for _ in range(2):
        world = World.create(SEED, SPEC, agents=12)
        outcomes = []
        for _tick in range(20):
            outcomes += [e for e in world.step() if e.kind == "mind_decided"]
        hashes.append(world.state_hash())
        assert outcomes and {e.outcome for e in outcomes} == {"no-reply"}  # type: ignore[attr-defined]
    assert hashes[0] == hashes[1]


@pytest.mark.parametrize(
    ("mode", "outcome"),
    [("malformed", "unparsed"), ("envelope", "unparsed"), ("429", "rate-limited"), ("500", "server-error"),
     ("hang", "timeout"), (None, "unreachable")],
)  # fmt: skip
async def test_failures_fall_back_and_are_recorded(bus: InMemoryBus, mode: str | None, outcome: str) -> None:
    store, metrics = InMemoryStore(), Metrics()
    async with FakeModel(mode or "ok") as fake:
        url = fake.url if mode is not None else f"http://127.0.0.1:{free_port()}/v1"
        timeout = 0.3 if mode == "hang" else 5.0  # the hang waits out its timeout; the others answer at once
        live, _ = await run(await lang_runtime(store, bus, url, metrics, timeout=timeout), 8)
    recorded = replies(store, "lang")
    assert recorded and {r.outcome for r in recorded} == {outcome}
    assert all(r.decision is None for r in recorded)
    assert metrics.registry.get_sample_value("soulfra_mind_calls_total", {"outcome": outcome}) == len(recorded)
    assert first_divergence(live, replayed(store, "lang", 8)) is None
    assert verify(store, "lang").ok


async def test_a_fork_asks_again_only_from_its_fork_tick(bus: InMemoryBus) -> None:
    store, metrics = InMemoryStore(), Metrics()
    async with FakeModel() as fake:
        parent_live, _ = await run(await lang_runtime(store, bus, fake.url, metrics), 20)
    fork_at = 10
    record = fork_record(store, store.instances.get("lang"), tick=fork_at, child_id="lang-fork", kind="fork")
    state = state_at(store, "lang", fork_at)
    assert state_hash(state) == parent_live[fork_at]
    pending = {(state.specs[agent].id, due) for agent, due in state.thinking.items()}
    assert pending, "choose a fork tick at which some agent is thinking"
    async with FakeModel() as again:  # the fork's own server: every request it gets is the fork's
        child_world = DurableWorld.from_state(store, record.id, state)
        child = RuntimePlatform(child_world, bus, rate=None, metrics=metrics, asker=asker_for(again.url, metrics))
        await child.start()
        child_live, thinking = await run(child, 10)
    child_replies = replies(store, "lang-fork")
    assert child_replies and min(r.tick for r in child_replies) > fork_at
    assert len(child_replies) <= again.requests <= len(child_replies) + thinking
    # the thoughts pending at the fork were asked again by the fork, into its own log
    assert pending <= {(r.agent, r.tick) for r in child_replies}
    # the parent's replies before the fork are kept: the fork's history replays from them, without a server
    assert first_divergence(child_live, replayed(store, "lang-fork", 20)) is None
    assert verify(store, "lang-fork").ok


@pytest.mark.parametrize("compact", [False, True])
async def test_export_import_verify_without_the_server(bus: InMemoryBus, tmp_path: Path, compact: bool) -> None:
    """A compact package rebuilds its language agents from the genesis recipe (their models included) and its head
    by a replay of the recorded replies."""
    store, metrics = InMemoryStore(), Metrics()
    async with FakeModel() as fake:
        live, _ = await run(await lang_runtime(store, bus, fake.url, metrics), 25)
    keyring = KeyRing(tmp_path / "home")
    buffer = io.BytesIO()
    manifest = write_package(buffer, [bundle_for(store, "lang")], keyring.signer(), compact=compact)
    if compact:
        assert manifest["compact"]["genesis"]["generated_model"] == "fake-135m"
    package = read_package(buffer.getvalue(), keyring)
    other = InMemoryStore()
    imported = import_bundle(other, package.bundles[0], as_id="lang-copy", verify_replay=True)
    assert imported["id"] == "lang-copy"
    assert len(replies(other, "lang-copy")) == len(replies(store, "lang"))
    report = verify(other, "lang-copy")
    assert report.ok and report.state_hash == live[25]


async def test_the_budget_holds_under_a_thousand_agents(bus: InMemoryBus) -> None:
    store, metrics = InMemoryStore(), Metrics()
    async with FakeModel(delay=0.01) as fake:
        runtime = await lang_runtime(
            store, bus, fake.url, metrics, agents=1_000, max_in_flight=4, calls_per_minute=60, timeout=0.5
        )
        live, _ = await run(runtime, 6)
    asked = runtime.asker.asked if runtime.asker else 0
    assert asked > 60  # far more thoughts than the budget allows calls for
    assert fake.max_in_flight <= 4
    assert fake.requests <= 60
    counted = {
        outcome: metrics.registry.get_sample_value("soulfra_mind_calls_total", {"outcome": outcome}) or 0
        for outcome in ("reply", "unparsed", *FAILURES)
    }
    recorded = replies(store, "lang")
    # every call answered (or timed out) by its tick is recorded, whatever came of it; on a loaded machine a reply
    # can also come back slow enough to time out, so the outcomes are not all "reply", and a call can time out
    # before its request has reached the server, so the server may have counted fewer than were made
    assert sum(counted.values()) == len(recorded) <= 60
    assert {r.outcome for r in recorded} <= set(counted)
    assert first_divergence(live, replayed(store, "lang", 6)) is None


async def test_a_tokens_per_minute_budget_holds_and_the_thoughts_over_it_fall_back(bus: InMemoryBus) -> None:
    """The server bills a call some 300 tokens; the minute allows 2,000, and 200 agents think far more than that. The
    asker's clock stands still, so the whole run is one minute, however slow the machine: the tokens recorded (and
    the tokens the server billed) stay within the budget, and every other thought due fell back, recorded so."""
    store, metrics = InMemoryStore(), Metrics()
    budget = Budget(max_in_flight=4, timeout=2.0, calls_per_minute=10_000, tokens_per_minute=2_000)
    async with FakeModel(usage="chars") as fake:
        settings = MindSettings(url=fake.url, budget=budget)
        client = OpenAIChat(fake.url, max_in_flight=budget.max_in_flight)
        asker = MindAsker(client, settings, metrics=metrics, clock=lambda: 1000.0)  # one minute, never over
        world = DurableWorld.create(store, SEED, SPEC, agents=200, instance_id="lang")
        runtime = RuntimePlatform(world, bus, rate=None, metrics=metrics, asker=asker)
        await runtime.start()
        live, _ = await run(runtime, 10)
    recorded = replies(store, "lang")
    assert recorded and {r.outcome for r in recorded} == {"reply"}
    assert sum(r.prompt_tokens + r.completion_tokens for r in recorded) <= budget.tokens_per_minute
    assert fake.billed <= budget.tokens_per_minute  # what the server billed, calls cut off at the end included
    # every other thought due in the run was never sent: no input, and the world records that no reply came
    turns = [e for e in stepped(store, "lang", 10) if e.kind == "mind_decided"]
    answered = {(r.agent, r.tick) for r in recorded}
    fell_back = [(e.agent, e.tick) for e in turns if e.outcome == "no-reply"]  # type: ignore[attr-defined]
    assert asker.asked > 10 * len(recorded) and len(fell_back) > len(recorded)
    assert {(e.agent, e.tick) for e in turns} - set(fell_back) == answered  # type: ignore[attr-defined]
    skipped = metrics.registry.get_sample_value("soulfra_mind_calls_total", {"outcome": "skipped"})
    assert skipped == len(fell_back)
    assert first_divergence(live, replayed(store, "lang", 10)) is None


def stepped(store: Store, instance_id: str, upto: int) -> list[Event]:
    """The events of a replay of the stored inputs from genesis (no server)."""
    world = World(state_at(store, instance_id, 0))
    due = schedule((s.input for s in store.inputs.read(instance_id)), 0)
    events: list[Event] = []
    while world.tick < upto:
        events += world.step(due.get(world.tick, ()))
    return events


async def test_settings_reach_every_instance_runtime_and_the_key_is_sent_but_never_shown(
    bus: InMemoryBus, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-test-do-not-show"
    monkeypatch.setenv("SOULFRA_MODEL_KEY", secret)
    async with FakeModel() as fake:
        settings = ModelSettings.load(
            {"model_url": fake.url, "model": "served-name", "language_agents": True, "model_timeout": 2.0}
        )
        minds = settings.mind_settings()
        assert minds is not None and secret not in repr(minds) and secret not in repr(settings)
        spec = settings.world_spec(WorldSpec(agents=DEFAULT_AGENTS))
        store = InMemoryStore()
        instance = await FourPlatformInstance.open(
            store, bus, InstanceSettings(seed=SEED, spec=spec, agents=8, instance_id="wired", rate=None, minds=minds)
        )
        try:
            await instance.start_autonomous_operations(ticks=12)
        finally:
            await instance.close()
    recorded = replies(store, "wired")
    assert recorded and {r.model for r in recorded} == {"served-name"}
    assert fake.authorization == {f"Bearer {secret}"}
    assert secret not in caplog.text
    with pytest.raises(ConfigError) as info:
        ModelSettings.load({"language_agents": True})
    assert "model" in str(info.value)


class BrokenClient:
    """A client with a bug: every call raises."""

    async def complete(self, prompt: Prompt, *, timeout: float) -> Answer:
        raise RuntimeError("a bug in the client")

    async def aclose(self) -> None:
        return None


async def test_a_broken_client_never_stops_the_world(bus: InMemoryBus) -> None:
    store, metrics = InMemoryStore(), Metrics()
    world = DurableWorld.create(store, SEED, SPEC, agents=12, instance_id="lang")
    asker = MindAsker(BrokenClient(), MindSettings(url="http://unused"), metrics=metrics)
    runtime = RuntimePlatform(world, bus, rate=None, metrics=metrics, asker=asker)
    await runtime.start()
    live, _ = await run(runtime, 10)
    assert runtime.failure is None and runtime.world.tick == 10
    recorded = replies(store, "lang")
    assert recorded and {r.outcome for r in recorded} == {"timeout"}  # sent, and no answer came back
    assert first_divergence(live, replayed(store, "lang", 10)) is None


async def test_a_restart_asks_again_for_the_thoughts_pending_in_its_state(bus: InMemoryBus) -> None:
    store, metrics = InMemoryStore(), Metrics()
    async with FakeModel() as fake:
        first, _ = await run(await lang_runtime(store, bus, fake.url, metrics), 15)
    state = state_at(store, "lang", 15)
    pending = {(state.specs[agent].id, due) for agent, due in state.thinking.items()}
    assert pending
    async with FakeModel() as again:
        world = DurableWorld.open(store, "lang")
        runtime = RuntimePlatform(world, bus, rate=None, metrics=metrics, asker=asker_for(again.url, metrics))
        await runtime.start()
        second, _ = await run(runtime, 10)
    assert pending <= {(r.agent, r.tick) for r in replies(store, "lang")}
    assert first_divergence(first | second, replayed(store, "lang", 25)) is None
    assert verify(store, "lang").ok
