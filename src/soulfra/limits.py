"""The bounds of a world's pace and size, one rule per value for every way in: ``soulfra run``, ``up``, ``serve``,
``cluster local``, ``instance create`` and ``POST /api/instances`` refuse the same values alike. Standard library
only, so the command line loads it without the runtime."""

from __future__ import annotations

__all__ = ["MAX_GENERATED_AGENTS", "MAX_RATE", "MIN_RATE", "RATE_RULE", "rate_problem"]

MAX_GENERATED_AGENTS = 100_000  # generated agents beside a world file's own
MIN_RATE = 0.001  # ticks a second: one tick every 1,000 seconds
MAX_RATE = 1e9  # one tick a nanosecond, the clock's resolution (also what keeps the tick period a finite int)
RATE_RULE = f"0 (as fast as it goes) or {MIN_RATE} to {MAX_RATE:g} ticks a second"


def rate_problem(rate: float) -> str | None:
    """Why ``rate`` (ticks a second, 0 for as fast as it goes) is refused, or None when it is taken."""
    if rate == 0 or MIN_RATE <= rate <= MAX_RATE:  # NaN fails both
        return None
    return f"a rate is {RATE_RULE}, not {rate:g}"
