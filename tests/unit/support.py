"""Helpers the unit tests share: waiting, with a deadline, for a condition of a running engine or platform."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

import pytest

DEADLINE_S = 10.0


async def wait_until(
    what: str, check: Callable[[], bool] | Callable[[], Awaitable[bool]], deadline_s: float = DEADLINE_S
) -> None:
    """Poll ``check`` (plain or async) until it holds; fail with ``what`` when the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while True:
        held = check()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {deadline_s} s waiting until {what}")
        await asyncio.sleep(0.005)
