"""Merging language worlds through the puppet master, the fake server answering: a language world forked twice, both
forks run, merged; the merged world keeps the thoughts pending on its sides (asked again, into its own log), runs on,
and with the server stopped it verifies and replays to the same state hash."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from soulfra.bus import InMemoryBus
from soulfra.durable import state_at
from soulfra.language import Budget, MindSettings
from soulfra.meta.commands import parse_command
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.meta.merge import merge_states
from soulfra.platforms.instance import InstanceSettings
from soulfra.store import InMemoryStore
from soulfra.verification import verify
from soulfra.world import World, schedule, state_hash

from .fake_model import FakeModel
from .test_language_minds import SEED, SPEC, replies

pytestmark = pytest.mark.anyio

WARM = {"type": "intervene", "kind": "personality", "agent": "arty", "traits": {"warmth": "0.9"}}


async def until(what: str, check: Callable[[], bool], deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {deadline_s} s waiting until {what}")
        await asyncio.sleep(0.01)


async def god(engine: PuppetMasterEngine, command: dict[str, Any]) -> dict[str, Any]:
    return (await engine.execute(parse_command(command))).reply()


async def settle(engine: PuppetMasterEngine, ids: list[str], at_least: int) -> dict[str, int]:
    """Let the instances reach ``at_least``, then freeze them: the tick each stands at."""
    await until(f"{ids} reach {at_least}", lambda: all(engine.live[i].runtime.world.tick >= at_least for i in ids))
    frozen = await god(engine, {"type": "FREEZE_TIME", "instances": ids})
    return {f["instance"]: f["tick"] for f in frozen["frozen"]}


async def test_two_forks_of_a_language_world_merge_and_the_merge_verifies_without_the_server(
    bus: InMemoryBus,
) -> None:
    store = InMemoryStore()
    async with FakeModel() as fake:
        minds = MindSettings(url=fake.url, budget=Budget(timeout=5.0))
        engine = PuppetMasterEngine(store, bus, EngineSettings(instance=InstanceSettings(rate=None, minds=minds)))
        try:
            await engine.create_instance(seed=SEED, spec=SPEC, agents=12, instance_id="x")
            at = (await settle(engine, ["x"], 8))["x"]
            await god(engine, {"type": "REALITY_FORK", "source": "x", "forks": [
                {"id": "a", "modifications": [WARM]}, {"id": "b"},
            ]})  # fmt: skip
            heads = await settle(engine, ["a", "b"], at + 12)
            result = await god(engine, {"type": "MERGE_INSTANCES", "ours": "a", "theirs": "b", "id": "m"})
            start = result["tick"]
            merged = state_at(store, "m", start)
            head = (await settle(engine, ["m"], start + 8))["m"]
            live_hash = engine.live["m"].runtime.world.world.state_hash()
        finally:
            await engine.close()
    # the server is stopped from here on
    ours, theirs = state_at(store, "a", heads["a"]), state_at(store, "b", heads["b"])
    assert state_hash(merged) == state_hash(merge_states(state_at(store, "x", at), ours, theirs).state)
    assert {r.outcome for r in replies(store, "a") + replies(store, "b")} == {"reply"}
    # the merge kept the thoughts pending on its sides (those not yet due), each one side's
    pending = {agent: due for side in (ours, theirs) for agent, due in side.thinking.items() if due >= start}
    assert pending, "some language agent was thinking when the forks stopped"
    assert merged.thinking and set(merged.thinking) <= set(pending)
    assert all(due in (ours.thinking.get(a), theirs.thinking.get(a)) for a, due in merged.thinking.items())
    # ... and asked for them again, into its own log, which holds each reply once
    kept = {(merged.specs[agent].id, due) for agent, due in merged.thinking.items()}
    merged_replies = [(r.agent, r.tick) for r in replies(store, "m")]
    assert kept <= set(merged_replies) and len(merged_replies) == len(set(merged_replies))
    report = verify(store, "m")
    assert report.ok and report.state_hash == live_hash
    world = World(merged.copy())
    due = schedule((s.input for s in store.inputs.read("m")), start)
    while world.tick < head:
        world.step(due.get(world.tick, ()))
    assert world.state_hash() == live_hash
    assert verify(store, "a").ok and verify(store, "b").ok
