"""AgentZeroEngine: the executor. It takes tasks, works them to completion and produces artifacts.

Invited to a gathering ritual, it joins with a chance given by its ``warmth``. Otherwise it works the task it
holds or claims the oldest unclaimed one; each unit of work advances a task by an amount set by its ``focus``.
With nothing to do it reports on its work, or rests when tired.
"""

from __future__ import annotations

from typing import ClassVar

from soulfra.world.actions import REST, Action, JoinRitual, Post, Work
from soulfra.world.minds.base import Mind, View
from soulfra.world.minds.voice import compose
from soulfra.world.model import WARMTH
from soulfra.world.rng import Stream


class AgentZeroEngine(Mind):
    key: ClassVar[str] = "executor"
    activity: ClassVar[int] = 400_000

    def choose(self, view: View, agent: int, rng: Stream) -> Action:
        state = view.state
        invitations = view.invitations(agent)
        if invitations and rng.chance(300_000 + int(state.traits[agent, WARMTH]) // 2):
            return JoinRitual(ritual=invitations[0].id)
        task = view.task_for(agent)
        if task is not None:
            return Work(task=task.id)
        if state.energy[agent] < 300_000:
            return REST
        topic = "the archive" if rng.chance(400_000) else view.topic_for(agent, rng)
        return Post(topic=topic, text=compose(state.specs[agent].voice, topic, int(state.valence[agent]), rng))
