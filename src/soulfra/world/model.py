"""The state of one instance: agents, threads, rituals, tasks, the current loop and the vibe weather.

Per-agent numbers live in int64 arrays (index = position in ``specs``) so that mood dynamics run in bulk;
everything else is small frozen records in sorted-key dicts. ``WorldState`` is the only mutable container:
the engine advances it one tick at a time, and ``copy`` gives an independent fork.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from soulfra.world.fixed import SCALE

I64Array = npt.NDArray[np.int64]

TRAITS = ("warmth", "curiosity", "order", "chaos")
WARMTH, CURIOSITY, ORDER, CHAOS = range(4)

VALENCE_MIN, VALENCE_MAX = -SCALE, SCALE

MEMORY_LIMIT = 8
AFFINITY_LIMIT = 16
RECENT_POSTS = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSpec:
    """Who an agent is; fixed for the agent's life (its traits, which can change, live in the arrays)."""

    id: str
    name: str
    mind: str
    voice: str
    goals: tuple[str, ...]
    model: str = ""  # a language agent's model; its ``mind`` is then the built-in mind it falls back to


@dataclass(frozen=True, slots=True, kw_only=True)
class Thread:
    id: int
    topic: str
    opened: int
    last: int
    posts: int
    participants: tuple[int, ...]
    recent: tuple[tuple[int, int, str], ...]  # (tick, agent, text), newest last
    woven: tuple[int, ...] = ()


class Stage:
    """The stages a ritual holds while in the state; once performed and sealed, refused or lapsed it leaves the
    state and lives on only in the events."""

    GATHERING = "gathering"
    AWAITING = "awaiting-blessing"
    BLESSED = "blessed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ritual:
    id: int
    name: str
    proposer: int
    invited: tuple[int, ...]
    joined: tuple[int, ...]
    stage: str
    proposed: int
    stage_tick: int
    intensity: int
    blessed_by: int = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    id: int
    goal: str
    assigned_by: int
    assignee: int
    progress: int
    required: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopSeed:
    """What one loop hands the next: themes to talk about, intentions, and a mood baseline."""

    loop: int
    themes: tuple[str, ...]
    intentions: tuple[str, ...]
    baseline: int


@dataclass(frozen=True, slots=True, kw_only=True)
class VibeReading:
    condition: str
    temperature: int  # mean valence, -SCALE..SCALE
    pressure: int  # the phase's intensity, 0..SCALE
    wind: int  # activity, 0..SCALE
    forecast: str
    frequency: int
    colour: str
    emotion: str
    narrative: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VibeOverride:
    condition: str
    intensity: int
    until: int  # first tick at which the override no longer holds


@dataclass(slots=True, kw_only=True)
class LoopTrace:
    """What the current loop has done so far; the trace collector turns it into the next loop's seed."""

    index: int
    start: int
    digest: bytes
    topics: dict[str, int] = field(default_factory=dict)
    posts: int = 0
    performed: int = 0
    refused: int = 0
    artifacts: int = 0
    themes: tuple[str, ...] = ()
    intentions: tuple[str, ...] = ()
    baseline: int = 0


@dataclass(slots=True, kw_only=True)
class WorldState:
    seed: int
    tick: int
    loop_length: int
    specs: tuple[AgentSpec, ...]
    traits: I64Array  # (N, 4)
    valence: I64Array
    arousal: I64Array
    energy: I64Array
    focus: I64Array
    possessed: dict[int, str]
    whispers: dict[int, tuple[int, str, str]]  # agent -> (tick, text, tone), until the agent acts on it
    memory: dict[int, tuple[str, ...]]
    affinity: dict[int, dict[int, int]]
    threads: dict[int, Thread]
    rituals: dict[int, Ritual]
    tasks: dict[int, Task]
    ledger: dict[str, int]
    next_id: dict[str, int]
    loop: LoopTrace
    pending_seed: LoopSeed | None
    vibe: VibeReading | None
    vibe_history: tuple[tuple[int, int, int], ...]  # (temperature, arousal, spread), newest last
    vibe_override: VibeOverride | None
    thinking: dict[int, int] = field(default_factory=dict)  # language agent -> the tick its reply is due at
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.index:
            self.index = {spec.id: i for i, spec in enumerate(self.specs)}

    @property
    def size(self) -> int:
        return len(self.specs)

    def copy(self) -> WorldState:
        """An independent copy: no array or dict is shared with ``self``."""
        return replace(
            self,
            traits=self.traits.copy(),
            valence=self.valence.copy(),
            arousal=self.arousal.copy(),
            energy=self.energy.copy(),
            focus=self.focus.copy(),
            possessed=dict(self.possessed),
            whispers=dict(self.whispers),
            memory=dict(self.memory),
            affinity={agent: dict(row) for agent, row in self.affinity.items()},
            threads=dict(self.threads),
            rituals=dict(self.rituals),
            tasks=dict(self.tasks),
            ledger=dict(self.ledger),
            next_id=dict(self.next_id),
            thinking=dict(self.thinking),
            loop=replace(self.loop, topics=dict(self.loop.topics)),
            index=dict(self.index),
        )

    def take_id(self, kind: str) -> int:
        value = self.next_id.get(kind, 1)
        self.next_id[kind] = value + 1
        return value
