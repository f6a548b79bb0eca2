"""Helpers the storage ports' contract tests share (``test_store_contract_*``, ``test_access_store``): an instance
record to create, an instance with something in every table, the events of a short run, and a check that a moment is
in UTC."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from soulfra.store import InstanceRecord, Store
from soulfra.world import AlterVibe, Event, InjectRitual, Input, Whisper, World
from soulfra.world.vibe import PHASES


def make_record(
    instance_id: str, *, seed: int = 7, genesis_hash: str = "b2:genesis", world: dict[str, Any] | None = None
) -> InstanceRecord:
    world = {"name": "default", "agents": 3} if world is None else world
    return InstanceRecord(id=instance_id, name="default", seed=seed, genesis_hash=genesis_hash, world=world)


def _is_utc(moment: datetime | None) -> bool:
    return moment is not None and moment.utcoffset() == timedelta(0)


def _fill(store: Store, instance_id: str, *, agents: int) -> None:
    """An instance with something in every table: inputs, snapshots (deltas or a dictionary), traces, agents."""
    world = World.create(3, agents=agents)
    store.instances.create(make_record(instance_id, seed=3, genesis_hash=world.state_hash()))
    store.inputs.append(instance_id, [Whisper(tick=0, target="*", text="hello")])
    for _ in range(20):
        store.snapshots.save(instance_id, world.state, "periodic")
        store.rituals.append(instance_id, world.step())
    store.vault.save_agents(instance_id, world.state)
    store.audit.append(actor="test", action="fill", instance_id=instance_id, detail={})


def _run(ticks: int) -> list[Event]:
    world = World.create(3)
    inputs: dict[int, list[Input]] = {
        2: [Whisper(tick=2, target="arty", text="listen")],
        4: [InjectRitual(tick=4, name="dawn", participants=("arty", "cal-riven"), blessed=True)],
        6: [AlterVibe(tick=6, condition=PHASES[1], intensity=800_000, duration=5)],
    }
    events: list[Event] = []
    for _ in range(ticks):
        events.extend(world.step(inputs.get(world.tick, ())))
    return events
