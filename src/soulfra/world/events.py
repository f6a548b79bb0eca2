"""What a world emits: past-tense events, derived from state and inputs, never fed back into the world.

Each event is a frozen record with a stable ``kind``. ``event_row`` gives its canonical row (kind, then fields
in declaration order), which the loop digest chains over; ``event_to_json`` gives the JSON-lines form.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from itertools import repeat
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    kind: ClassVar[str] = "event"
    tick: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WhisperHeard(Event):
    kind: ClassVar[str] = "whisper_heard"
    agent: str  # "*" when every agent heard it
    text: str
    tone: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentPossessed(Event):
    kind: ClassVar[str] = "agent_possessed"
    agent: str
    operator: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentReleased(Event):
    kind: ClassVar[str] = "agent_released"
    agent: str
    operator: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorActed(Event):
    kind: ClassVar[str] = "operator_acted"
    agent: str
    action: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PersonalityChanged(Event):
    kind: ClassVar[str] = "personality_changed"
    agent: str
    traits: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RitualInjected(Event):
    kind: ClassVar[str] = "ritual_injected"
    ritual: int
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VibeAltered(Event):
    kind: ClassVar[str] = "vibe_altered"
    condition: str
    intensity: int
    until: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InputRejected(Event):
    kind: ClassVar[str] = "input_rejected"
    input: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PostMade(Event):
    kind: ClassVar[str] = "post_made"
    agent: str
    thread: int
    topic: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitorPosted(Event):
    kind: ClassVar[str] = "visitor_posted"
    origin: str  # "instance/agent" of a linked instance
    thread: int
    topic: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadOpened(Event):
    kind: ClassVar[str] = "thread_opened"
    thread: int
    topic: str
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadsWoven(Event):
    kind: ClassVar[str] = "threads_woven"
    thread: int
    into: int
    topic: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadClosed(Event):
    kind: ClassVar[str] = "thread_closed"
    thread: int
    topic: str
    posts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RitualProposed(Event):
    kind: ClassVar[str] = "ritual_proposed"
    ritual: int
    name: str
    agent: str
    invited: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RitualJoined(Event):
    kind: ClassVar[str] = "ritual_joined"
    ritual: int
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RitualGathered(Event):
    kind: ClassVar[str] = "ritual_gathered"
    ritual: int
    participants: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RitualBlessed(Event):
    kind: ClassVar[str] = "ritual_blessed"
    ritual: int
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RitualRefused(Event):
    kind: ClassVar[str] = "ritual_refused"
    ritual: int
    agent: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RitualLapsed(Event):
    kind: ClassVar[str] = "ritual_lapsed"
    ritual: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RitualPerformed(Event):
    kind: ClassVar[str] = "ritual_performed"
    ritual: int
    name: str
    participants: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RitualSealed(Event):
    kind: ClassVar[str] = "ritual_sealed"
    ritual: int
    name: str
    digest: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskAssigned(Event):
    kind: ClassVar[str] = "task_assigned"
    task: int
    goal: str
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskClaimed(Event):
    kind: ClassVar[str] = "task_claimed"
    task: int
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ArtifactProduced(Event):
    kind: ClassVar[str] = "artifact_produced"
    task: int
    agent: str
    artifact: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VibeShifted(Event):
    kind: ClassVar[str] = "vibe_shifted"
    condition: str
    previous: str
    pressure: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedApplied(Event):
    kind: ClassVar[str] = "seed_applied"
    loop: int
    themes: tuple[str, ...]
    intentions: tuple[str, ...]
    baseline: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopSealed(Event):
    kind: ClassVar[str] = "loop_sealed"
    loop: int
    start: int
    end: int
    digest: str
    state_hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MindDecided(Event):
    """A language agent's turn: ``outcome`` ``"reply"`` when it did what its recorded reply asked (``action``),
    else why it fell back to its built-in mind (a recorded failure, ``"no-reply"`` when none was recorded by its
    tick, ``"not-done"`` when the world could not do what the reply asked; ``detail`` says more)."""

    kind: ClassVar[str] = "mind_decided"
    agent: str
    model: str
    outcome: str
    action: str
    detail: str


_NAMES: dict[type[Event], tuple[str, ...]] = {}


def _names(cls: type[Event]) -> tuple[str, ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def event_row(event: Event) -> tuple[Any, ...]:
    names = _NAMES.get(type(event)) or _names(type(event))
    return (event.kind, *map(getattr, repeat(event), names))  # ``getattr`` called from C: a tick writes many rows


def event_to_json(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": event.kind}
    for name in _names(type(event)):
        value = getattr(event, name)
        out[name] = [list(v) if isinstance(v, tuple) else v for v in value] if isinstance(value, tuple) else value
    return out


EVENT_TYPES: tuple[type[Event], ...] = (
    WhisperHeard, AgentPossessed, AgentReleased, OperatorActed, PersonalityChanged, RitualInjected, VibeAltered,
    InputRejected, PostMade, ThreadOpened, ThreadsWoven, ThreadClosed, RitualProposed, RitualJoined, RitualGathered,
    RitualBlessed, RitualRefused, RitualLapsed, RitualPerformed, RitualSealed, TaskAssigned, TaskClaimed,
    ArtifactProduced, VibeShifted, SeedApplied, LoopSealed, VisitorPosted, MindDecided,
)  # fmt: skip
EVENT_KINDS = tuple(sorted(cls.kind for cls in EVENT_TYPES))
