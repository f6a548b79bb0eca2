"""MoodContagion: a mind with no voice. Each tick every one of its agents moves its valence a tenth of the way
toward a random other agent's valence, plus small noise (the rule ``soulfra bench tick`` compares with Mesa).
It never acts on its own; whispers and possession still reach it through the shared machinery.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from soulfra.world.actions import REST, Action
from soulfra.world.fixed import SCALE
from soulfra.world.minds.base import Mind, View
from soulfra.world.model import I64Array, WorldState
from soulfra.world.rng import Purpose, Stream, below_array, draws, signed_noise

NOISE = 5_000


class MoodContagion(Mind):
    key: ClassVar[str] = "contagion"
    activity: ClassVar[int] = 0

    def bulk(self, state: WorldState, members: I64Array) -> None:
        if members.size == 0 or state.size < 2:
            return
        keys = members.astype(np.uint64)
        other = below_array(draws(state.seed, state.tick, keys, Purpose.CONTAGION_PICK), state.size - 1)
        other += other >= members  # skip self: a uniform pick among the other agents
        mine = state.valence[members]
        noise = signed_noise(draws(state.seed, state.tick, keys, Purpose.CONTAGION_NOISE), NOISE)
        state.valence[members] = np.clip(mine + (state.valence[other] - mine) // 10 + noise, -SCALE, SCALE)

    def choose(self, view: View, agent: int, rng: Stream) -> Action:
        return REST
