"""The puppet master's instances: PuppetMasterEngine over an in-memory store and bus creates, lists, describes
and deletes worlds, refuses unknown and taken ids, keeps to its live limit, and changes nothing for a command that
touches an overridden instance."""

from __future__ import annotations

from dataclasses import replace

import pytest

from soulfra.errors import (
    ConflictError,
    NotFoundError,
    OverrideActiveError,
)
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.platforms.instance import InstanceSettings
from soulfra.world import (
    DEFAULT_WORLD,
)

from .meta_engine_support import (
    AGENTS,
    SEED,
    OpenEngine,
    create,
    freeze,
    god,
    hash_at,
    runtime,
    settle,
    tick_of,
)
from .support import wait_until

# -- instances ---------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_instances_are_created_listed_described_and_deleted(engine: PuppetMasterEngine) -> None:
    made = await create(engine, "a")
    assert (made["id"], made["seed"], made["status"], made["parent_id"]) == ("a", SEED, "active", None)
    assert (made["children"], made["branches"], made["lineage"], made["links"]) == ([], [], [], [])
    await create(engine, "b", seed=8)
    await wait_until("both tick", lambda: tick_of(engine, "a") >= 3 and tick_of(engine, "b") >= 3)
    rows = engine.list_instances()
    assert [r["id"] for r in rows] == ["a", "b"]
    assert [r["state"] for r in rows] == ["running", "running"]
    assert engine.describe("b")["seed"] == 8

    deleted = await engine.delete_instance("b")
    assert deleted["deleted"] == "b"
    assert "b" not in engine.live
    assert [r["id"] for r in engine.list_instances()] == ["a"]
    with pytest.raises(NotFoundError):
        engine.describe("b")
    assert engine.store.snapshots.list_snapshots("b") == []
    assert "instance.delete" in {e.action for e in engine.store.audit.read(instance_id="b")}


@pytest.mark.anyio
async def test_unknown_ids_are_not_found_and_a_taken_id_is_a_conflict(engine: PuppetMasterEngine) -> None:
    await create(engine, "a")
    with pytest.raises(ConflictError, match="already exists"):
        await create(engine, "a")
    assert [r["id"] for r in engine.list_instances()] == ["a"]
    with pytest.raises(NotFoundError):
        engine.describe("nope")
    with pytest.raises(NotFoundError):
        await engine.delete_instance("nope")
    for command in (
        {"type": "FREEZE_TIME", "instances": ["nope"]},
        {"type": "CLONE_INSTANCE", "source": "nope"},
        {"type": "AGENT_POSSESSION", "instance": "nope", "agent": "arty"},
        {"type": "TIMELINE_REVERT", "instance": "nope", "tick": 0},
        {"type": "MERGE_INSTANCES", "ours": "a", "theirs": "nope"},
    ):
        with pytest.raises(NotFoundError):
            await god(engine, command)
    assert [r["id"] for r in engine.list_instances()] == ["a"]


@pytest.mark.anyio
async def test_an_instance_cannot_be_deleted_while_a_fork_descends_from_it(engine: PuppetMasterEngine) -> None:
    await create(engine, "a")
    await settle(engine, ["a"], 3)
    await god(engine, {"type": "CLONE_INSTANCE", "source": "a", "id": "c", "start": False})
    with pytest.raises(ConflictError, match="c"):
        await engine.delete_instance("a")
    assert "a" in engine.live
    assert engine.describe("a")["children"] == ["c"]
    await engine.delete_instance("c")
    await engine.delete_instance("a")
    assert engine.list_instances() == []
    assert engine.live == {}


@pytest.mark.anyio
async def test_thirty_instances_tick_side_by_side(engine: PuppetMasterEngine) -> None:
    ids = [f"w{n:02d}" for n in range(30)]
    for n, instance_id in enumerate(ids):
        await create(engine, instance_id, seed=n)
    await wait_until("every instance has ticked 5 times", lambda: all(tick_of(engine, i) >= 5 for i in ids))
    assert sorted(engine.live) == ids
    assert [r["state"] for r in engine.list_instances()] == ["running"] * 30
    frozen = await freeze(engine)
    assert sorted(frozen) == ids
    assert len({hash_at(engine, i, 5) for i in ids}) == 30  # thirty seeds, thirty worlds


@pytest.mark.anyio
async def test_an_instance_refused_for_the_live_limit_is_not_left_in_the_store(open_engine: OpenEngine) -> None:
    engine = open_engine(EngineSettings(instance=InstanceSettings(rate=None), max_instances=1))
    await create(engine, "a")
    with pytest.raises(ConflictError, match="live"):
        await create(engine, "b")
    # Was: create_instance stores the world before _launch checks the limit, so "b" stays behind, not running
    assert [r["id"] for r in engine.list_instances()] == ["a"]


@pytest.mark.anyio
async def test_worlds_started_several_at_once_fill_the_live_limit_and_no_more(open_engine: OpenEngine) -> None:
    engine = open_engine(EngineSettings(instance=InstanceSettings(rate=None), max_instances=4))
    for instance_id in "abcd":
        await create(engine, instance_id)
    assert await engine.hand_over(["a", "b", "c"]) == ["a", "b", "c"]  # stored, not running: d still runs
    await engine.start(width=8)  # a cluster host taking worlds over opens many at once
    assert sorted(engine.live) == ["a", "b", "c", "d"]
    await freeze(engine, "a")
    assert await engine.hand_over(["a", "b"]) == ["a", "b"]
    engine.settings = replace(engine.settings, max_instances=3)
    await engine.start(["a", "b"], width=8)  # room for one of the two
    assert len(engine.live) == 3
    started = ({"a", "b"} & set(engine.live)).pop()
    assert engine.live[started].runtime.paused == (started == "a")  # a frozen world comes back frozen


@pytest.mark.anyio
async def test_a_command_touching_an_overridden_instance_changes_nothing(engine: PuppetMasterEngine) -> None:
    await create(engine, "a")
    await create(engine, "b")
    bridge = engine.live["b"].bridge
    await bridge.send_emergency_override("test")
    before = [r["id"] for r in engine.list_instances()]
    for command in (
        {"type": "CLONE_INSTANCE", "source": "b"},
        {"type": "FREEZE_TIME", "instances": ["a", "b"], "duration": 1},
    ):
        with pytest.raises(OverrideActiveError):
            await god(engine, command)
    assert [r["id"] for r in engine.list_instances()] == before
    assert engine.store.instances.get("a").status == "active"
    assert not runtime(engine, "a").paused


@pytest.mark.anyio
async def test_the_default_instance_is_the_oldest_root_never_a_clone_of_it(engine: PuppetMasterEngine) -> None:
    first = await engine.open_default(SEED, DEFAULT_WORLD, AGENTS)
    await god(engine, {"type": "CLONE_INSTANCE", "source": first, "tick": 0, "id": "clone0"})
    await create(engine, "same-seed-later")
    assert await engine.open_default(SEED, DEFAULT_WORLD, AGENTS) == first
