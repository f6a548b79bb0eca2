"""The four platforms in one process over the in-memory bus: whispers are acknowledged and logged, the durable
runtime matches an in-memory replay, a restore from a snapshot matches the live world, and the mirror collects the
same loop seeds as the world."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from soulfra.bus import Message
from soulfra.durable import state_at
from soulfra.platforms.base import decode, events_subject
from soulfra.platforms.replies import InputAck
from soulfra.store.ports import Store
from soulfra.verification import replay
from soulfra.world import DEFAULT_WORLD, World

from .platforms_support import Running, held
from .support import wait_until

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
