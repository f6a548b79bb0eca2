"""TIMELINE_REVERT: a revert to a tick or a snapshot keeps the abandoned branch whole, both verify, a refused
revert changes nothing, and the surface and mirror follow the reverted timeline."""

from __future__ import annotations

import pytest

from soulfra.errors import (
    LineageError,
    NotFoundError,
)
from soulfra.meta.engine import PuppetMasterEngine
from soulfra.verification import verify
from soulfra.world import (
    Whisper,
    state_hash,
)

from .meta_engine_support import (
    create,
    freeze,
    god,
    hash_at,
    head_of,
    live_state,
    logged,
    marks,
    settle,
    thaw,
    tick_of,
    whisper,
)
from .support import wait_until

# -- TIMELINE_REVERT ---------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_revert_to_a_tick_keeps_the_abandoned_branch_and_both_verify(engine: PuppetMasterEngine) -> None:
    await create(engine, "a")
    t0 = (await freeze(engine, "a"))["a"]
    back = t0 + 10
    await whisper(engine, "a", "before the turn", tick=t0 + 4)
    late = await whisper(engine, "a", "after the turn", tick=back + 5)
    await thaw(engine, "a")
    head = (await settle(engine, ["a"], back + 25))["a"]
    then = hash_at(engine, "a", back)
    head_hash = hash_at(engine, "a", head)
    assert state_hash(live_state(engine, "a")) == head_hash

    result = await god(engine, {"type": "TIMELINE_REVERT", "instance": "a", "tick": back})
    branch = result["abandoned_branch"]["id"]
    assert (result["tick"], result["state_hash"]) == (back, then)
    assert result["abandoned_branch"] == {"id": branch, "from_tick": back, "head_tick": head}
    assert tick_of(engine, "a") == head_of(engine, "a") == back
    assert state_hash(live_state(engine, "a")) == then
    described = engine.describe("a")
    assert described["branches"] == [{"id": branch, "from_tick": back, "head_tick": head}]
    assert described["children"] == []
    record = engine.store.instances.get(branch)
    assert (record.status, record.parent_id, record.fork_tick, record.head_tick) == ("abandoned", "a", back, head)
    assert hash_at(engine, branch, head) == head_hash  # the abandoned history is kept whole
    assert [s.seq for s in engine.store.inputs.read(branch) if isinstance(s.input, Whisper)] == [late]
    assert [i.text for i in logged(engine, "a") if isinstance(i, Whisper)] == ["before the turn"]
    assert ("TIMELINE_REVERT", back) in marks(engine, "a")

    await thaw(engine, "a")  # it was frozen, and stayed so through the revert
    await settle(engine, ["a"], head)
    assert hash_at(engine, "a", back) == then
    assert hash_at(engine, "a", head) != head_hash  # the abandoned whisper is not in this timeline
    assert verify(engine.store, "a").ok
    assert verify(engine.store, branch).ok
    assert verify(engine.store, branch).state_hash == head_hash


@pytest.mark.anyio
async def test_a_revert_to_a_snapshot_goes_back_to_its_tick(engine: PuppetMasterEngine) -> None:
    await create(engine, "a")
    head = (await settle(engine, ["a"], 45))["a"]
    chosen = next(s for s in engine.store.snapshots.list_snapshots("a") if 0 < s.tick < head)
    result = await god(engine, {"type": "TIMELINE_REVERT", "instance": "a", "snapshot": chosen.id})
    assert (result["tick"], result["state_hash"]) == (chosen.tick, chosen.state_hash)
    assert state_hash(live_state(engine, "a")) == chosen.state_hash
    assert max(s.tick for s in engine.store.snapshots.list_snapshots("a")) == chosen.tick
    branch = result["abandoned_branch"]["id"]
    assert all(s.tick > chosen.tick for s in engine.store.snapshots.list_snapshots(branch))
    assert verify(engine.store, branch).ok

    await create(engine, "other")
    await settle(engine, ["other"], 21)
    foreign = engine.store.snapshots.list_snapshots("other")[-1]
    with pytest.raises(NotFoundError):
        await god(engine, {"type": "TIMELINE_REVERT", "instance": "a", "snapshot": foreign.id})


@pytest.mark.anyio
async def test_a_revert_past_the_head_is_refused_and_changes_nothing(engine: PuppetMasterEngine) -> None:
    await create(engine, "a")
    head = (await settle(engine, ["a"], 5))["a"]
    before = hash_at(engine, "a", head)
    with pytest.raises(LineageError, match="cannot revert"):
        await god(engine, {"type": "TIMELINE_REVERT", "instance": "a", "tick": head + 1})
    assert [r["id"] for r in engine.list_instances()] == ["a"]
    assert head_of(engine, "a") == tick_of(engine, "a") == head
    assert state_hash(live_state(engine, "a")) == before


@pytest.mark.anyio
async def test_a_refused_revert_leaves_a_running_instance_running(engine: PuppetMasterEngine) -> None:
    await create(engine, "a")
    await wait_until("a ticks", lambda: tick_of(engine, "a") >= 3)
    with pytest.raises(LineageError):
        await god(engine, {"type": "TIMELINE_REVERT", "instance": "a", "tick": 10**9})
    # Was: _revert pauses the runtime before revert_record and restores `paused` only on success
    assert engine.describe("a")["state"] == "running"
    at = tick_of(engine, "a")
    await wait_until("a ticks on", lambda: tick_of(engine, "a") > at, deadline_s=2.0)


@pytest.mark.anyio
async def test_after_a_revert_the_surface_and_mirror_follow_the_reverted_timeline(engine: PuppetMasterEngine) -> None:
    await create(engine, "a")
    await wait_until("a reaches tick 40", lambda: tick_of(engine, "a") >= 40)
    await god(engine, {"type": "TIMELINE_REVERT", "instance": "a", "tick": 5})
    live = engine.live["a"]
    surface, mirror = live.surface, live.mirror
    assert surface.tick <= tick_of(engine, "a")  # the old surface saw tick 40; this one starts over
    await wait_until("the surface follows the runtime", lambda: 5 < surface.tick <= tick_of(engine, "a"))
    await wait_until("the mirror follows the runtime", lambda: 5 < mirror.tick <= tick_of(engine, "a"))
