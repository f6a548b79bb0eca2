"""Fixtures the unit tests share (helpers that are not fixtures are in ``support`` and ``meta_engine_support``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from soulfra.bus import InMemoryBus
from soulfra.bus.port import Bus
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.platforms.instance import InstanceSettings
from soulfra.store import InMemoryStore

from .meta_engine_support import OpenEngine


@pytest.fixture
async def memory_bus() -> AsyncIterator[InMemoryBus]:
    """An in-memory bus of the test's own, closed afterwards."""
    shared = InMemoryBus()
    try:
        yield shared
    finally:
        await shared.close()


@pytest.fixture
async def open_engine(anyio_backend: str) -> AsyncIterator[OpenEngine]:
    """Engines over their own in-memory store and bus (rate None unless told); all closed after the test."""
    opened: list[tuple[PuppetMasterEngine, Bus, InMemoryStore]] = []

    def factory(settings: EngineSettings | None = None, bus: Bus | None = None) -> PuppetMasterEngine:
        store = InMemoryStore()
        bus = bus or InMemoryBus()
        engine = PuppetMasterEngine(store, bus, settings or EngineSettings(instance=InstanceSettings(rate=None)))
        opened.append((engine, bus, store))
        return engine

    yield factory
    for engine, bus, store in reversed(opened):
        try:
            await engine.close()
        finally:
            await bus.close()
            store.close()


@pytest.fixture
def engine(open_engine: OpenEngine) -> PuppetMasterEngine:
    return open_engine()
