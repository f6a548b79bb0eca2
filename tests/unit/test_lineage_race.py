"""Lineage that can never be impossible, and marks that are always JSON, through the puppet master.

A merge (and a clone) racing a revert of its parent is serialized: every child names its parent at a tick the
parent's current history holds, with the state it was made from, or it moved with the abandoned branch; and
``verify`` passes for every instance. A merge forged onto the reverted timeline is a mismatch. A mark's note is
JSON within its bound however long the command's note would be.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from soulfra.bus import InMemoryBus
from soulfra.durable import DurabilitySettings, start_tick, state_at
from soulfra.meta.commands import parse_command
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.platforms.instance import InstanceSettings
from soulfra.store import InMemoryStore
from soulfra.store.ports import parent_tick
from soulfra.verification import verify
from soulfra.world import DEFAULT_WORLD, Mark, state_hash
from soulfra.world.inputs import MAX_TEXT

from .support import wait_until

SEED = 5
RACES = 50
DEADLINE_S = 20.0


@pytest.fixture
async def engine(anyio_backend: str) -> AsyncIterator[PuppetMasterEngine]:
    """An unpaced engine over its own in-memory store and bus; snapshots often, so past ticks read fast."""
    store = InMemoryStore()
    bus = InMemoryBus()
    engine = PuppetMasterEngine(
        store,
        bus,
        EngineSettings(instance=InstanceSettings(rate=None, durability=DurabilitySettings(snapshot_every=4))),
    )
    try:
        yield engine
    finally:
        try:
            await engine.close()
        finally:
            await bus.close()
            store.close()


async def god(engine: PuppetMasterEngine, command: dict[str, Any]) -> dict[str, Any]:
    return (await engine.execute(parse_command(command))).reply()


def tick_of(engine: PuppetMasterEngine, instance_id: str) -> int:
    return engine.live[instance_id].runtime.world.tick


async def settle(engine: PuppetMasterEngine, instance_id: str, at_least: int) -> int:
    """Let ``instance_id`` reach ``at_least``, then freeze it; the tick it stands at."""
    await wait_until(f"{instance_id} reaches {at_least}", lambda: tick_of(engine, instance_id) >= at_least)
    result = await god(engine, {"type": "FREEZE_TIME", "instances": [instance_id]})
    return int(result["frozen"][0]["tick"])


def marks(engine: PuppetMasterEngine, instance_id: str) -> list[Mark]:
    return [s.input for s in engine.store.inputs.read(instance_id) if isinstance(s.input, Mark)]


def impossible_lineages(engine: PuppetMasterEngine) -> list[str]:
    """Each child whose parent's history does not hold the tick it names, or holds another state there."""
    store = engine.store
    found = []
    for record in store.instances.list_instances():
        if record.fork_tick is None:
            continue
        for role, parent_id in (("parent", record.parent_id), ("merge_parent", record.merge_parent_id)):
            if parent_id is None:
                continue
            tick, parent = parent_tick(record, role), store.instances.get(parent_id)
            if not start_tick(parent) <= tick <= parent.head_tick:
                found.append(f"{record.id} names {parent_id} at {tick}, which holds {start_tick(parent)}..")
                continue
            origin = record.world.get("origin")
            made_from = (
                record.world.get("parent_hashes", {}).get(role) if origin == "merge"
                else record.genesis_hash if origin in ("fork", "clone") else None
            )  # fmt: skip
            if made_from is not None and state_hash(state_at(store, parent_id, tick)) != made_from:
                found.append(f"{record.id} was made from another state than {parent_id}'s at {tick}")
    return found


async def storm_of_a_merge(engine: PuppetMasterEngine) -> None:
    """``storm``: a merge of two forks of ``x`` that stand at different ticks, ticking unpaced."""
    await engine.create_instance(seed=SEED, spec=DEFAULT_WORLD, instance_id="x")
    at = await settle(engine, "x", 4)
    await god(engine, {"type": "REALITY_FORK", "source": "x", "forks": [{"id": "a"}, {"id": "b"}]})
    await settle(engine, "a", at + 3)
    await settle(engine, "b", tick_of(engine, "a") + 4)  # b stands later: storm starts at b's tick
    await god(engine, {"type": "MERGE_INSTANCES", "ours": "a", "theirs": "b", "id": "storm"})


