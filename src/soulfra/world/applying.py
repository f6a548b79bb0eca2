"""How a world takes its inputs: ``InputHandling`` is the part of ``World`` that checks an input and applies it at
the start of a tick (whispers, possession, operator acts, interventions, cross-posts, recorded mind replies).

An input that cannot be applied is never an error of the tick: it becomes an ``InputRejected`` event with the reason,
so a replay meets the same rejection at the same point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from soulfra.errors import UnknownAgentError
from soulfra.world.actions import (
    Action,
    AssignTask,
    Bless,
    JoinRitual,
    Post,
    ProposeRitual,
    Refuse,
    Rest,
    Work,
)
from soulfra.world.daemons import RitualEngine, ThreadWeaver
from soulfra.world.dispatch import unhandled
from soulfra.world.events import (
    AgentPossessed,
    AgentReleased,
    Event,
    InputRejected,
    OperatorActed,
    PersonalityChanged,
    RitualInjected,
    VibeAltered,
    WhisperHeard,
)
from soulfra.world.fixed import SCALE
from soulfra.world.inputs import (
    ACTIONS,
    ALL,
    Act,
    AlterVibe,
    ChangePersonality,
    CrossPost,
    InjectRitual,
    Input,
    Mark,
    MindReply,
    Possess,
    Release,
    Whisper,
)
from soulfra.world.minds.voice import whisper_topic
from soulfra.world.model import TRAITS, VibeOverride, WorldState

__all__ = ["TONE_MOOD", "InputHandling"]

TONE_MOOD = {
    "gentle": (40_000, -40_000),
    "urgent": (0, 120_000),
    "playful": (60_000, 60_000),
    "solemn": (0, -60_000),
    "dark": (-80_000, 20_000),
}


class InputHandling:
    """The input side of ``World``, which sets these attributes and carries out actions (``_act``)."""

    state: WorldState
    _language: frozenset[int]
    _replies: dict[int, MindReply]
    _weaver: ThreadWeaver
    _rituals: RitualEngine

    if TYPE_CHECKING:

        def _act(self, agent: int, action: Action, events: list[Event], *, operator: bool) -> str | None: ...

    def check(self, item: Input) -> None:
        """Raise ``UnknownAgentError`` if ``item`` names an agent this world does not have (``TypeError`` if ``item``
        is of no input type at all)."""
        index = self.state.index
        names: list[str]
        match item:
            case Whisper():
                names = [] if item.target == ALL else [item.target]
            case Possess() | Release() | ChangePersonality() | MindReply():
                names = [item.agent]
            case Act():
                names = [item.agent, *item.participants]
            case InjectRitual():
                names = list(item.participants)
            case AlterVibe() | CrossPost() | Mark():
                names = []  # a linked instance's agent (CrossPost.origin) is not one of this world's
            case _:
                unhandled(item, "input")
        for name in names:
            if name not in index:
                raise UnknownAgentError(f"input at tick {item.tick} names unknown agent {name!r}")

    def _apply_input(self, item: Input, events: list[Event], forced: set[int]) -> None:
        state = self.state
        tick = state.tick
        try:
            self.check(item)
        except UnknownAgentError as exc:
            events.append(InputRejected(tick=tick, input=item.type, reason=exc.detail))
            return
        index = state.index
        reason: str | None = None
        match item:
            case Whisper():
                self._whisper(item, events, forced)
            case Possess():
                reason = self._possess(item, events)
            case Release():
                reason = self._release(item, events)
            case Act():
                reason = self._operator_act(item, events)
            case ChangePersonality():
                agent = index[item.agent]
                for name, value in item.traits:
                    state.traits[agent, TRAITS.index(name)] = value
                events.append(PersonalityChanged(tick=tick, agent=item.agent, traits=item.traits))
            case InjectRitual():
                members = tuple(dict.fromkeys(index[name] for name in item.participants))
                if len(members) < 2:
                    reason = "an injected ritual needs two different participants"
                else:
                    ritual = self._rituals.inject(state, item.name, members, blessed=item.blessed)
                    events.append(RitualInjected(tick=tick, ritual=ritual.id, name=item.name))
            case AlterVibe():
                until = tick + item.duration
                state.vibe_override = VibeOverride(condition=item.condition, intensity=item.intensity, until=until)
                events.append(VibeAltered(tick=tick, condition=item.condition, intensity=item.intensity, until=until))
            case CrossPost():
                if not self._weaver.visit(state, item.origin, item.thread, item.text, events):
                    reason = f"thread {item.thread} is not open"
            case Mark():
                pass  # a note in the history; a world is the same with or without it
            case MindReply():
                reason = self._take_reply(item)
            case _:
                unhandled(item, "input")
        if reason is not None:
            events.append(InputRejected(tick=tick, input=item.type, reason=reason))

    def _take_reply(self, item: MindReply) -> str | None:
        """Hold a recorded reply for its agent's turn this tick; why not, if the agent is not waiting for one."""
        agent = self.state.index[item.agent]
        if agent not in self._language:
            return f"{item.agent} has no language mind"
        if self.state.thinking.get(agent) != self.state.tick:
            return f"{item.agent} is not due to decide at tick {self.state.tick}"
        if agent in self._replies:
            return f"{item.agent} already has a reply for tick {self.state.tick}"
        self._replies[agent] = item
        return None

    def _possess(self, item: Possess, events: list[Event]) -> str | None:
        state = self.state
        agent = state.index[item.agent]
        if agent in state.possessed:
            return f"{item.agent} is already possessed by {state.possessed[agent]}"
        state.possessed[agent] = item.operator
        events.append(AgentPossessed(tick=state.tick, agent=item.agent, operator=item.operator))
        return None

    def _release(self, item: Release, events: list[Event]) -> str | None:
        state = self.state
        operator = state.possessed.pop(state.index[item.agent], None)
        if operator is None:
            return f"{item.agent} is not possessed"
        events.append(AgentReleased(tick=state.tick, agent=item.agent, operator=operator))
        return None

    def _whisper(self, item: Whisper, events: list[Event], forced: set[int]) -> None:
        state = self.state
        dv, da = TONE_MOOD[item.tone]
        heard = (state.tick, item.text, item.tone)
        if item.target == ALL:
            state.valence[:] = np.clip(state.valence + dv, -SCALE, SCALE)
            state.arousal[:] = np.clip(state.arousal + da, 0, SCALE)
            for agent in range(state.size):
                state.whispers[agent] = heard
        else:
            agent = state.index[item.target]
            state.valence[agent] = min(SCALE, max(-SCALE, int(state.valence[agent]) + dv))
            state.arousal[agent] = min(SCALE, max(0, int(state.arousal[agent]) + da))
            state.whispers[agent] = heard
            forced.add(agent)
        events.append(WhisperHeard(tick=state.tick, agent=item.target, text=item.text, tone=item.tone))

    def _operator_act(self, item: Act, events: list[Event]) -> str | None:
        state = self.state
        agent = state.index[item.agent]
        if agent not in state.possessed:
            return f"{item.agent} is not possessed; possess it before acting through it"
        action: Action
        match item.action:
            case "post":
                topic = item.topic or whisper_topic(item.text)
                action = Post(topic=topic, text=item.text or "...")
            case "propose_ritual":
                invited = tuple(dict.fromkeys((agent, *(state.index[p] for p in item.participants))))
                action = ProposeRitual(name=item.name or "operator rite", invited=invited)
            case "join_ritual":
                action = JoinRitual(ritual=item.ritual)
            case "bless":
                action = Bless(ritual=item.ritual)
            case "refuse":
                action = Refuse(ritual=item.ritual, reason=item.text or "refused by the operator")
            case "assign_task":
                action = AssignTask(goal=item.goal or "an operator's errand")
            case "work":
                action = Work(task=item.task)
            case "rest":
                action = Rest()
            case _:  # parse_input admits only ACTIONS: no logged input gets here, and no other is taken for a rest
                return f"unknown action {item.action!r}; expected one of {', '.join(ACTIONS)}"
        reason = self._act(agent, action, events, operator=True)
        if reason is None:
            events.append(OperatorActed(tick=state.tick, agent=item.agent, action=item.action))
        return reason
