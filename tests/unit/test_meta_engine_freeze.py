"""FREEZE_TIME and THAW_TIME: a frozen world stands still and loses nothing while others go on, a timed freeze
thaws by itself (after a restart too), and a frozen world replays like one never frozen."""

from __future__ import annotations

import pytest

from soulfra.bus import InMemoryBus
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.platforms.instance import InstanceSettings
from soulfra.store import InMemoryStore, MemoryDatabase
from soulfra.verification import replay, verify
from soulfra.world import (
    DEFAULT_WORLD,
    Mark,
    state_hash,
)

from .meta_engine_support import (
    AGENTS,
    SEED,
    create,
    freeze,
    god,
    hash_at,
    head_of,
    live_state,
    logged,
    marks,
    runtime,
    settle,
    thaw,
    tick_of,
)
from .support import wait_until

# -- FREEZE_TIME and THAW_TIME -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_frozen_instance_stands_still_while_others_go_on_until_thawed(engine: PuppetMasterEngine) -> None:
    await create(engine, "a")
    await create(engine, "b")
    await wait_until("both tick", lambda: tick_of(engine, "a") >= 3 and tick_of(engine, "b") >= 3)
    result = await god(engine, {"type": "FREEZE_TIME", "instances": ["a"]})
    assert result["until"] is None
    (frozen,) = result["frozen"]
    at = frozen["tick"]
    assert frozen["instance"] == "a"
    assert engine.store.instances.get("a").status == "frozen"
    assert engine.store.instances.get("b").status == "active"
    assert engine.describe("a")["state"] == "frozen"
    assert head_of(engine, "a") == at  # durable up to the freeze
    assert marks(engine, "a") == [("FREEZE_TIME", at)]

    b_from = tick_of(engine, "b")
    await wait_until("b goes on", lambda: tick_of(engine, "b") >= b_from + 50)
    assert tick_of(engine, "a") == at

    thawed = await god(engine, {"type": "THAW_TIME", "instances": ["a"]})
    assert thawed["thawed"] == [{"instance": "a", "tick": at}]
    assert engine.store.instances.get("a").status == "active"
    assert marks(engine, "a") == [("FREEZE_TIME", at), ("THAW_TIME", at)]
    await wait_until("a ticks again", lambda: tick_of(engine, "a") > at)


@pytest.mark.anyio
async def test_freeze_and_thaw_without_names_reach_every_instance(engine: PuppetMasterEngine) -> None:
    for instance_id in ("a", "b", "c"):
        await create(engine, instance_id)
    frozen = await freeze(engine)
    assert sorted(frozen) == ["a", "b", "c"]
    assert {r["state"] for r in engine.list_instances()} == {"frozen"}
    assert {i: tick_of(engine, i) for i in frozen} == frozen

    thawed = await god(engine, {"type": "THAW_TIME"})
    assert sorted(t["instance"] for t in thawed["thawed"]) == ["a", "b", "c"]
    await wait_until("all tick again", lambda: all(tick_of(engine, i) > frozen[i] for i in frozen))
    assert {r["status"] for r in engine.list_instances()} == {"active"}


@pytest.mark.anyio
async def test_a_freeze_with_a_duration_thaws_by_itself(engine: PuppetMasterEngine) -> None:
    await create(engine, "a")
    result = await god(engine, {"type": "FREEZE_TIME", "instances": ["a"], "duration": 0.2})

    def thaw_audited() -> bool:  # written after the thaw itself, as every command's audit line is
        return any(e.action == "god.thaw_time" for e in engine.store.audit.read(instance_id=None))

    assert result["until"] is not None
    at = result["frozen"][0]["tick"]
    assert engine.store.instances.get("a").status == "frozen"
    await wait_until(
        "a thaws and ticks again, and the thaw is audited",
        lambda: engine.store.instances.get("a").status == "active" and tick_of(engine, "a") > at and thaw_audited(),
    )
    assert marks(engine, "a") == [("FREEZE_TIME", at), ("THAW_TIME", at)]
    assert "freeze-timer" in {e.actor for e in engine.store.audit.read(instance_id=None) if e.action == "god.thaw_time"}


@pytest.mark.anyio
async def test_an_indefinite_freeze_cancels_an_earlier_timed_one(engine: PuppetMasterEngine) -> None:
    await create(engine, "a")
    await create(engine, "b")
    await god(engine, {"type": "FREEZE_TIME", "instances": ["a", "b"], "duration": 0.3})
    await god(engine, {"type": "FREEZE_TIME", "instances": ["a"]})  # "a": frozen until thawed, now
    # b's timer was set after a's for the same duration: once b has thawed, a's old timer has fired too
    await wait_until("b thaws", lambda: engine.store.instances.get("b").status == "active")
    # Was: _freeze only replaces a pending thaw timer when the new freeze has a duration (and THAW_TIME never
    # cancels one), so the stale timer thaws an instance frozen indefinitely
    assert engine.store.instances.get("a").status == "frozen"
    assert runtime(engine, "a").paused


@pytest.mark.anyio
async def test_freezing_changes_nothing_a_frozen_world_replays_like_one_never_frozen(
    engine: PuppetMasterEngine,
) -> None:
    await create(engine, "a")
    await create(engine, "b")  # same seed, never frozen until the end
    at = (await settle(engine, ["a"], 5))["a"]
    b_from = tick_of(engine, "b")
    await wait_until("b goes on", lambda: tick_of(engine, "b") >= b_from + 30)
    await thaw(engine, "a")
    await wait_until("a goes on", lambda: tick_of(engine, "a") >= at + 20)
    heads = await freeze(engine)

    assert all(isinstance(item, Mark) for item in logged(engine, "a"))
    assert [c for c, _ in marks(engine, "a")] == ["FREEZE_TIME", "THAW_TIME", "FREEZE_TIME"]
    n = min(heads.values())
    assert n > at
    expected = replay(SEED, DEFAULT_WORLD, AGENTS, [], n)
    assert hash_at(engine, "a", n) == hash_at(engine, "b", n) == expected
    first = min(heads, key=lambda i: heads[i])
    assert state_hash(live_state(engine, first)) == expected
    assert verify(engine.store, "a").ok


@pytest.mark.anyio
async def test_a_timed_freeze_thaws_after_a_restart_at_the_time_it_was_given() -> None:
    database = MemoryDatabase()  # what outlives the first engine's process
    store, bus = InMemoryStore(database), InMemoryBus()
    first = PuppetMasterEngine(store, bus, EngineSettings(instance=InstanceSettings(rate=None)))
    try:
        await create(first, "timed")
        await create(first, "forever")
        await god(first, {"type": "FREEZE_TIME", "instances": ["timed"], "duration": 1.0})
        await god(first, {"type": "FREEZE_TIME", "instances": ["forever"]})
    finally:
        await first.close()
        await bus.close()
        store.close()
    store, bus = InMemoryStore(database), InMemoryBus()
    second = PuppetMasterEngine(store, bus, EngineSettings(instance=InstanceSettings(rate=None)))
    try:
        await second.start()
        assert store.instances.get("timed").status == "frozen"
        restarted_at = tick_of(second, "timed")
        await wait_until("the timed freeze ends", lambda: store.instances.get("timed").status == "active")
        frozen_at = tick_of(second, "forever")
        await wait_until("the thawed one ticks", lambda: tick_of(second, "timed") > restarted_at + 3)
        assert store.instances.get("forever").status == "frozen"
        assert tick_of(second, "forever") == frozen_at
    finally:
        await second.close()
        await bus.close()
        store.close()
