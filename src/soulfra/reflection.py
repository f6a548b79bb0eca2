"""The public reflection of a world's state: each agent's place in its loop (listening, reflecting, responding,
evolving), the current loop's phase and the open threads. Pure, deterministic functions of a ``WorldState``: no
clock, no random, no I/O; numbers that are fixed point in the world become floats here, for display only.
Used by the runtime platform's reads behind ``/api/agents/loop``, ``/api/loop/witness`` and ``/api/thread/state``.
"""

from __future__ import annotations

from typing import Any

from soulfra.projection import fixed_to_number
from soulfra.world.fixed import SCALE
from soulfra.world.model import Stage, WorldState

__all__ = [
    "LOOP_PHASES",
    "RECENT_ACTIONS",
    "RESPONDING_TICKS",
    "agent_loop_json",
    "agent_phase",
    "last_action",
    "loop_json",
    "loop_phase",
    "recent_actions",
    "threads_json",
]

LOOP_PHASES = ("listening", "reflecting", "responding", "evolving")
RECENT_ACTIONS = 8  # actions listed per agent: all an agent remembers (``MEMORY_LIMIT``)
RESPONDING_TICKS = 2  # an agent that acted within this many ticks is still responding
_IN_PROGRESS = frozenset({Stage.GATHERING, Stage.AWAITING, Stage.BLESSED})


def last_action(state: WorldState, agent: int) -> tuple[int, str] | None:
    """The tick and summary of the agent's latest action (its newest memory, ``"<tick>:<summary>"``), or None."""
    memory = state.memory.get(agent, ())
    if not memory:
        return None
    tick, _, summary = memory[-1].partition(":")
    return (int(tick), summary) if tick.isdigit() else None


def recent_actions(state: WorldState, agent: int, count: int = RECENT_ACTIONS) -> list[tuple[int, str]]:
    """The agent's latest ``count`` actions, newest first, as (tick, summary): its memories, one a completed action
    (resting leaves none), which the world keeps ``MEMORY_LIMIT`` of."""
    rows = []
    for memory in reversed(state.memory.get(agent, ())[-count:] if count > 0 else ()):
        tick, _, summary = memory.partition(":")
        if tick.isdigit():
            rows.append((int(tick), summary))
    return rows


def _changing(state: WorldState) -> set[int]:
    """Agents whose state is being changed by the world: joined to a ritual in progress, or holding a task."""
    members = {a for r in state.rituals.values() if r.stage in _IN_PROGRESS for a in r.joined}
    members.update(t.assignee for t in state.tasks.values() if t.assignee >= 0)
    return members


def agent_phase(state: WorldState, agent: int, changing: set[int] | None = None) -> str:
    """Where the agent is in its listening -> reflecting -> responding -> evolving loop, first rule that holds:

    - ``responding``: an operator possesses it (it only answers), or it acted within the last ``RESPONDING_TICKS``
      ticks (its newest memory is of tick ``state.tick - RESPONDING_TICKS`` or later);
    - ``reflecting``: a whisper is in its perception that it has not yet acted on;
    - ``evolving``: the world is changing it: it has joined a ritual still in progress (performing one moves moods
      and affinities) or holds a task;
    - ``listening``: otherwise (it perceives the world and waits for its turn).
    """
    if agent in state.possessed:
        return "responding"
    last = last_action(state, agent)
    if last is not None and last[0] >= state.tick - RESPONDING_TICKS:
        return "responding"
    if agent in state.whispers:
        return "reflecting"
    if agent in (_changing(state) if changing is None else changing):
        return "evolving"
    return "listening"


def _resonance(state: WorldState) -> float:
    """How alike the agents' moods are: 1 less the mean distance of valence from its mean (1: all alike)."""
    valence = state.valence
    mean = int(valence.sum()) // state.size
    spread = int(abs(valence - mean).sum()) // state.size
    return fixed_to_number(SCALE - spread)


def agent_loop_json(state: WorldState, offset: int = 0, limit: int = 100) -> dict[str, Any]:
    """Every agent's phase counted, and a page of agents with their phase, latest action and recent actions."""
    changing = _changing(state)
    phases = [agent_phase(state, i, changing) for i in range(state.size)]
    counts = dict.fromkeys(LOOP_PHASES, 0)
    for phase in phases:
        counts[phase] += 1
    rows = []
    for i in range(offset, min(state.size, offset + limit)):
        last = last_action(state, i)
        rows.append(
            {"id": state.specs[i].id, "name": state.specs[i].name, "phase": phases[i],
             "last_acted": None if last is None else last[0], "last_action": None if last is None else last[1],
             "possessed_by": state.possessed.get(i), "whisper": i in state.whispers,
             "valence": fixed_to_number(int(state.valence[i])), "energy": fixed_to_number(int(state.energy[i])),
             "recent": [{"tick": tick, "action": action} for tick, action in recent_actions(state, i)]}
        )  # fmt: skip
    return {
        "tick": state.tick,
        "population": state.size,
        "resonance": _resonance(state),
        "phases": counts,
        "offset": offset,
        "agents": rows,
    }


def loop_phase(state: WorldState) -> str:
    """The current loop's phase: the quarter of the loop it has reached (ticks since its start over its length)."""
    done = max(0, state.tick - state.loop.start)
    return LOOP_PHASES[min(3, done * 4 // max(1, state.loop_length))]


def loop_json(state: WorldState) -> dict[str, Any]:
    """The loop under way: its index, where it started and will end, its phase and what it has done so far."""
    loop = state.loop
    return {
        "tick": state.tick,
        "loop": loop.index,
        "start": loop.start,
        "length": state.loop_length,
        "end": loop.start + state.loop_length - 1,  # its last tick, as a loop seal says
        "phase": loop_phase(state),
        "themes": list(loop.themes),
        "intentions": list(loop.intentions),
        "posts": loop.posts,
        "performed": loop.performed,
        "refused": loop.refused,
        "artifacts": loop.artifacts,
    }


def threads_json(state: WorldState) -> dict[str, Any]:
    """The open threads, oldest first, each with how long it has been quiet (ticks run since its last post)."""
    ids = [spec.id for spec in state.specs]
    rows = []
    for thread in sorted(state.threads.values(), key=lambda t: t.id):
        recent = [
            {"tick": tick, "agent": ids[agent] if agent >= 0 else None, "text": text}
            for tick, agent, text in thread.recent
        ]
        rows.append(
            {"id": thread.id, "topic": thread.topic, "opened": thread.opened, "last_post": thread.last,
             "quiet": max(0, state.tick - 1 - thread.last), "posts": thread.posts,
             "participants": [ids[p] for p in thread.participants], "woven": list(thread.woven), "recent": recent}
        )  # fmt: skip
    return {"tick": state.tick, "open": len(rows), "threads": rows}
