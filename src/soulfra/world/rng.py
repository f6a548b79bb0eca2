"""Counter-based randomness: SplitMix64 keyed by (seed, tick, agent, purpose).

Every draw is a pure function of its key, so results never depend on the order agents are visited in, on a
library version, or on how many draws happened before. ``draws`` computes the same values as ``draw`` for a whole
array of agents at once (numpy ``uint64`` arithmetic wraps modulo 2**64 on every platform).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import numpy.typing as npt

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB

U64Array = npt.NDArray[np.uint64]

# The array arithmetic's constants as numpy scalars, made once: a scalar made per call costs a small world's tick
_S27, _S30, _S31 = np.uint64(27), np.uint64(30), np.uint64(31)
_M1_U, _M2_U, _GOLDEN_U = np.uint64(_M1), np.uint64(_M2), np.uint64(GOLDEN)


class Purpose(IntEnum):
    """What a draw is for; each purpose is an independent stream."""

    GENESIS = 1
    MOOD_VALENCE = 2
    MOOD_AROUSAL = 3
    ACTIVATE = 4
    DECIDE = 5
    CONTAGION_PICK = 6
    CONTAGION_NOISE = 7
    RITUAL = 8


def mix64(z: int) -> int:
    """The SplitMix64 finaliser on a Python int (taken modulo 2**64)."""
    z &= MASK
    z = ((z ^ (z >> 30)) * _M1) & MASK
    z = ((z ^ (z >> 27)) * _M2) & MASK
    return z ^ (z >> 31)


def mix64_array(z: U64Array) -> U64Array:
    """``mix64`` applied elementwise; returns a new array."""
    z = z ^ (z >> _S30)
    z *= _M1_U
    z ^= z >> _S27
    z *= _M2_U
    z ^= z >> _S31
    return z


def tick_key(seed: int, tick: int, purpose: int) -> int:
    """The key shared by every agent's draw for one (seed, tick, purpose)."""
    return mix64(mix64(seed ^ ((purpose * GOLDEN) & MASK)) + tick * GOLDEN)


def draw(seed: int, tick: int, agent: int, purpose: int, counter: int = 0) -> int:
    """One uniform 64-bit value for the key (seed, tick, agent, purpose, counter)."""
    return mix64(tick_key(seed, tick, purpose) + (agent + 1) * GOLDEN + counter * _M2)


def draws(seed: int, tick: int, agents: U64Array, purpose: int, counter: int = 0) -> U64Array:
    """``draw`` for every agent index in ``agents`` at once."""
    return draws_spread(seed, tick, spread(agents), purpose, counter)


def spread(agents: npt.NDArray[np.integer]) -> U64Array:
    """Each agent's part of its draws' keys, as ``draws_spread`` and ``draw_rows`` take them: a caller that draws for
    the same agents at every tick makes it once."""
    return agents.astype(np.uint64, copy=False) * _GOLDEN_U  # (an int64 array times a uint64 would give floats)


def draws_spread(seed: int, tick: int, spread_agents: U64Array, purpose: int, counter: int = 0) -> U64Array:
    """``draws(seed, tick, agents, purpose, counter)``, where ``spread_agents`` is ``spread(agents)``."""
    return mix64_array(spread_agents + np.uint64(_key_base(seed, tick, purpose, counter)))


def draw_rows(seed: int, tick: int, spread_agents: U64Array, purposes: tuple[int, ...]) -> U64Array:
    """``draws`` for several purposes at once: row ``i`` is ``draws(seed, tick, agents, purposes[i])``, where
    ``spread_agents`` is ``spread(agents)``. One pass of the mixing over every row costs a small world much less than
    a pass for each purpose (each array operation has a fixed cost whatever its size)."""
    bases = np.array([_key_base(seed, tick, purpose) for purpose in purposes], dtype=np.uint64)
    return mix64_array(spread_agents + bases[:, None])


def _key_base(seed: int, tick: int, purpose: int, counter: int = 0) -> int:
    """What every agent's draw key for (seed, tick, purpose, counter) adds to the agent's ``spread`` part: ``draw``'s
    key, ``tick_key + (agent + 1) * GOLDEN + counter * _M2``, less ``agent * GOLDEN``."""
    return (tick_key(seed, tick, purpose) + GOLDEN + counter * _M2) & MASK


def below(value: int, n: int) -> int:
    """Map a 64-bit draw onto ``range(n)`` (Lemire's multiply-shift, no modulo bias worth naming)."""
    return (value * n) >> 64


def below_each(values: U64Array, n: int) -> U64Array:
    """``below`` of every value at once, exactly: the 128-bit product is taken in 32-bit halves (``n < 2**32``)."""
    if not 0 < n < 1 << 32:
        raise ValueError(f"below_each takes 0 < n < 2**32, not {n}")
    width, half = np.uint64(n), np.uint64(32)
    # floor(v * n / 2**64) with v = high * 2**32 + low; no partial sum reaches 2**64 for n < 2**32
    return ((values >> half) * width + (((values & np.uint64(0xFFFFFFFF)) * width) >> half)) >> half


def below_array(values: U64Array, n: int) -> npt.NDArray[np.int64]:
    """``values % n`` as int64; used where 128-bit products are unavailable. Bias is below n / 2**64."""
    return (values % np.uint64(n)).astype(np.int64)


def signed_noise(values: U64Array, amplitude: int) -> npt.NDArray[np.int64]:
    """Uniform integers in ``[-amplitude, amplitude]``."""
    return below_array(values, 2 * amplitude + 1) - amplitude


class Stream:
    """Successive draws for one agent's decision at one tick: ``next()`` bumps a counter in the key."""

    __slots__ = ("_counter", "_key")

    def __init__(self, seed: int, tick: int, agent: int, purpose: int = Purpose.DECIDE) -> None:
        self._key = tick_key(seed, tick, purpose) + (agent + 1) * GOLDEN
        self._counter = 0

    @classmethod
    def for_agent(cls, key: int, agent: int) -> Stream:
        """``Stream(seed, tick, agent, purpose)`` from ``key = tick_key(seed, tick, purpose)``, which a tick
        computes once for all its agents rather than once for each."""
        stream = cls.__new__(cls)
        stream._key = key + (agent + 1) * GOLDEN
        stream._counter = 0
        return stream

    def next(self) -> int:
        value = mix64(self._key + self._counter * _M2)
        self._counter += 1
        return value

    def below(self, n: int) -> int:
        # ``below(self.next(), n)`` with ``mix64`` written out: minds draw often, and each call costs
        z = (self._key + self._counter * _M2) & MASK
        self._counter += 1
        z = ((z ^ (z >> 30)) * _M1) & MASK
        z = ((z ^ (z >> 27)) * _M2) & MASK
        return ((z ^ (z >> 31)) * n) >> 64

    def chance(self, per_million: int) -> bool:
        """True with probability ``per_million / 1_000_000``: ``self.below(1_000_000) < per_million``, written out."""
        z = (self._key + self._counter * _M2) & MASK
        self._counter += 1
        z = ((z ^ (z >> 30)) * _M1) & MASK
        z = ((z ^ (z >> 27)) * _M2) & MASK
        return ((z ^ (z >> 31)) * 1_000_000) >> 64 < per_million

    def choice(self, items: tuple[str, ...]) -> str:
        return items[self.below(len(items))]
