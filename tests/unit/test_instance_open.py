"""FourPlatformInstance.open hands out a whole instance or nothing: started and complete, or, when a platform fails
to start, every platform stopped again and the world's writer lease let go (unless another instance of this store
still runs it). The engine's launch relies on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from soulfra.bus import InMemoryBus
from soulfra.bus.memory import _Service
from soulfra.bus.port import Responder
from soulfra.durable import DurableWorld
from soulfra.errors import BusError, ConflictError, NoRespondersError, NotFoundError
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.platforms.base import PLATFORMS, op_subject
from soulfra.platforms.instance import FourPlatformInstance, InstanceSettings
from soulfra.store import SqlStore
from soulfra.world import DEFAULT_WORLD


class FaultyBus(InMemoryBus):
    """An in-memory bus that refuses to serve one subject, and counts what is still subscribed or served."""

    def __init__(self, refuse: str) -> None:
        super().__init__()
        self.refuse = refuse

    async def serve(self, subject: str, responder: Responder) -> _Service:
        if subject == self.refuse:
            raise BusError(f"refused to serve {subject}")
        return await super().serve(subject, responder)

    def listening(self) -> int:
        return sum(map(len, self._services.values())) + sum(map(len, self._subscriptions.values()))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = SqlStore.open(f"sqlite:///{tmp_path / 's.db'}")
    try:
        yield opened
    finally:
        opened.close()


@pytest.mark.anyio
async def test_open_hands_out_a_started_instance_that_has_not_ticked(store: SqlStore) -> None:
    bus = InMemoryBus()
    instance = await FourPlatformInstance.open(store, bus, InstanceSettings(instance_id="whole", rate=None))
    try:
        assert instance.instance_id == "whole"
        assert instance.world.tick == 0
        assert not instance.runtime.running
        status = await instance.bridge.cross_platform_status()
        assert {platform: "error" in reply for platform, reply in status.items()} == dict.fromkeys(PLATFORMS, False)
        assert store.leases.held() == ["whole"]
    finally:
        await instance.close()
        await bus.close()


@pytest.mark.anyio
async def test_a_platform_failing_half_way_through_its_start_leaves_nothing_serving_and_no_lease(
    store: SqlStore,
) -> None:
    # the mirror starts last, and serves several ops: it fails after serving some of them
    bus = FaultyBus(refuse=op_subject("half", "mirror", "unified_list"))
    with pytest.raises(BusError, match="refused to serve"):
        await FourPlatformInstance.open(store, bus, InstanceSettings(instance_id="half", rate=None))
    assert bus.listening() == 0
    for platform in PLATFORMS:
        with pytest.raises(NoRespondersError):
            await bus.request(op_subject("half", platform, "status"), b"{}", timeout=1.0)
    assert store.leases.held() == []
    assert store.instances.get("half").head_tick == 0  # created and left stored, to be opened again
    bus.refuse = ""
    again = await FourPlatformInstance.open(store, bus, InstanceSettings(instance_id="half", rate=None))
    await again.close()
    await bus.close()


@pytest.mark.anyio
async def test_a_world_handed_to_open_gives_up_its_lease_when_a_platform_fails(store: SqlStore) -> None:
    world = DurableWorld.create(store, 3, DEFAULT_WORLD, instance_id="given")
    bus = FaultyBus(refuse=op_subject("given", "surface", "status"))
    with pytest.raises(BusError):
        await FourPlatformInstance.open(store, bus, world=world)
    assert bus.listening() == 0
    assert store.leases.held() == []
    await bus.close()


@pytest.mark.anyio
async def test_a_second_open_of_a_running_world_is_refused_and_leaves_the_first_one_its_lease(
    store: SqlStore,
) -> None:
    bus = InMemoryBus()
    first = await FourPlatformInstance.open(store, bus, InstanceSettings(instance_id="once", rate=None))
    try:
        with pytest.raises(ConflictError, match="a runtime of once is already running on this bus"):
            await FourPlatformInstance.open(store, bus, InstanceSettings(instance_id="once", rate=None))
        assert store.leases.held() == ["once"]
        assert (await first.bridge.fetch_from_runtime("status"))["instance"] == "once"
    finally:
        await first.close()
        await bus.close()


@pytest.mark.anyio
async def test_an_instance_the_engine_cannot_start_is_left_stored_without_its_lease(store: SqlStore) -> None:
    DurableWorld.create(store, 5, DEFAULT_WORLD, instance_id="stuck")
    store.leases.release("stuck")
    bus = FaultyBus(refuse=op_subject("stuck", "protocol", "status"))
    engine = PuppetMasterEngine(store, bus, EngineSettings(instance=InstanceSettings(rate=None)))
    try:
        await engine.start()  # logs the failure and goes on
        assert engine.live == {}
        assert store.leases.held() == []
        assert bus.listening() == 0
        assert engine.describe("stuck")["state"] == "stored"
        with pytest.raises(NotFoundError):
            engine.describe("nobody")
    finally:
        await engine.close()
        await bus.close()
