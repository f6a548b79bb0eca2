"""Helpers the puppet master's unit tests share (``test_meta_engine_*``): the world they create, and short ways to
run a god-mode command and to read an instance's tick, state, stored inputs, marks and traces."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from soulfra.durable import state_at
from soulfra.meta.commands import parse_command
from soulfra.meta.engine import PuppetMasterEngine
from soulfra.platforms.runtime import RuntimePlatform
from soulfra.world import DEFAULT_WORLD, Input, Mark, WorldState, state_hash

from .support import wait_until

SEED = 7
AGENTS = 2  # extra agents beside the default world's three: five in all
WARM = {"type": "intervene", "kind": "personality", "agent": "arty", "traits": {"warmth": "0.9"}}
OpenEngine = Callable[..., PuppetMasterEngine]


def runtime(engine: PuppetMasterEngine, instance_id: str) -> RuntimePlatform:
    return engine.live[instance_id].runtime


def tick_of(engine: PuppetMasterEngine, instance_id: str) -> int:
    return runtime(engine, instance_id).world.tick


def live_state(engine: PuppetMasterEngine, instance_id: str) -> WorldState:
    return runtime(engine, instance_id).world.world.state


def hash_at(engine: PuppetMasterEngine, instance_id: str, tick: int) -> str:
    return state_hash(state_at(engine.store, instance_id, tick))


def head_of(engine: PuppetMasterEngine, instance_id: str) -> int:
    return engine.store.instances.get(instance_id).head_tick


def logged(engine: PuppetMasterEngine, instance_id: str) -> list[Input]:
    return [s.input for s in engine.store.inputs.read(instance_id)]


def marks(engine: PuppetMasterEngine, instance_id: str) -> list[tuple[str, int]]:
    return [(i.command, i.tick) for i in logged(engine, instance_id) if isinstance(i, Mark)]


def traces(engine: PuppetMasterEngine, instance_id: str, kind: str) -> list[tuple[int, dict[str, Any]]]:
    return [(t.tick, t.data) for t in engine.store.rituals.read(instance_id, kinds=[kind])]


async def god(engine: PuppetMasterEngine, command: dict[str, Any]) -> dict[str, Any]:
    return (await engine.execute(parse_command(command))).reply()


async def create(engine: PuppetMasterEngine, instance_id: str, *, seed: int = SEED) -> dict[str, Any]:
    return await engine.create_instance(seed=seed, spec=DEFAULT_WORLD, agents=AGENTS, instance_id=instance_id)


async def freeze(engine: PuppetMasterEngine, *instance_ids: str) -> dict[str, int]:
    """FREEZE_TIME for these instances (all, when none is named); the tick each stands at."""
    command: dict[str, Any] = {"type": "FREEZE_TIME"}
    if instance_ids:
        command["instances"] = list(instance_ids)
    result = await god(engine, command)
    return {f["instance"]: f["tick"] for f in result["frozen"]}


async def thaw(engine: PuppetMasterEngine, *instance_ids: str) -> None:
    await god(engine, {"type": "THAW_TIME", "instances": list(instance_ids)})


async def settle(engine: PuppetMasterEngine, instance_ids: Sequence[str], at_least: int) -> dict[str, int]:
    """Let running instances reach ``at_least``, then freeze them there; the tick each was frozen at."""
    await wait_until(
        f"{', '.join(instance_ids)} reach tick {at_least}",
        lambda: all(tick_of(engine, i) >= at_least for i in instance_ids),
    )
    return await freeze(engine, *instance_ids)


async def whisper(engine: PuppetMasterEngine, instance_id: str, text: str, *, tick: int) -> int:
    """A whisper to every agent, stamped for ``tick``; its seq."""
    bridge = engine.live[instance_id].bridge
    ack = await bridge.send_whisper_to_runtime(text, tick=tick, tone="urgent")
    return ack.seq


def agent(state: WorldState, agent_id: str) -> int:
    return state.index[agent_id]