@pytest.mark.slow
@pytest.mark.anyio
async def test_merges_and_clones_racing_reverts_never_name_an_abandoned_timeline(
    engine: PuppetMasterEngine,
) -> None:
    await storm_of_a_merge(engine)
    start = start_tick(engine.store.instances.get("storm"))
    for race in range(RACES):
        await wait_until("storm ticks on", lambda: tick_of(engine, "storm") >= start + 12)
        # a whisper on the timeline about to be abandoned: the two timelines differ from it on
        storm = engine.live["storm"].bridge
        await storm.send_whisper_to_runtime(f"race {race}", tick=tick_of(engine, "storm") + 1, tone="urgent")
        await wait_until("the whisper is heard", lambda: tick_of(engine, "storm") >= start + 14)
        commands = [
            {"type": "TIMELINE_REVERT", "instance": "storm", "tick": start + 1 + race % 9},
            {"type": "MERGE_INSTANCES", "ours": "storm", "theirs": "ab"[race % 2], "start": False},
            {"type": "CLONE_INSTANCE", "source": "storm", "start": False},
        ]
        shift = race % len(commands)  # each command goes first in turn
        results = await asyncio.gather(*(god(engine, c) for c in commands[shift:] + commands[:shift]))
        assert all(r["ok"] for r in results)
    await god(engine, {"type": "FREEZE_TIME"})

    records = engine.store.instances.list_instances()
    assert sum(r.status == "abandoned" for r in records) == RACES
    assert sum(r.world.get("origin") == "merge" for r in records) == RACES + 1
    assert impossible_lineages(engine) == []
    failed = {r.id: verify(engine.store, r.id).mismatches for r in records}
    assert {k: v for k, v in failed.items() if v} == {}


@pytest.mark.anyio
async def test_a_clone_of_a_merge_names_the_merge_at_its_own_tick_and_moves_with_a_revert(
    engine: PuppetMasterEngine,
) -> None:
    await storm_of_a_merge(engine)
    start = start_tick(engine.store.instances.get("storm"))
    at = await settle(engine, "storm", start + 6)
    clone = await god(engine, {"type": "CLONE_INSTANCE", "source": "storm", "id": "c", "start": False})
    assert clone["tick"] == at
    assert parent_tick(engine.store.instances.get("c")) == at
    reverted = await god(engine, {"type": "TIMELINE_REVERT", "instance": "storm", "tick": start + 2})
    branch = reverted["abandoned_branch"]["id"]
    assert parent_tick(engine.store.instances.get(branch)) == start + 2
    assert engine.store.instances.get("c").parent_id == branch  # taken after the revert tick: it moved
    assert impossible_lineages(engine) == []
    assert verify(engine.store, "c").ok


@pytest.mark.anyio
async def test_a_merge_forged_onto_the_reverted_timeline_is_a_mismatch(engine: PuppetMasterEngine) -> None:
    await storm_of_a_merge(engine)
    start = start_tick(engine.store.instances.get("storm"))
    at = await settle(engine, "storm", start + 6)
    await god(engine, {"type": "MERGE_INSTANCES", "ours": "storm", "theirs": "a", "id": "m", "start": False})
    reverted = await god(engine, {"type": "TIMELINE_REVERT", "instance": "storm", "tick": start + 2})
    assert engine.store.instances.get("m").parent_id == reverted["abandoned_branch"]["id"]
    assert verify(engine.store, "m").ok

    store = engine.store
    assert isinstance(store, InMemoryStore)
    with store.database.edit() as content:  # the merge pointed back at storm, whose head is now before `at`
        row = content.instances["m"]
        content.instances["m"] = replace(row, record=replace(row.record, parent_id="storm"))
    report = verify(engine.store, "m")
    assert [(m.tick, m.what) for m in report.mismatches] == [
        (at, f"lineage: its parent storm holds ticks {start} to {start + 2}, not {at}")
    ]


@pytest.mark.anyio
async def test_a_reality_fork_with_many_long_ids_marks_its_source_with_valid_json(
    engine: PuppetMasterEngine,
) -> None:
    await engine.create_instance(seed=SEED, spec=DEFAULT_WORLD, instance_id="x")
    at = await settle(engine, "x", 3)
    ids = [f"{n:02d}-" + "a-very-long-fork-name-" * 2 for n in range(40)]
    assert all(len(i) <= 64 for i in ids)
    await god(engine, {"type": "REALITY_FORK", "source": "x", "forks": [{"id": i} for i in ids], "start": False})
    await god(engine, {"type": "TIMELINE_REVERT", "instance": "x", "tick": at - 1})

    every = [mark for record in engine.store.instances.list_instances() for mark in marks(engine, record.id)]
    noted = {mark.command: mark.note for mark in every}  # the fork's mark moved to the branch with the revert
    assert set(noted) >= {"FREEZE_TIME", "REALITY_FORK", "TIMELINE_REVERT"}
    for command, note in noted.items():
        assert len(note) <= MAX_TEXT
        assert isinstance(json.loads(note), dict), command
    fork = json.loads(noted["REALITY_FORK"])
    assert fork["at"] == at
    assert fork["children"] == ids[: len(fork["children"])]
    assert len(fork["children"]) + fork["children_more"] == len(ids)
    assert len(fork["children"]) >= 5  # cut to what fits, not to nothing
