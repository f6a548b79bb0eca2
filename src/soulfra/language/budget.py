"""What one instance may spend on its language minds: calls in flight at once, seconds per call, and calls and
tokens per minute. ``Limiter`` admits calls under those bounds, or gives up at a deadline (the call is skipped,
and its agent falls back): a world never waits on its model beyond its budget.

A call's tokens are known only when it returns, so a call reserves the most it may cost when it is admitted, and
is admitted only if the minute's tokens, the reservations of the calls in flight and its own fit in the budget:
the calls in flight at once cannot together carry a minute past it (as long as none costs more than it reserved).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from soulfra.errors import ConfigError

WINDOW = 60.0  # seconds: the per-minute budgets count calls and tokens over the last minute


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    max_in_flight: int = 8
    timeout: float = 10.0  # seconds a call may take, and how long the tick its reply is due at waits for it
    calls_per_minute: int = 600
    tokens_per_minute: int = 200_000

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ConfigError("max_in_flight must be at least 1")
        if not 0 < self.timeout <= 600:
            raise ConfigError("a call's timeout must be more than 0 and at most 600 seconds")
        if self.calls_per_minute < 1 or self.tokens_per_minute < 1:
            raise ConfigError("calls and tokens per minute must be at least 1")


class Limiter:
    """Admits one call at a time under a ``Budget``. ``admit`` then ``spent`` (always, once admitted)."""

    def __init__(self, budget: Budget, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self._clock = clock
        self._slots = asyncio.Semaphore(budget.max_in_flight)
        self._calls: deque[float] = deque()
        self._tokens: deque[tuple[float, int]] = deque()
        self._token_sum = 0
        self.reserved = 0  # the tokens the calls in flight reserved
        self._freed = asyncio.Event()  # set when a call ends (its reservation and slot go back)
        self.in_flight = 0

    async def admit(self, deadline: float, reserve: int = 0) -> bool:
        """Wait for a slot within the budget until ``deadline`` (the clock's seconds); False if none came.
        ``reserve``: the most tokens the call may cost, held from the minute's budget until ``spent``."""
        try:
            await asyncio.wait_for(self._slots.acquire(), max(0.0, deadline - self._clock()))
        except TimeoutError:
            return False
        try:
            while (wait := self._wait_needed(reserve)) > 0:
                left = deadline - self._clock()
                if wait <= left:
                    await asyncio.sleep(wait)  # until the minute's oldest calls or tokens age out
                    continue
                if self.reserved == 0:  # nothing in flight to give tokens back: it cannot fit in time
                    self._slots.release()
                    return False
                self._freed.clear()  # a call in flight may give back its reservation: wait for one to end
                try:
                    await asyncio.wait_for(self._freed.wait(), max(0.0, left))
                except TimeoutError:
                    self._slots.release()
                    return False
        except BaseException:  # cancelled while waiting for the minute's budget: the slot goes back
            self._slots.release()
            raise
        self._calls.append(self._clock())
        self.reserved += reserve
        self.in_flight += 1
        return True

    def spent(self, tokens: int, reserved: int = 0) -> None:
        """The admitted call is over, and cost ``tokens``; ``reserved``: what it reserved when admitted."""
        self.in_flight -= 1
        self.reserved -= reserved
        self._slots.release()
        if tokens > 0:
            self._tokens.append((self._clock(), tokens))
            self._token_sum += tokens
        self._freed.set()

    def _wait_needed(self, reserve: int) -> float:
        """Seconds until one more call (reserving ``reserve`` tokens) fits in the per-minute budgets as the minute
        ages (0: it fits now; ``math.inf``: only a call in flight giving back its reservation can make it fit)."""
        now = self._clock()
        while self._calls and self._calls[0] <= now - WINDOW:
            self._calls.popleft()
        while self._tokens and self._tokens[0][0] <= now - WINDOW:
            self._token_sum -= self._tokens.popleft()[1]
        wait = 0.0
        if len(self._calls) >= self.budget.calls_per_minute:
            wait = self._calls[0] + WINDOW - now
        over = self._token_sum + self.reserved + max(1, reserve) - self.budget.tokens_per_minute
        if over > 0:
            aged = 0  # the minute's tokens that must age out before the call fits (reservations aside)
            for at, tokens in self._tokens:
                aged += tokens
                if aged >= over:
                    wait = max(wait, at + WINDOW - now)
                    break
            else:
                wait = math.inf
        return wait
