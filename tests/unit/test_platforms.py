"""The four platforms in one process over the in-memory bus, with a SQLite store: override, pause and resume,
whispers, determinism against an in-memory replay, unified snapshots and their resolution rules, the protocol's
rules, the bridge's typed errors, the surface stream, restore from a snapshot and the mirror's trace collector."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any, cast

import pytest

from soulfra.bus import InMemoryBus, Message
from soulfra.durable import state_at
from soulfra.errors import (
    BusTimeoutError,
    NoRespondersError,
    NotFoundError,
    OverrideActiveError,
    StorageError,
)
from soulfra.platforms.base import PLATFORMS, decode, encode, events_subject, op_subject
from soulfra.platforms.bridge import CrossPlatformBridge
from soulfra.platforms.instance import FourPlatformInstance, InstanceSettings
from soulfra.platforms.mirror import RESOLUTION, resolve
from soulfra.platforms.replies import InputAck
from soulfra.platforms.surface import SurfacePlatform
from soulfra.security.permissions import Licence, PermissionValidator, RuleSet
from soulfra.store import InMemoryStore, InstanceRecord
from soulfra.store.ports import Store
from soulfra.verification import replay
from soulfra.world import DEFAULT_WORLD, World

from .support import wait_until

DEADLINE_S = 10.0


@pytest.fixture
def store() -> Iterator[InMemoryStore]:
    opened = InMemoryStore()
    try:
        yield opened
    finally:
        opened.close()


def held(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return predicate()

    return check


class Running:
    """A started FourPlatformInstance with typed access to its parts."""

    def __init__(self, instance: FourPlatformInstance) -> None:
        self.instance = instance

    @property
    def bridge(self) -> CrossPlatformBridge:
        return self.instance.bridge

    @property
    def tick(self) -> int:
        return self.instance.world.tick

    @property
    def id(self) -> str:
        return self.instance.instance_id


@pytest.fixture
async def make(store: Store, anyio_backend: str) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    made: list[tuple[FourPlatformInstance, InMemoryBus]] = []

    async def factory(**settings: Any) -> Running:
        bus = InMemoryBus()
        settings.setdefault("rate", None)
        settings.setdefault("instance_id", f"unit-{len(made)}")
        instance = await FourPlatformInstance.open(store, bus, InstanceSettings(**settings))
        made.append((instance, bus))
        return Running(instance)

    yield factory
    for instance, bus in made:
        await instance.close()
        await bus.close()


# -- override, pause, resume -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_override_stops_every_platform_refuses_inputs_and_resume_clears(
    make: Callable[..., Awaitable[Running]],
) -> None:
    run = await make()
    run.instance.start_autonomous_operations()
    await wait_until("the world has ticked", held(lambda: run.tick >= 5))

    reply = await run.bridge.send_emergency_override("unit test")
    stopped_at = reply.tick
    assert reply.overridden is True
    assert run.tick == stopped_at  # no tick ran after the override returned

    async def all_halted() -> bool:
        report = await run.bridge.cross_platform_status()
        return all(report[p].get("halted") is True for p in PLATFORMS)

    await wait_until("every platform reports halted", all_halted)
    report = await run.bridge.cross_platform_status()
    assert {report[p]["halted_at"] for p in PLATFORMS} == {stopped_at}
    assert report["runtime"]["state"] == "overridden"
    assert run.tick == stopped_at

    with pytest.raises(OverrideActiveError):
        await run.bridge.send_whisper_to_runtime("are you there?")
    with pytest.raises(OverrideActiveError):
        await run.bridge.fetch_from_runtime("submit", {"inputs": [{"type": "whisper", "target": "*", "text": "x"}]})
    with pytest.raises(OverrideActiveError):
        await run.bridge.fetch_from_protocol("validate", {"subject": "export"})
    with pytest.raises(OverrideActiveError):
        await run.bridge.unified_snapshot()
    assert run.tick == stopped_at

    resumed = await run.bridge.resume()
    assert resumed.overridden is False
    await wait_until("ticks restart after resume", held(lambda: run.tick > stopped_at))

    async def none_halted() -> bool:
        report = await run.bridge.cross_platform_status()
        return all(report[p].get("halted") is False for p in PLATFORMS)

    await wait_until("no platform reports halted", none_halted)
    ack = await run.bridge.send_whisper_to_runtime("welcome back")
    assert ack.seq >= 1


@pytest.mark.anyio
async def test_pause_stops_ticks_of_the_runtime_only_and_resume_restarts_them(
    make: Callable[..., Awaitable[Running]],
) -> None:
    run = await make()
    run.instance.start_autonomous_operations()
    await wait_until("the world has ticked", held(lambda: run.tick >= 3))
    paused = await run.instance.pause()
    assert paused.paused is True
    at = paused.tick
    assert run.tick == at
    status = await run.instance.status()
    assert status.platforms["runtime"]["state"] == "paused"
    assert all(status.platforms[p]["halted"] is False for p in PLATFORMS)
    ack = await run.bridge.send_whisper_to_runtime("while paused")  # a pause still takes inputs
    assert ack.tick == at
    assert run.tick == at
    await run.instance.resume()
    await wait_until("ticks restart", held(lambda: run.tick > at + 2))


# -- whispers and determinism ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_whisper_is_acknowledged_with_its_seq_and_tick(
    make: Callable[..., Awaitable[Running]], store: Store
) -> None:
    run = await make()
    first = await run.bridge.send_whisper_to_runtime("hello", tone="gentle")
    assert first == InputAck(seq=first.seq, tick=0, type="whisper")
    later = await run.bridge.send_whisper_to_runtime("later", target="arty", tick=7)
    assert later.tick == 7
    assert later.seq > first.seq
    logged = store.inputs.read(run.id)
    assert [(s.seq, s.tick) for s in logged] == [(first.seq, 0), (later.seq, 7)]


@pytest.mark.anyio
async def test_the_durable_runtime_matches_an_in_memory_replay(
    make: Callable[..., Awaitable[Running]], store: Store
) -> None:
    run = await make(seed=3)
    for tick, target, text in ((0, "*", "dawn"), (4, "arty", "you are seen"), (17, "cal-riven", "hold the line")):
        await run.bridge.send_whisper_to_runtime(text, target=target, tick=tick)
    await run.instance.start_autonomous_operations(ticks=12)
    await run.bridge.send_whisper_to_runtime("mid-run", target="agent-zero", tone="urgent")
    await run.instance.start_autonomous_operations(ticks=28)
    assert run.tick == 40
    live = run.instance.world.world.state_hash()

    inputs = [s.input for s in store.inputs.read(run.id)]
    assert len(inputs) == 4
    assert replay(3, DEFAULT_WORLD, 0, inputs, 40) == live
    world = World.create(3, DEFAULT_WORLD)
    by_tick: dict[int, list[Any]] = {}
    for item in inputs:
        by_tick.setdefault(item.tick, []).append(item)
    for _ in range(40):
        world.step(by_tick.get(world.tick, []))
    assert world.state_hash() == live
    assert replay(3, DEFAULT_WORLD, 0, [], 40) != live  # the whispers changed the world

    await run.instance.pause()  # flushes the head
    assert World(state_at(store, run.id, 40)).state_hash() == live


@pytest.mark.anyio
async def test_the_surface_echoes_a_whisper_after_its_tick(make: Callable[..., Awaitable[Running]]) -> None:
    run = await make()
    ack = await run.bridge.send_whisper_to_runtime("the lanterns are lit", tick=2)
    await run.instance.start_autonomous_operations(ticks=5)

    async def echoed() -> bool:
        reply = await run.bridge.fetch_from_surface("echoes", {"agent": "*"})
        return any(e["kind"] == "whisper_heard" and e["text"] == "the lanterns are lit" for e in reply["echoes"])

    await wait_until("the surface echoes the whisper", echoed)
    reply = await run.bridge.fetch_from_surface("echoes", {"agent": "*"})
    heard = [e for e in reply["echoes"] if e["kind"] == "whisper_heard"]
    assert [e["tick"] for e in heard] == [ack.tick]


# -- unified snapshots and resolution ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_unified_snapshot_records_the_pause_and_has_no_conflicts(
    make: Callable[..., Awaitable[Running]], store: Store
) -> None:
    run = await make()
    run.instance.start_autonomous_operations()
    await wait_until("the world has ticked", held(lambda: run.tick >= 150))
    record = await run.bridge.unified_snapshot()
    assert record.conflicts == ()
    assert set(record.views) == set(PLATFORMS)
    assert record.pause_ns >= 0
    assert len(record.system_hash) == 64
    assert record.snapshot["tick"] == record.tick
    assert record.views["runtime"]["tick"] == record.tick
    assert record.views["protocol"]["valid"] is True
    status = await run.bridge.fetch_from_runtime("status")
    assert status["last_pause_ns"] == record.pause_ns
    listed = await run.bridge.fetch_from_mirror("unified_list")
    assert [r["id"] for r in listed["unified"]] == [record.id]
    got = await run.bridge.fetch_from_mirror("unified_get", {"id": "latest"})
    assert got["system_hash"] == record.system_hash
    assert [r.kind for r in store.rituals.read(run.id, kinds=["unified_snapshot"])] == ["unified_snapshot"]
    await wait_until("ticks go on after the hold", held(lambda: run.tick > record.tick + 2))


def _views() -> dict[str, dict[str, Any]]:
    vibe = {"condition": "calm", "pressure": 0.5}
    return {
        "runtime": {"tick": 9, "vibe": vibe, "possessed": {}, "agents": [], "rituals": {"4": "gathered"},
                    "loop": 0, "agent_count": 3},
        "surface": {"tick": 9, "weather": dict(vibe), "possessed": {}},
        "protocol": {"subject": "snapshot", "valid": True, "checked": [], "violations": []},
        "mirror": {"tick": 9, "in_flight": [4]},
    }  # fmt: skip


def _resolve(views: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return resolve(tick=9, **views)


def test_resolve_agrees_without_conflicts() -> None:
    record = _resolve(_views())
    assert record["conflicts"] == []
    assert record["merged"]["agents"] == {"count": 3, "possessed": {}}
    assert record["merged"]["ritual_timeline"] == {"in_flight": [4]}
    assert _resolve(_views())["system_hash"] == record["system_hash"]


@pytest.mark.parametrize(
    ("domain", "platform", "path", "value", "merged_path"),
    [
        ("agents", "runtime", ("runtime", "possessed"), {"arty": "pm"}, ("agents", "possessed")),
        ("agents", "surface", ("surface", "possessed"), {"arty": "pm"}, ("agents", "possessed")),
        ("ritual_timeline", "mirror", ("mirror", "in_flight"), [], ("ritual_timeline", "in_flight")),
        ("ritual_timeline", "runtime", ("runtime", "rituals"), {}, ("ritual_timeline", "in_flight")),
        ("vibe_weather", "surface", ("surface", "weather"), {"condition": "storm", "pressure": 0.9}, ("vibe_weather",)),
        ("vibe_weather", "runtime", ("runtime", "vibe"), {"condition": "storm", "pressure": 0.9}, ("vibe_weather",)),
        ("validation", "protocol", ("protocol", "valid"), False, ("validation", "valid")),
    ],
)
def test_resolve_lets_the_owner_of_each_domain_win(
    domain: str, platform: str, path: tuple[str, str], value: Any, merged_path: tuple[str, ...]
) -> None:
    base = _resolve(_views())
    views = _views()
    views[path[0]][path[1]] = copy.deepcopy(value)
    if domain == "validation":
        views["protocol"]["violations"] = [{"rule": "snapshot-hash", "detail": "tampered"}]
    record = _resolve(views)
    assert [c["domain"] for c in record["conflicts"]] == [domain]
    conflict = record["conflicts"][0]
    assert conflict["winner"] == RESOLUTION[domain]
    assert len(conflict["values"]) == 2
    assert {RESOLUTION[domain], "runtime"} <= set(conflict["values"])

    merged: Any = record["merged"]
    old: Any = base["merged"]
    for key in merged_path:
        merged, old = merged[key], old[key]
    if platform == RESOLUTION[domain]:
        assert merged != old  # the owner changed its view: the merged view follows it
        assert record["system_hash"] != base["system_hash"]
    else:
        assert merged == old  # the loser is outvoted: the merged view, and its hash, stay
        assert record["system_hash"] == base["system_hash"]


def test_resolution_owners_are_the_documented_ones() -> None:
    assert RESOLUTION == {
        "agents": "runtime",
        "ritual_timeline": "mirror",
        "vibe_weather": "surface",
        "validation": "protocol",
    }


# -- protocol rules ----------------------------------------------------------------------------------------------


def _created(store: Store, instance_id: str = "w") -> int:
    world = World.create(0, DEFAULT_WORLD)
    store.instances.create(InstanceRecord(id=instance_id, name="default", seed=0, genesis_hash=world.state_hash()))
    return store.snapshots.save(instance_id, world.state, "genesis").id


def _rules(result: Any) -> list[str]:
    return [v.rule for v in result.violations]


def test_protocol_agent_limit_and_required_agents_are_both_listed(store: Store) -> None:
    snapshot = _created(store)
    assert PermissionValidator(RuleSet(), store).validate("snapshot", "w", {"snapshot": snapshot}).valid
    strict = PermissionValidator(RuleSet(max_agents=2, required_agents=("arty", "nobody", "ghost")), store)
    result = strict.validate("snapshot", "w", {"snapshot": snapshot})
    assert result.checked == ("snapshot-hash", "agent-limit", "required-agents")
    assert _rules(result) == ["agent-limit", "required-agents", "required-agents"]
    assert "3 agents" in result.violations[0].detail
    assert {v.detail for v in result.violations[1:]} == {
        "required agent 'nobody' is missing",
        "required agent 'ghost' is missing",
    }
    by_tick = strict.validate("snapshot", "w", {"tick": 0})
    assert _rules(by_tick) == _rules(result)
    assert _rules(strict.validate("snapshot", "w", {"tick": 5})) == ["snapshot-hash"]


def test_protocol_checks_agent_ids_alone_as_it_checks_the_state_they_come_from(store: Store) -> None:
    state = store.snapshots.load(_created(store))[1]
    strict = PermissionValidator(RuleSet(max_agents=2, required_agents=("arty", "nobody")), store)
    by_state, by_ids = strict.validate_state(state), strict.validate_agents(tuple(s.id for s in state.specs))
    assert by_ids == by_state
    assert _rules(by_ids) == ["agent-limit", "required-agents"]


def test_protocol_a_tampered_snapshot_is_a_hash_violation(store: InMemoryStore) -> None:
    snapshot = _created(store)
    with store.database.edit() as tables:
        row = tables.snapshots[snapshot]
        tables.snapshots[snapshot] = replace(row, info=replace(row.info, state_hash="b2:" + "0" * 64))
    fresh = InMemoryStore(store.database)
    try:
        result = PermissionValidator(RuleSet(max_agents=1), fresh).validate("snapshot", "w", {"snapshot": snapshot})
    finally:
        fresh.close()
    assert _rules(result) == ["snapshot-hash"]
    assert "does not match its stored hash" in result.violations[0].detail
    assert not result.valid


def test_protocol_a_corrupt_snapshot_blob_is_a_hash_violation_not_a_crash(store: InMemoryStore) -> None:
    snapshot = _created(store)
    with store.database.edit() as tables:
        tables.snapshots[snapshot] = replace(tables.snapshots[snapshot], data=b"\x00not a blob" * 8)
    fresh = InMemoryStore(store.database)
    try:
        result = PermissionValidator(RuleSet(), fresh).validate("snapshot", "w", {"snapshot": snapshot})
    finally:
        fresh.close()
    assert _rules(result) == ["snapshot-hash"]
    assert not result.valid


def test_protocol_input_size(store: Store) -> None:
    validator = PermissionValidator(RuleSet(max_input_bytes=80), store)
    small = {"type": "whisper", "target": "*", "text": "hi"}
    big = {"type": "whisper", "target": "*", "text": "x" * 200}
    assert validator.validate("input", "w", {"input": small}).valid
    result = validator.validate("input", "w", {"input": big})
    assert _rules(result) == ["input-size"]
    assert "more than the limit of 80" in result.violations[0].detail


def test_protocol_licence_forbids_fork_and_export(store: Store) -> None:
    _created(store)
    closed = PermissionValidator(RuleSet(licence=Licence(fork=False, export=False)), store)
    assert _rules(closed.validate("fork", "w", {})) == ["licence"]
    assert _rules(closed.validate("export", "w", {})) == ["licence"]
    world = World.create(0, DEFAULT_WORLD)
    store.instances.create(
        InstanceRecord(id="w-fork", name="default", seed=0, genesis_hash=world.state_hash(), parent_id="w", fork_tick=0)
    )
    one_fork = PermissionValidator(RuleSet(licence=Licence(max_forks=1)), store)
    result = one_fork.validate("fork", "w", {})
    assert _rules(result) == ["licence"]
    assert "at most 1 forks" in result.violations[0].detail
    assert PermissionValidator(RuleSet(licence=Licence(max_forks=2)), store).validate("fork", "w", {}).valid
    assert PermissionValidator(RuleSet(), store).validate("instance", "w-fork", {}).valid


class _Catalog:
    """Instances as a database with a dangling parent reference would hold them (SQL foreign keys forbid it)."""

    def __init__(self, records: list[InstanceRecord]) -> None:
        self.records = {r.id: r for r in records}

    def get(self, instance_id: str) -> InstanceRecord:
        if instance_id not in self.records:
            raise NotFoundError(f"no instance {instance_id!r} in this database")
        return self.records[instance_id]

    def list_instances(self) -> list[InstanceRecord]:
        return list(self.records.values())


class _LineageStore:
    def __init__(self, records: list[InstanceRecord]) -> None:
        self.instances = _Catalog(records)


def test_protocol_lineage_with_a_missing_parent_lists_every_violation() -> None:
    records = [
        InstanceRecord(id="child", name="d", seed=0, genesis_hash="h", parent_id="mid", fork_tick=50),
        InstanceRecord(id="mid", name="d", seed=0, genesis_hash="h", parent_id="ghost", fork_tick=1, head_tick=10),
    ]
    store = cast(Store, _LineageStore(records))
    result = PermissionValidator(RuleSet(), store).validate("instance", "child", {})
    assert _rules(result) == ["lineage", "lineage"]
    assert result.violations[0].detail == "child forks mid at tick 50, past its head"
    assert result.violations[1].detail == "mid names parent ghost, which does not exist"
    closed = PermissionValidator(RuleSet(licence=Licence(fork=False)), store)
    assert _rules(closed.validate("fork", "child", {})) == ["licence", "lineage", "lineage"]
    assert _rules(closed.validate("instance", "nobody", {})) == ["lineage"]


@pytest.mark.anyio
async def test_protocol_validates_over_the_bus(make: Callable[..., Awaitable[Running]]) -> None:
    run = await make(rules=RuleSet(max_agents=1, licence=Licence(export=False)))
    snapshot = await run.bridge.fetch_from_runtime("snapshot")
    result = await run.bridge.fetch_from_protocol("validate", {"subject": "snapshot", "snapshot": snapshot["id"]})
    assert result["valid"] is False
    assert [v["rule"] for v in result["violations"]] == ["agent-limit"]
    export = await run.bridge.fetch_from_protocol("validate", {"subject": "export"})
    assert [v["rule"] for v in export["violations"]] == ["licence"]
    status = await run.bridge.fetch_from_protocol("status")
    assert (status["validations"], status["violations"]) == (2, 2)


# -- the bridge's typed errors -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_bridge_raises_typed_errors(make: Callable[..., Awaitable[Running]]) -> None:
    run = await make()
    await run.instance.surface.stop()
    with pytest.raises(NoRespondersError):
        await run.bridge.fetch_from_surface("status")
    report = await run.bridge.cross_platform_status()
    assert report["surface"]["error"]["code"] == "no_responders"
    assert report["runtime"]["platform"] == "runtime"

    never = asyncio.Event()

    async def slow(payload: bytes) -> bytes:
        await never.wait()
        return b"{}"

    bus = run.instance.bus
    sub = await bus.serve(op_subject(run.id, "surface", "status"), slow)
    slow_bridge = CrossPlatformBridge(bus, run.id, timeout=0.2)
    with pytest.raises(BusTimeoutError):
        await slow_bridge.fetch_from_surface("status")
    report = await slow_bridge.cross_platform_status()
    assert report["surface"]["error"]["code"] == "bus_timeout"
    await sub.unsubscribe()

    await run.bridge.send_emergency_override()
    with pytest.raises(OverrideActiveError) as raised:
        await run.bridge.send_whisper_to_runtime("hush")
    assert "resume it first" in raised.value.detail
    await run.bridge.resume()


# -- the surface stream ------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_surface_stream_is_ordered_and_counts_what_was_missed(anyio_backend: str) -> None:
    bus = InMemoryBus()
    surface = SurfacePlatform("streamed", bus, stream=8)
    await surface.start()
    try:
        subject = events_subject("streamed")
        for tick in range(20):
            event = {"kind": "post_made", "tick": tick, "agent": "arty", "topic": "trust"}
            await bus.publish(subject, encode({"tick": tick, "after": tick + 1, "events": [event], "vibe": None}))
        await wait_until("the surface has projected 20 ticks", held(lambda: surface.tick == 20))

        whole = await surface.read_stream({"after": 0})
        assert whole["seq"] == 20
        assert whole["missed"] == 12
        assert [i["seq"] for i in whole["items"]] == list(range(13, 21))
        assert [i["tick"] for i in whole["items"]] == list(range(12, 20))
        assert {i["channel"] for i in whole["items"]} == {"agent:reflection"}
        tail = await surface.read_stream({"after": 17})
        assert (tail["missed"], [i["seq"] for i in tail["items"]]) == (0, [18, 19, 20])
        assert (await surface.read_stream({"after": 20}))["items"] == []

        waiting = asyncio.create_task(surface.read_stream({"after": 20, "wait_ms": 5000}))
        event = {"kind": "whisper_heard", "tick": 20, "agent": "*", "text": "late", "tone": "gentle"}
        await bus.publish(subject, encode({"tick": 20, "after": 21, "events": [event], "vibe": None}))
        woke = await asyncio.wait_for(waiting, DEADLINE_S)
        assert (woke["missed"], [i["kind"] for i in woke["items"]]) == (0, ["whisper_heard"])
    finally:
        await surface.stop()
        await bus.close()


@pytest.mark.anyio
async def test_the_surface_stream_of_a_running_instance_is_ordered(make: Callable[..., Awaitable[Running]]) -> None:
    run = await make()
    await run.instance.start_autonomous_operations(ticks=30)
    surface = run.instance.surface
    await wait_until("the surface caught up", held(lambda: surface.tick == 30))
    stream = await run.bridge.fetch_from_surface("stream", {"after": 0, "limit": 4096})
    seqs = [i["seq"] for i in stream["items"]]
    assert stream["missed"] == 0
    assert seqs == list(range(1, stream["seq"] + 1))
    ticks = [i["tick"] for i in stream["items"]]
    assert ticks == sorted(ticks)


# -- restore and the mirror's trace collector --------------------------------------------------------------------


@pytest.mark.anyio
async def test_restore_from_snapshot_matches_the_live_world(
    make: Callable[..., Awaitable[Running]], store: Store
) -> None:
    run = await make(seed=5)
    await run.bridge.send_whisper_to_runtime("before", tick=3)
    await run.bridge.send_whisper_to_runtime("after the snapshot", target="arty", tick=27)
    await run.instance.start_autonomous_operations(ticks=45)
    await run.instance.pause()
    periodic = [s for s in store.snapshots.list_snapshots(run.id) if s.tick == 20]
    assert len(periodic) == 1
    restored = await run.instance.restore_from_snapshot(periodic[0].id)
    assert restored.matches_live is True
    assert (restored.from_tick, restored.tick) == (20, 45)
    assert restored.state_hash == run.instance.world.world.state_hash()


@pytest.mark.anyio
async def test_the_mirror_collects_the_same_loop_seeds_as_the_world(
    make: Callable[..., Awaitable[Running]], store: Store
) -> None:
    run = await make(seed=0)
    applied: list[dict[str, Any]] = []

    async def on_tick(message: Message) -> None:
        applied.extend(e for e in decode(message.payload)["events"] if e["kind"] == "seed_applied")

    sub = await run.instance.bus.subscribe(events_subject(run.id), on_tick)
    length = DEFAULT_WORLD.loop_length
    ticks = 3 * length + 1  # loop 0 seals, the mirror traces loop 1 whole, and loop 2's seed is applied
    await run.instance.start_autonomous_operations(ticks=ticks)
    mirror = run.instance.mirror
    await wait_until("the mirror caught up", held(lambda: mirror.tick == ticks))
    await sub.unsubscribe()

    seeds = (await run.bridge.fetch_from_mirror("seeds"))["seeds"]
    assert seeds, "the mirror collected no loop seed"
    by_loop = {e["loop"]: e for e in applied}
    for seed in seeds:
        world_seed = by_loop[seed["loop"]]
        assert (seed["themes"], seed["intentions"]) == (world_seed["themes"], world_seed["intentions"])
    assert {s["loop"] for s in seeds} >= {2, 3}
    anomalies = (await run.bridge.fetch_from_mirror("anomalies"))["anomalies"]
    assert [a for a in anomalies if a["anomaly"] == "seed-divergence"] == []
    stored = store.rituals.read(run.id, kinds=["loop_seed"])
    assert [r.data["loop"] for r in stored] == [s["loop"] for s in seeds]


# -- failures -----------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_tick_that_cannot_be_stored_stops_the_loop_and_says_so(
    make: Callable[..., Awaitable[Running]], store: Store
) -> None:
    run = await make(rate=200)
    world = run.instance.world
    runtime = run.instance.runtime
    real_inputs_due = world.inputs_due
    calls = 0

    def failing_inputs_due() -> list[Any]:  # the runtime reads the stored inputs due first in every tick
        nonlocal calls
        calls += 1
        if calls == 15:
            raise StorageError("database is locked")
        return real_inputs_due()

    world.inputs_due = failing_inputs_due  # type: ignore[method-assign]
    run.instance.start_autonomous_operations()
    await wait_until("the loop to stop", held(lambda: runtime.failure is not None))
    status = await run.bridge.fetch_from_runtime("status")
    assert (status["state"], status["tick"]) == ("failed", 14)
    assert status["failure"] == {
        "tick": 14,
        "type": "StorageError",
        "message": "database is locked",
        "code": "storage_error",
    }
    await run.instance.close()  # does not raise, and flushes what was ticked
    assert store.instances.get(run.id).head_tick == 14


@pytest.mark.anyio
async def test_echoes_of_an_unknown_agent_are_empty_and_not_cached(make: Callable[..., Awaitable[Running]]) -> None:
    run = await make()
    surface = run.instance.surface
    for n in range(50):
        reply = await run.bridge.fetch_from_surface("echoes", {"agent": f"nobody-{n}"})
        assert reply["echoes"] == []
    assert not any(isinstance(key[1], str) for key in surface._cache)
