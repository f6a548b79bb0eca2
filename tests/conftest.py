"""Fixtures every layer of the tests shares."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, as Soulfra does."""
    return "asyncio"
