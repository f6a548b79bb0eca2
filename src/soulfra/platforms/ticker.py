"""``Ticker``: one timer for the waits of every world's tick loop on an event loop.

A runtime that ticks at a rate waits between its ticks. Waiting alone (``asyncio.wait_for`` on an event: a task, a
timer and two futures per world per tick) made a process of 500 worlds at one tick a second wake 500 separate
times a second, each wake a loop iteration, a socket write and a read of its own. The ticker rounds a wait's end up
to a grid of ``GRID_S``, so the worlds due within one slot of the grid wake together, from one timer, and what
their ticks publish leaves in one write. A world wakes at most ``GRID_S`` late, and only a world whose period is
``COARSEST`` grids or longer is rounded (a faster one waits to its own deadline); its schedule stays the runtime's
(each tick is due a period after the last one was due), so its rate does not change.

Must not: decide when a world ticks (the runtime does), or hold a world: a waiter ended early is left behind.
"""

from __future__ import annotations

import asyncio
import math
import weakref

__all__ = ["COARSEST", "GRID_S", "Ticker"]

GRID_S = 0.02  # the grid waits end on (s)
COARSEST = 20  # a wait is rounded only for a period of at least this many grids (so by at most 1/20 of it)

_TICKERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Ticker] = weakref.WeakKeyDictionary()


class Ticker:
    """The waits of the tick loops on one event loop (``Ticker.of``): each ``wait`` is a future, done by the timer
    of its slot, or earlier by whoever holds it (``wake``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, grid_s: float = GRID_S) -> None:
        self._loop = loop
        self._grid = grid_s
        self._slots: dict[int, list[asyncio.Future[None]]] = {}

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Ticker:
        """The ticker of ``loop`` (made on first use; it goes with the loop)."""
        ticker = _TICKERS.get(loop)
        if ticker is None:
            ticker = _TICKERS[loop] = cls(loop)
        return ticker

    def wait(self, delay_s: float, period_s: float) -> asyncio.Future[None]:
        """A future done ``delay_s`` from now, at the end of the grid slot it falls in when ``period_s`` is at least
        ``COARSEST`` grids (else at its own time)."""
        waiter: asyncio.Future[None] = self._loop.create_future()
        at = self._loop.time() + delay_s
        if period_s < COARSEST * self._grid:
            self._loop.call_at(at, _done, waiter)
            return waiter
        slot = math.ceil(at / self._grid)
        due = self._slots.get(slot)
        if due is None:
            due = self._slots[slot] = []
            self._loop.call_at(slot * self._grid, self._fire, slot)
        due.append(waiter)
        return waiter

    @staticmethod
    def wake(waiter: asyncio.Future[None] | None) -> None:
        """End a wait now (nothing if it has ended already, or there is none)."""
        if waiter is not None:
            _done(waiter)

    def _fire(self, slot: int) -> None:
        for waiter in self._slots.pop(slot, ()):
            _done(waiter)


def _done(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
