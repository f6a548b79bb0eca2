"""Fixtures the unit tests share (helpers that are not fixtures are in ``support``, ``meta_engine_support`` and
``platforms_support``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from soulfra.bus import InMemoryBus
from soulfra.bus.port import Bus
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.platforms.instance import FourPlatformInstance, InstanceSettings
from soulfra.store import InMemoryStore
from soulfra.store.ports import Store

from .meta_engine_support import OpenEngine
from .platforms_support import Running


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


@pytest.fixture
def store() -> Iterator[InMemoryStore]:
    opened = InMemoryStore()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
async def make(store: Store, anyio_backend: str) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    made: list[tuple[FourPlatformInstance, InMemoryBus]] = []

    async def factory(**settings: Any) -> Running:
        bus = InMemoryBus()
        settings.setdefault("rate", None)
        settings.setdefault("instance_id", f"unit-{len(made)}")
        instance = await FourPlatformInstance.open(store, bus, InstanceSettings(**settings))
        made.append((instance, bus))
        return Running(instance)

    yield factory
    for instance, bus in made:
        await instance.close()
        await bus.close()
