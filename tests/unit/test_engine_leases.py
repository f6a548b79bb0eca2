"""The puppet master and the writer leases: it runs only what it can hold, skips (and names) a world another
process runs, and refuses to write into one; a deleted world's lease is let go."""

from __future__ import annotations

import logging

import pytest

from soulfra.bus import InMemoryBus
from soulfra.durable import DurabilitySettings, DurableWorld
from soulfra.errors import InputError, LeaseHeldError
from soulfra.meta.commands import parse_command
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.platforms.instance import InstanceSettings
from soulfra.store import InMemoryStore, MemoryDatabase
from soulfra.world import DEFAULT_WORLD


@pytest.mark.anyio
async def test_the_engine_skips_a_world_another_writer_holds_and_never_writes_into_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    database = MemoryDatabase()
    other = InMemoryStore(database)  # another process's store, as far as leases go
    held = DurableWorld.create(other, 1, DEFAULT_WORLD, instance_id="held")
    DurableWorld.create(other, 2, DEFAULT_WORLD, instance_id="free")
    other.leases.release("free")
    store, bus = InMemoryStore(database), InMemoryBus()
    engine = PuppetMasterEngine(store, bus, EngineSettings(instance=InstanceSettings(rate=None)))
    try:
        with caplog.at_level(logging.ERROR, logger="soulfra.meta.engine"):
            await engine.start()
        assert sorted(engine.live) == ["free"]
        assert "instance held was not started: instance held is already being run by pid" in caplog.text
        assert store.leases.held() == ["free"]
        with pytest.raises(LeaseHeldError):  # a clone of it would mark its log: refused, nothing written there
            await engine.execute(parse_command({"type": "CLONE_INSTANCE", "source": "held", "id": "copy"}))
        assert other.inputs.count("held") == 0
        with pytest.raises(LeaseHeldError):
            await engine.delete_instance("held")
        assert other.instances.get("held").id == "held"
        await engine.delete_instance("free")
        assert store.leases.held() == []
        held.close()
        other.close()
        await engine.start()  # once its writer has stopped, the puppet master takes it on
        assert sorted(engine.live) == ["held"]
    finally:
        await engine.close()
        await bus.close()
        store.close()


@pytest.mark.anyio
async def test_a_refused_rewrite_leaves_no_branch_and_no_lease() -> None:
    store, bus = InMemoryStore(), InMemoryBus()
    engine = PuppetMasterEngine(
        store, bus, EngineSettings(instance=InstanceSettings(rate=None, durability=DurabilitySettings(horizon=100)))
    )
    try:
        await engine.create_instance(seed=4, spec=DEFAULT_WORLD, instance_id="a")
        far = {"type": "whisper", "target": "arty", "text": "too late", "tick": 5000}
        rewrite = {"type": "PUPPET_MASTER_INTERVENTION", "instance": "a", "kind": "rewrite", "from_tick": 0,
                   "id": "rw", "add": [far]}  # fmt: skip
        with pytest.raises(InputError, match="more than 100 ticks past the rewrite's start at 0"):
            await engine.execute(parse_command(rewrite))
        assert [r.id for r in store.instances.list_instances()] == ["a"]
        assert store.leases.held() == ["a"]
    finally:
        await engine.close()
        await bus.close()
        store.close()
