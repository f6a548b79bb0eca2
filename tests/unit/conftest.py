"""Fixtures the unit tests share (helpers that are not fixtures are in ``support``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from soulfra.bus import InMemoryBus


@pytest.fixture
async def memory_bus() -> AsyncIterator[InMemoryBus]:
    """An in-memory bus of the test's own, closed afterwards."""
    shared = InMemoryBus()
    try:
        yield shared
    finally:
        await shared.close()
