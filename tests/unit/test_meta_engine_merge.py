"""MERGE_INSTANCES: a merge is a new instance with two parents and a conflict report, computed from the common
ancestor; its lineage follows its parents through later history and reverts."""

from __future__ import annotations

import pytest

from soulfra.durable import state_at
from soulfra.errors import (
    LineageError,
)
from soulfra.meta.engine import PuppetMasterEngine
from soulfra.meta.lineage import AncestorPoint, common_ancestor
from soulfra.meta.merge import merge_states
from soulfra.verification import verify
from soulfra.world import (
    state_hash,
)
from soulfra.world.model import WARMTH

from .meta_engine_support import (
    WARM,
    agent,
    create,
    god,
    hash_at,
    marks,
    settle,
    thaw,
    traces,
)

# -- MERGE_INSTANCES ---------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_merge_is_a_new_instance_with_two_parents_and_a_conflict_report(engine: PuppetMasterEngine) -> None:
    await create(engine, "x")
    at = (await settle(engine, ["x"], 6))["x"]
    cold = {**WARM, "traits": {"warmth": "0.2"}}
    await god(engine, {"type": "REALITY_FORK", "source": "x", "forks": [
        {"id": "a", "modifications": [WARM]}, {"id": "b", "modifications": [cold]},
    ]})  # fmt: skip
    heads = await settle(engine, ["a", "b"], at + 10)
    result = await god(engine, {"type": "MERGE_INSTANCES", "ours": "a", "theirs": "b", "id": "m", "start": False})

    record = engine.store.instances.get("m")
    assert (record.parent_id, record.merge_parent_id) == ("a", "b")
    assert record.fork_tick == record.head_tick == result["tick"] == max(heads.values())
    assert result["parents"] == ["a", "b"]
    assert result["base"] == {"instance": "x", "tick": at}
    warmth = [c for c in result["conflicts"] if (c["entity"], c["field"]) == ("arty", "warmth")]
    assert len(warmth) == 1
    assert (warmth[0]["ours"], warmth[0]["theirs"], warmth[0]["policy"]) == (900_000, 200_000, "mean")
    assert traces(engine, "m", "merge_report")[0][1]["conflicts"] == result["conflicts"]

    expected = merge_states(
        state_at(engine.store, "x", at),
        state_at(engine.store, "a", heads["a"]),
        state_at(engine.store, "b", heads["b"]),
    ).state
    assert hash_at(engine, "m", record.head_tick) == state_hash(expected) == record.genesis_hash
    assert int(expected.traits[agent(expected, "arty"), WARMTH]) == 550_000
    assert ("MERGE_INSTANCES", heads["a"]) in marks(engine, "a")
    assert ("MERGE_INSTANCES", heads["b"]) in marks(engine, "b")
    assert verify(engine.store, "m").ok


@pytest.mark.anyio
async def test_merging_an_instance_with_itself_gives_its_own_state(engine: PuppetMasterEngine) -> None:
    await create(engine, "x")
    head = (await settle(engine, ["x"], 10))["x"]
    result = await god(engine, {"type": "MERGE_INSTANCES", "ours": "x", "theirs": "x", "id": "m", "start": False})
    assert result["tick"] == head
    assert result["conflicts"] == []
    assert hash_at(engine, "m", head) == hash_at(engine, "x", head)


@pytest.mark.anyio
async def test_merging_an_unchanged_fork_with_a_changed_sibling_gives_the_changed_side(
    engine: PuppetMasterEngine,
) -> None:
    await create(engine, "x")
    at = (await settle(engine, ["x"], 6))["x"]
    await god(engine, {"type": "CLONE_INSTANCE", "source": "x", "id": "still", "start": False})  # stays at `at`
    await god(engine, {"type": "CLONE_INSTANCE", "source": "x", "id": "moved", "modifications": [WARM]})
    head = (await settle(engine, ["moved"], at + 12))["moved"]

    one = await god(engine, {"type": "MERGE_INSTANCES", "ours": "still", "theirs": "moved", "id": "m1",
                             "start": False})  # fmt: skip
    other = await god(engine, {"type": "MERGE_INSTANCES", "ours": "moved", "theirs": "still", "id": "m2",
                               "start": False})  # fmt: skip
    assert one["base"] == other["base"] == {"instance": "x", "tick": at}
    assert one["conflicts"] == other["conflicts"] == []
    assert hash_at(engine, "m1", head) == hash_at(engine, "m2", head) == hash_at(engine, "moved", head)


@pytest.mark.anyio
async def test_instances_without_a_common_ancestor_cannot_be_merged(engine: PuppetMasterEngine) -> None:
    await create(engine, "a")
    await create(engine, "b")
    await settle(engine, ["a", "b"], 3)
    with pytest.raises(LineageError, match="share no ancestor"):
        await god(engine, {"type": "MERGE_INSTANCES", "ours": "a", "theirs": "b"})
    assert [r["id"] for r in engine.list_instances()] == ["a", "b"]


@pytest.mark.anyio
async def test_a_merge_remembers_each_parent_at_the_tick_it_was_merged_from(engine: PuppetMasterEngine) -> None:
    await create(engine, "x")
    at = (await settle(engine, ["x"], 6))["x"]
    await god(engine, {"type": "CLONE_INSTANCE", "source": "x", "id": "still", "start": False})
    await god(engine, {"type": "CLONE_INSTANCE", "source": "x", "id": "moved", "modifications": [WARM]})
    head = (await settle(engine, ["moved"], at + 12))["moved"]
    await god(engine, {"type": "MERGE_INSTANCES", "ours": "still", "theirs": "moved", "id": "m", "start": False})
    await engine.start()  # "still" goes on, past the merge's tick, with a history of its own
    await settle(engine, ["still"], head + 5)
    # "m" holds "still" only up to `at`: that is the last point of history the two share
    # Was: an instance record has one fork_tick for both parents (the merged state's tick, the later one), so
    # lineage() names "still" up to `head` and common_ancestor() picks a base "m" never saw
    assert common_ancestor(engine.store, "m", "still") == AncestorPoint("still", at)


@pytest.mark.anyio
async def test_reverting_a_merge_parent_moves_the_merge_to_the_abandoned_branch(engine: PuppetMasterEngine) -> None:
    await create(engine, "x")
    at = (await settle(engine, ["x"], 6))["x"]
    await god(engine, {"type": "REALITY_FORK", "source": "x", "forks": [
        {"id": "a", "modifications": [WARM]}, {"id": "b"},
    ]})  # fmt: skip
    heads = await settle(engine, ["a", "b"], at + 12)
    await god(engine, {"type": "MERGE_INSTANCES", "ours": "a", "theirs": "b", "id": "m", "start": False})
    back = at + 2
    reverted = await god(engine, {"type": "TIMELINE_REVERT", "instance": "b", "tick": back})
    branch = reverted["abandoned_branch"]["id"]
    await thaw(engine, "b")
    await settle(engine, ["b"], max(heads.values()) + 5)  # "b" goes on with another history
    # what "m" took from "b" is now the abandoned branch's (b up to `back`, then the branch)
    # Was: InstanceCatalog.split_branch re-points children whose parent_id is the reverted instance, not those
    # whose merge_parent_id is, so the merge still claims b's new history as its ancestry
    assert engine.store.instances.get("m").merge_parent_id == branch
    assert common_ancestor(engine.store, "m", "b") == AncestorPoint("b", back)
