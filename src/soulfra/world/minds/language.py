"""Language minds: agents whose decisions come from a language model's replies, recorded as inputs.

The world never calls a model. A language agent (``AgentSpec.model`` set; its ``mind`` is the built-in mind it
falls back to) is drawn to act like any other agent; when it is, it starts *thinking* instead of acting: the state
records that its reply is due ``THINK_TICKS`` ticks later. The runtime sees the new thinker after the tick, asks
the model (outside the core) and submits the answer as a ``MindReply`` input stamped for the due tick. At the due
tick the agent acts on the recorded decision; with none (the reply did not parse, the call failed, or no reply was
recorded by then) it decides with its built-in mind, and a ``MindDecided`` event says which and why.

Why a fixed lead and not "whenever the reply arrives": the tick a decision lands at must be a function of the
state, or a replay could not tell a late reply from a missing one. With the due tick in the state, every tick of a
language world is a function of (seed, state, input log) like any other: a reply logged for the due tick is used,
anything else at that tick is a fallback, decided the same way in the run and in every replay, fork and import. The
runtime gets ``THINK_TICKS`` ticks (and, if it chooses, a bounded wait at the due tick) to get the answer in; a
reply that comes later is not logged, and the fallback already taken stands. A fork keeps the replies logged before
its fork tick; thoughts still pending at the fork are asked again by the fork's runtime, into its own log, and so
are the thoughts a merge keeps (``soulfra.meta.merge``), into the merged world's log.
"""

from __future__ import annotations

from soulfra.world.actions import (
    REST,
    Action,
    AssignTask,
    Bless,
    JoinRitual,
    Post,
    ProposeRitual,
    Refuse,
    Work,
)
from soulfra.world.inputs import Decision
from soulfra.world.minds.voice import whisper_topic
from soulfra.world.model import WorldState

THINK_TICKS = 2  # a language agent drawn to act at tick t acts at t + THINK_TICKS, on its recorded reply if any


def think(state: WorldState, language: frozenset[int], active: list[int]) -> tuple[list[int], frozenset[int]]:
    """Language agents drawn to act start thinking (their reply is due ``THINK_TICKS`` on) instead; those whose
    reply is due now act, unless possessed meanwhile. Returns the agents that act, and which of them are due."""
    tick = state.tick
    thinking = state.thinking
    due = [agent for agent, at in thinking.items() if at <= tick]
    for agent in due:
        del thinking[agent]
    for agent in active:
        if agent in language and agent not in thinking and agent not in due:
            thinking[agent] = tick + THINK_TICKS
    ready = frozenset(agent for agent in due if agent not in state.possessed)
    return sorted((*(agent for agent in active if agent not in language), *ready)), ready


def decision_action(state: WorldState, agent: int, decision: Decision) -> Action | str:
    """The action a recorded decision asks of ``agent``, or why the world cannot take it as one."""
    match decision.action:
        case "post":
            text = decision.text or "..."
            return Post(topic=decision.topic or whisper_topic(text), text=text)
        case "reply":
            thread = state.threads.get(decision.thread)
            if thread is None:
                return f"thread {decision.thread} is not open"
            return Post(topic=thread.topic, text=decision.text or "...", thread=thread.id)
        case "propose_ritual":
            unknown = [name for name in decision.participants if name not in state.index]
            if unknown:
                return f"no agent {unknown[0]!r} to invite"
            invited = tuple(dict.fromkeys((agent, *(state.index[name] for name in decision.participants))))
            if len(invited) < 2:
                return "a ritual needs someone else to invite"
            return ProposeRitual(name=decision.name or "an unnamed rite", invited=invited)
        case "join_ritual":
            return JoinRitual(ritual=decision.ritual)
        case "bless":
            return Bless(ritual=decision.ritual)
        case "refuse":
            return Refuse(ritual=decision.ritual, reason=decision.text or "refused")
        case "assign_task":
            return AssignTask(goal=decision.goal or decision.text or "an errand")
        case "take_task":
            return Work(task=decision.task)
        case "rest":
            return REST
        case _:  # parse_decision admits only DECISIONS
            return f"unknown decision {decision.action!r}"
