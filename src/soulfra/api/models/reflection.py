"""Response models of the public reflection paths of the original Soulfra (``soulfra.api.reflection``): each
agent's phase in its loop, the ritual log, the open threads, the loop witness and the system's health. The mirror's
anomalies and unified snapshots keep the models of their ``/api/instances/{id}/...`` routes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from soulfra.api.models.base import Closed, Open
from soulfra.api.models.surface import LoopSeed, Trace

__all__ = [
    "AgentAction",
    "AgentLoop",
    "AgentPhase",
    "CurrentLoop",
    "LoopSeal",
    "LoopWitness",
    "PhaseCounts",
    "RitualLog",
    "SystemHealth",
    "ThreadPost",
    "ThreadRow",
    "ThreadState",
]

Phase = Literal["listening", "reflecting", "responding", "evolving"]


class PhaseCounts(Closed):
    listening: int
    reflecting: int
    responding: int
    evolving: int


class AgentAction(Closed):
    """One completed action of an agent, from its memory."""

    tick: int
    action: str = Field(
        description="What it did: post:<topic>, ritual:<id> (proposed), or the action's name (bless...)"
    )


class AgentPhase(Closed):
    """One agent's place in its loop, with what it did last (its newest memory)."""

    id: str
    name: str
    phase: Phase
    last_acted: int | None = Field(description="The tick of its latest action; None if it has not acted")
    last_action: str | None
    possessed_by: str | None
    whisper: bool = Field(description="A whisper waits in its perception, not yet acted on")
    valence: float
    energy: float
    recent: list[AgentAction] = Field(description="Its latest actions, newest first (up to 8; resting leaves none)")


class AgentLoop(Closed):
    tick: int
    population: int
    resonance: float = Field(description="How alike the agents' moods are: 1 less the mean spread of valence")
    phases: PhaseCounts = Field(description="How many agents are in each phase (all of them, not only this page)")
    offset: int
    agents: list[AgentPhase]


class RitualLog(Closed):
    """The mirror's ritual timeline: every ritual step it collected (the latest 100), and the rituals in flight."""

    tick: int
    in_flight: list[int]
    timeline: list[Trace]


class ThreadPost(Closed):
    tick: int
    agent: str | None = Field(description="None for a visitor from a linked instance")
    text: str


class ThreadRow(Closed):
    id: int
    topic: str
    opened: int
    last_post: int
    quiet: int = Field(description="Ticks run since its last post")
    posts: int
    participants: list[str]
    woven: list[int]
    recent: list[ThreadPost]


class ThreadState(Closed):
    tick: int
    open: int
    stall_after: int = Field(description="Ticks without a post after which the mirror calls a thread stalled")
    threads: list[ThreadRow]


class CurrentLoop(Closed):
    """The loop under way; ``phase`` is the quarter of it reached: listening, reflecting, responding, evolving."""

    tick: int
    loop: int
    start: int
    length: int
    end: int = Field(description="Its last tick")
    phase: Phase
    themes: list[str]
    intentions: list[str]
    posts: int
    performed: int
    refused: int
    artifacts: int


class LoopSeal(Open):
    """A sealed loop as the world's ``loop_sealed`` event recorded it."""

    kind: str
    tick: int
    loop: int
    start: int
    end: int
    digest: str = Field(description="BLAKE2b over the loop's events, tick by tick")
    state_hash: str = Field(description="The state hash at the seal")


class LoopWitness(Closed):
    instance: str
    current: CurrentLoop
    sealed: list[LoopSeal] = Field(description="The latest sealed loops, oldest first")
    seeds: list[LoopSeed] = Field(description="The seeds the mirror's trace collector built from them")


class SystemHealth(Closed):
    """Whether every platform of the instance answers, and the runtime's state."""

    instance: str
    healthy: bool
    tick: int | None
    state: str | None = Field(description="The runtime's: running, paused, overridden, failed or idle")
    platforms: dict[str, dict[str, Any]]
