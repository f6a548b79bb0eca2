"""Response model of an instance's state at a past tick (``GET /api/instances/{id}/state``): the summary the CLI's
``soulfra state`` prints, plus each agent's mood and energy as columns, so a page can say what changed since."""

from __future__ import annotations

from pydantic import Field

from soulfra.api.models.base import Closed

__all__ = ["AgentColumns", "Mood", "StateAt", "VibeAt"]


class Mood(Closed):
    valence: float = Field(description="Mean valence of the agents, -1..1")
    energy: float = Field(description="Mean energy of the agents, 0..1")


class VibeAt(Closed):
    condition: str
    forecast: str
    temperature: float
    pressure: float
    wind: float


class AgentColumns(Closed):
    """One entry per agent, in the world's order (columns rather than objects: a tenth of the bytes at 10,000)."""

    ids: list[str]
    valence: list[float]
    arousal: list[float]
    energy: list[float]


class StateAt(Closed):
    instance: str
    tick: int
    state_hash: str = Field(description="The rebuilt state's hash (what the history's snapshots and seals record)")
    start_tick: int = Field(description="The first tick of the instance's own history (0, or its fork/clone tick)")
    head_tick: int = Field(description="The last tick the instance has durably reached")
    snapshot_tick: int | None = Field(description="The snapshot the rebuild started from (None: the parent's state)")
    replayed_ticks: int = Field(description="Ticks replayed from the input log on top of that snapshot")
    loop: int
    threads: int = Field(description="Threads open at the tick")
    rituals: int = Field(description="Rituals under way at the tick")
    tasks: int
    mood: Mood
    vibe: VibeAt | None
    agents: AgentColumns
