"""CalRivenAgent: the governor. It validates and blesses or refuses rituals, and guards trust.

Its judgement weighs a ritual's intensity against its own ``order`` (more order, less tolerance for wild rites),
the spread of the participants' moods, and the trust it holds toward them; its ``warmth`` makes it more lenient.
It always refuses a ritual whose participants include a possessed agent: an outside will must not be blessed.
When nothing waits for judgement it comments on trust, in proportion to its ``order``.
"""

from __future__ import annotations

from typing import ClassVar

from soulfra.world.actions import REST, Action, Bless, Post, Refuse
from soulfra.world.fixed import SCALE
from soulfra.world.minds.base import Mind, View
from soulfra.world.minds.voice import compose
from soulfra.world.model import ORDER, WARMTH, Ritual
from soulfra.world.rng import Stream

TOLERANCE = 250_000


def judge(view: View, agent: int, ritual: Ritual) -> Action:
    """Bless or refuse ``ritual``: a pure function of the world as ``agent`` sees it."""
    state = view.state
    if any(p in state.possessed for p in ritual.joined):
        return Refuse(ritual=ritual.id, reason="a participant is possessed")
    order = int(state.traits[agent, ORDER])
    warmth = int(state.traits[agent, WARMTH])
    moods = [int(state.valence[p]) for p in ritual.joined]
    spread = max(moods) - min(moods)
    row = state.affinity.get(agent, {})
    trust = sum(row.get(p, 0) for p in ritual.joined) // len(ritual.joined)
    tolerance = TOLERANCE + warmth // 4 + (100_000 if "reconcile" in state.loop.intentions else 0)
    risk = ritual.intensity * order // SCALE + spread // 4 - trust // 2
    if risk <= tolerance:
        return Bless(ritual=ritual.id)
    if spread // 4 > ritual.intensity * order // SCALE:
        return Refuse(ritual=ritual.id, reason="participants are at odds")
    return Refuse(ritual=ritual.id, reason="too wild for the order it keeps")


class CalRivenAgent(Mind):
    key: ClassVar[str] = "governor"
    activity: ClassVar[int] = 450_000

    def choose(self, view: View, agent: int, rng: Stream) -> Action:
        waiting = view.awaiting_blessing()
        if waiting:
            return judge(view, agent, waiting[0])
        state = view.state
        if rng.chance(int(state.traits[agent, ORDER]) // 2):
            topic = "trust" if rng.chance(500_000) else view.topic_for(agent, rng)
            return Post(topic=topic, text=compose(state.specs[agent].voice, topic, int(state.valence[agent]), rng))
        return REST
