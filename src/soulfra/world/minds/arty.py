"""ArtyOrchestrator: the orchestrator. It weaves threads, proposes rituals and hands out work.

``warmth`` and ``curiosity`` drive how often it proposes rituals (twice as often when the loop intends to
celebrate); ``order`` drives how often it assigns tasks; otherwise it weaves two threads that share voices, or
opens and feeds threads on the loop's themes.
"""

from __future__ import annotations

from typing import ClassVar

from soulfra.world.actions import Action, AssignTask, Post, ProposeRitual, Weave
from soulfra.world.minds.base import Mind, View
from soulfra.world.minds.voice import RITUAL_NAMES, compose
from soulfra.world.model import CURIOSITY, ORDER, WARMTH
from soulfra.world.rng import Stream


def invite(view: View, agent: int, rng: Stream, count: int) -> tuple[int, ...]:
    """The proposer plus up to ``count`` others: those it holds most dear first, then strangers by chance."""
    state = view.state
    row = state.affinity.get(agent, {})
    chosen = [agent]
    for other, _ in sorted(row.items(), key=lambda item: (-item[1], item[0]))[:count]:
        chosen.append(other)
    for _ in range(count * 3):
        if len(chosen) > count:
            break
        other = rng.below(state.size)
        if other not in chosen:
            chosen.append(other)
    return tuple(chosen)


class ArtyOrchestrator(Mind):
    key: ClassVar[str] = "orchestrator"
    activity: ClassVar[int] = 500_000

    def choose(self, view: View, agent: int, rng: Stream) -> Action:
        state = view.state
        traits = state.traits[agent]
        propose = (int(traits[WARMTH]) + int(traits[CURIOSITY])) // 8
        if "celebrate" in state.loop.intentions:
            propose *= 2
        if state.size > 1 and view.has_room("ritual") and rng.chance(propose):
            name = RITUAL_NAMES[rng.below(len(RITUAL_NAMES))]
            return ProposeRitual(name=name, invited=invite(view, agent, rng, 2 + rng.below(3)))
        if view.has_room("task") and rng.chance(int(traits[ORDER]) // 5):
            return AssignTask(goal=f"chart {view.topic_for(agent, rng)}")
        pair = view.weavable()
        if pair is not None and rng.chance(300_000):
            return Weave(thread=pair[0], into=pair[1])
        topic = view.topic_for(agent, rng)
        return Post(topic=topic, text=compose(state.specs[agent].voice, topic, int(state.valence[agent]), rng))
