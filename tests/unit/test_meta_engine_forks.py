"""CLONE_INSTANCE and REALITY_FORK: a clone or fork copies no history, replays from its parent, acts on its
modifications from the next tick, and is isolated from its siblings; a refused fork makes nothing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from soulfra.durable import DurabilitySettings, state_at
from soulfra.errors import (
    ConflictError,
    LineageError,
    UnknownAgentError,
)
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.platforms.instance import InstanceSettings
from soulfra.verification import replay, verify
from soulfra.world import (
    DEFAULT_WORLD,
    ChangePersonality,
    state_hash,
)
from soulfra.world.model import WARMTH

from .meta_engine_support import (
    AGENTS,
    SEED,
    WARM,
    OpenEngine,
    agent,
    create,
    freeze,
    god,
    hash_at,
    live_state,
    logged,
    marks,
    settle,
    thaw,
    tick_of,
    whisper,
)
from .support import wait_until

# -- CLONE_INSTANCE and REALITY_FORK -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_clone_copies_no_history_and_its_modifications_act_from_the_next_tick(
    engine: PuppetMasterEngine,
) -> None:
    await create(engine, "a")
    at = (await settle(engine, ["a"], 8))["a"]
    result = await god(engine, {"type": "CLONE_INSTANCE", "source": "a", "id": "c", "modifications": [WARM],
                                "start": False})  # fmt: skip
    assert (result["source"], result["id"], result["tick"], result["modifications"]) == ("a", "c", at, 1)
    record = engine.store.instances.get("c")
    assert (record.parent_id, record.fork_tick, record.head_tick) == ("a", at, at)
    assert record.world["origin"] == "clone"
    assert logged(engine, "c") == [ChangePersonality(tick=at, agent="arty", traits=(("warmth", 900_000),))]
    assert engine.store.snapshots.list_snapshots("c") == []
    assert hash_at(engine, "c", at) == hash_at(engine, "a", at) == result["state_hash"] == record.genesis_hash
    assert ("CLONE_INSTANCE", at) in marks(engine, "a")
    assert engine.describe("c")["lineage"] == [{"instance": "a", "tick": at}]

    arty = agent(live_state(engine, "a"), "arty")
    before = int(live_state(engine, "a").traits[arty, WARMTH])
    assert before != 900_000
    await engine.start()  # brings the stored clone to life
    await settle(engine, ["c"], at + 1)
    assert int(state_at(engine.store, "c", at).traits[arty, WARMTH]) == before
    assert int(state_at(engine.store, "c", at + 1).traits[arty, WARMTH]) == 900_000
    assert int(live_state(engine, "c").traits[arty, WARMTH]) == 900_000
    assert int(live_state(engine, "a").traits[arty, WARMTH]) == before
    assert verify(engine.store, "c").ok


@pytest.mark.anyio
async def test_a_clone_at_a_past_tick_starts_from_the_source_state_there(engine: PuppetMasterEngine) -> None:
    await create(engine, "a")
    at = (await settle(engine, ["a"], 12))["a"]
    result = await god(engine, {"type": "CLONE_INSTANCE", "source": "a", "id": "c", "tick": at - 5, "start": False})
    assert result["tick"] == at - 5
    assert hash_at(engine, "c", at - 5) == hash_at(engine, "a", at - 5) == result["state_hash"]
    with pytest.raises(LineageError):
        await god(engine, {"type": "CLONE_INSTANCE", "source": "a", "tick": at + 100})


@pytest.mark.anyio
async def test_a_clone_with_a_modification_naming_an_unknown_agent_is_refused(engine: PuppetMasterEngine) -> None:
    await create(engine, "a")
    await settle(engine, ["a"], 3)
    before = logged(engine, "a")
    bad = {**WARM, "agent": "nobody"}
    with pytest.raises(UnknownAgentError, match="modification 0"):
        await god(engine, {"type": "CLONE_INSTANCE", "source": "a", "id": "c", "modifications": [bad]})
    assert [r["id"] for r in engine.list_instances()] == ["a"]
    assert logged(engine, "a") == before


@pytest.mark.anyio
async def test_a_clone_at_a_past_tick_of_a_running_instance_is_not_refused(open_engine: OpenEngine) -> None:
    # group commits far apart: the durable head of a running world lags its live tick
    lazy = DurabilitySettings(snapshot_every=1000, commit_every=1000)
    engine = open_engine(EngineSettings(instance=InstanceSettings(rate=None, durability=lazy)))
    await create(engine, "a")
    await wait_until("a passes tick 20", lambda: tick_of(engine, "a") >= 20)
    # Was: _fork checks a past tick against the stored head without flushing the live world first (only the
    # current-tick path goes through _state_now, which flushes), so a tick the world has passed is refused
    result = await god(engine, {"type": "CLONE_INSTANCE", "source": "a", "id": "c", "tick": 10, "start": False})
    assert hash_at(engine, "c", 10) == replay(SEED, DEFAULT_WORLD, AGENTS, [], 10) == result["state_hash"]


@pytest.mark.anyio
async def test_reality_forks_are_isolated_and_each_replays_from_its_parent(engine: PuppetMasterEngine) -> None:
    await create(engine, "a")
    t0 = (await freeze(engine, "a"))["a"]
    await whisper(engine, "a", "before the fork", tick=t0 + 3)
    await thaw(engine, "a")
    at = (await settle(engine, ["a"], t0 + 8))["a"]
    # held far longer than the test runs: a world goes on ticking while the others are frozen one by one (their
    # storage work no longer holds the event loop), so f2 may run many ticks past at + 12 before its own freeze
    storm = {"type": "intervene", "kind": "vibe", "condition": "echo-storm", "intensity": "0.9", "duration": 100_000}
    result = await god(engine, {"type": "REALITY_FORK", "source": "a", "forks": [
        {"id": "f1", "modifications": [WARM]}, {"id": "f2", "modifications": [storm]}, {"id": "f3"},
    ]})  # fmt: skip
    assert [(f["id"], f["tick"], f["modifications"]) for f in result["forks"]] == [
        ("f1", at, 1), ("f2", at, 1), ("f3", at, 0)
    ]  # fmt: skip
    assert {f["state_hash"] for f in result["forks"]} == {hash_at(engine, "a", at)}
    assert sorted(engine.describe("a")["children"]) == ["f1", "f2", "f3"]

    states = {i: live_state(engine, i) for i in ("a", "f1", "f2", "f3")}
    for (x, one), (y, other) in itertools.combinations(states.items(), 2):
        for name in ("traits", "valence", "arousal", "energy", "focus"):
            assert not np.shares_memory(getattr(one, name), getattr(other, name)), (x, y, name)
        for name in ("threads", "rituals", "affinity", "memory", "possessed", "loop"):
            assert getattr(one, name) is not getattr(other, name), (x, y, name)
    await freeze(engine, "f3")
    f3 = live_state(engine, "f3")
    f3.traits[:, :] = 1  # vandalise one fork's live state: no other world may see it
    assert all(int(states[i].traits.min()) > 1 for i in ("a", "f1", "f2"))

    heads = await settle(engine, ["f1", "f2"], at + 12)
    common = min(heads.values())
    assert hash_at(engine, "f1", common) != hash_at(engine, "f2", common)
    arty = agent(states["f1"], "arty")
    assert int(live_state(engine, "f1").traits[arty, WARMTH]) == 900_000
    assert int(live_state(engine, "f2").traits[arty, WARMTH]) != 900_000
    override = live_state(engine, "f2").vibe_override
    assert override is not None
    assert override.condition == "echo-storm"

    before_fork = [s.input for s in engine.store.inputs.read("a", to_tick=at)]
    for fork in ("f1", "f2"):
        head = heads[fork]
        expected = replay(SEED, DEFAULT_WORLD, AGENTS, [*before_fork, *logged(engine, fork)], head)
        assert hash_at(engine, fork, head) == expected == state_hash(live_state(engine, fork))
        report = verify(engine.store, fork)
        assert report.ok
        assert report.state_hash == expected


@pytest.mark.anyio
async def test_a_reality_fork_with_a_taken_id_makes_no_fork_at_all(engine: PuppetMasterEngine) -> None:
    await create(engine, "a")
    await create(engine, "taken")
    await settle(engine, ["a"], 3)
    with pytest.raises(ConflictError, match="taken"):
        await god(engine, {"type": "REALITY_FORK", "source": "a", "forks": [{"id": "f1"}, {"id": "taken"}]})
    # Was: _fork creates and launches the forks one by one, so those before the taken id stay behind (live, with
    # no REALITY_FORK mark in the source) although the command failed
    assert [r["id"] for r in engine.list_instances()] == ["a", "taken"]
    assert "f1" not in engine.live


@pytest.mark.anyio
async def test_unnamed_forks_never_take_an_id_named_later_in_the_same_command(engine: PuppetMasterEngine) -> None:
    await create(engine, "a")
    result = await god(engine, {"type": "REALITY_FORK", "source": "a", "forks": [{}, {"id": "a-fork"}]})
    ids = [f["id"] for f in result["forks"]]
    assert ids[1] == "a-fork"
    assert len(set(ids)) == 2
