"""``Ticker``: the waits between ticks of many worlds end together, from one timer per slot of its grid; a fast world
waits to its own deadline; a wait can be ended early. A loop whose clock stands still and whose timers are only
recorded makes the slots exact."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from soulfra.platforms.ticker import COARSEST, Ticker

GRID = 0.02


class StillLoop:
    """The parts of a loop a ticker uses: a clock at ``now``, timers recorded (fired by the test), real futures."""

    def __init__(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        self.now = now
        self.timers: list[tuple[float, Callable[..., Any], tuple[Any, ...]]] = []
        self._loop = loop

    def time(self) -> float:
        return self.now

    def create_future(self) -> asyncio.Future[Any]:
        return self._loop.create_future()

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> None:
        self.timers.append((when, callback, args))

    def fire(self, index: int) -> None:
        _, callback, args = self.timers[index]
        callback(*args)


@pytest.fixture
async def still() -> StillLoop:
    return StillLoop(asyncio.get_running_loop(), now=100.0)


def test_an_instance_per_loop() -> None:
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        assert Ticker.of(first) is Ticker.of(first)
        assert Ticker.of(first) is not Ticker.of(second)
    finally:
        first.close()
        second.close()


@pytest.mark.anyio
async def test_waits_ending_in_one_slot_share_its_timer_and_end_together(still: StillLoop) -> None:
    ticker = Ticker(still, GRID)  # type: ignore[arg-type]
    period = 1.0
    early, late = ticker.wait(0.001, period), ticker.wait(0.019, period)  # both in the slot ending at 100.02
    later = ticker.wait(0.021, period)  # in the next slot
    assert [round(when, 6) for when, _, _ in still.timers] == [100.02, 100.04]
    still.fire(0)
    assert early.done() and late.done()
    assert not later.done()
    still.fire(1)
    assert later.done()


@pytest.mark.anyio
async def test_a_world_faster_than_the_grid_allows_waits_to_its_own_deadline(still: StillLoop) -> None:
    ticker = Ticker(still, GRID)  # type: ignore[arg-type]
    fast = ticker.wait(0.003, COARSEST * GRID / 2)
    assert [round(when, 6) for when, _, _ in still.timers] == [100.003]
    still.fire(0)
    assert fast.done()


@pytest.mark.anyio
async def test_a_wait_ended_early_is_left_behind_by_its_slot(still: StillLoop) -> None:
    ticker = Ticker(still, GRID)  # type: ignore[arg-type]
    woken, other = ticker.wait(0.005, 1.0), ticker.wait(0.006, 1.0)
    Ticker.wake(woken)
    Ticker.wake(woken)
    Ticker.wake(None)
    assert woken.done() and not other.done()
    still.fire(0)
    assert other.done()
