"""Operator inputs: the only way anything from outside enters a world, each stamped with the tick it applies at.

Inputs are imperative (``Whisper``, ``Possess``, ``Act``, ``Release``) plus the three interventions
(``ChangePersonality``, ``InjectRitual``, ``AlterVibe``; ``"type": "intervene"`` in JSON), ``CrossPost`` (a post
arriving from an agent of a linked instance), ``Mark`` (a god command noted in the log; it changes nothing) and
``MindReply`` (a language model's recorded answer for a language agent, or the failure that stood in for it).
``parse_input`` turns one JSON object into an input or raises ``InputError``; ``input_to_json`` is its inverse.
Whether an input makes sense *at its tick* (acting through an agent nobody possesses, say) is the engine's call: it
rejects such an input with an ``InputRejected`` event, so a logged input can never stop a replay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from soulfra.errors import InputError
from soulfra.world.dispatch import unhandled
from soulfra.world.fixed import SCALE, from_decimal, to_decimal_str
from soulfra.world.model import TRAITS
from soulfra.world.vibe import PHASES

TONES = ("gentle", "urgent", "playful", "solemn", "dark")
ACTIONS = ("post", "propose_ritual", "join_ritual", "bless", "refuse", "assign_task", "work", "rest")
MAX_TEXT = 500
MAX_PARTICIPANTS = 12
ALL = "*"
# What a language model may ask its agent to do ("reply" posts into a thread by id, "take_task" works a task).
DECISIONS = (
    "post", "reply", "propose_ritual", "join_ritual", "bless", "refuse", "assign_task", "take_task", "rest",
)  # fmt: skip
# Why a recorded reply carries no decision: it did not parse, or the call failed in one of these ways.
FAILURES = ("unparsed", "timeout", "rate-limited", "server-error", "unreachable", "refused")
MAX_REPLY = 4000


@dataclass(frozen=True, slots=True, kw_only=True)
class Whisper:
    """A hint to one agent (or ``"*"``, all): it enters their perception without taking away their autonomy."""

    type: ClassVar[str] = "whisper"
    tick: int
    target: str
    text: str
    tone: str = "gentle"


@dataclass(frozen=True, slots=True, kw_only=True)
class Possess:
    """Take direct control of one agent: its mind stops deciding until ``Release``."""

    type: ClassVar[str] = "possess"
    tick: int
    agent: str
    operator: str = "puppet-master"


@dataclass(frozen=True, slots=True, kw_only=True)
class Act:
    """Make a possessed agent do one thing. Which fields matter depends on ``action``."""

    type: ClassVar[str] = "act"
    tick: int
    agent: str
    action: str
    text: str = ""
    topic: str = ""
    ritual: int = 0
    task: int = 0
    name: str = ""
    participants: tuple[str, ...] = ()
    goal: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Release:
    type: ClassVar[str] = "release"
    tick: int
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangePersonality:
    """Intervene: set some of an agent's traits (fixed point, 0..SCALE)."""

    type: ClassVar[str] = "intervene"
    kind: ClassVar[str] = "personality"
    tick: int
    agent: str
    traits: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectRitual:
    """Intervene: a ritual that has already gathered; it still needs a blessing unless ``blessed``."""

    type: ClassVar[str] = "intervene"
    kind: ClassVar[str] = "ritual"
    tick: int
    name: str
    participants: tuple[str, ...]
    blessed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AlterVibe:
    """Intervene: hold the vibe weather in ``condition`` for ``duration`` ticks, pulling moods toward it."""

    type: ClassVar[str] = "intervene"
    kind: ClassVar[str] = "vibe"
    tick: int
    condition: str
    intensity: int
    duration: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CrossPost:
    """A post from an agent of a linked instance (``origin``: ``"instance/agent"``) into one of this world's
    threads."""

    type: ClassVar[str] = "crosspost"
    tick: int
    origin: str
    thread: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Mark:
    """A god command noted at its tick (a freeze, a fork taken here, a revert): part of the history, no effect."""

    type: ClassVar[str] = "mark"
    tick: int
    command: str
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What a language model's reply asked its agent to do (``DECISIONS``; which fields matter depends on
    ``action``). ``participants`` are agent ids as the model wrote them: the world checks them when it acts."""

    action: str
    text: str = ""
    topic: str = ""
    thread: int = 0
    ritual: int = 0
    task: int = 0
    name: str = ""
    participants: tuple[str, ...] = ()
    goal: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class MindReply:
    """A language model's answer for a language agent due to decide at ``tick``, recorded so that a replay never
    asks again. ``outcome`` is ``"reply"`` with the ``decision`` parsed from it, or why there is none (``FAILURES``:
    the reply did not parse, or the call failed); either way the agent falls back to its built-in mind when there
    is no decision. ``prompt`` is the digest of the prompt it answered; tokens and latency are what it cost."""

    type: ClassVar[str] = "mind_reply"
    tick: int
    agent: str
    model: str
    prompt: str
    outcome: str
    reply: str = ""
    decision: Decision | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0


# The closed set of inputs: the engine matches on it exhaustively, so a type added here fails mypy until handled.
Input: TypeAlias = (
    Whisper | Possess | Act | Release | ChangePersonality | InjectRitual | AlterVibe | CrossPost | Mark | MindReply
)


def _str(obj: Mapping[str, Any], key: str, *, default: str | None = None, limit: int = MAX_TEXT) -> str:
    value = obj.get(key, default)
    if value is None:
        raise InputError(f"missing field {key!r}")
    if not isinstance(value, str):
        raise InputError(f"field {key!r} must be a string")
    if len(value) > limit:
        raise InputError(f"field {key!r} is longer than {limit} characters")
    return value


def _int(obj: Mapping[str, Any], key: str, *, default: int | None = None, lo: int = 0, hi: int = 1 << 62) -> int:
    value = obj.get(key, default)
    if value is None:
        raise InputError(f"missing field {key!r}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"field {key!r} must be an integer")
    if not lo <= value <= hi:
        raise InputError(f"field {key!r} must be between {lo} and {hi}, got {value}")
    return value


def _ids(obj: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InputError(f"field {key!r} must be a list of agent ids")
    if len(value) > MAX_PARTICIPANTS:
        raise InputError(f"field {key!r} names more than {MAX_PARTICIPANTS} agents")
    return tuple(value)


def _fraction(value: object, what: str) -> int:
    try:
        return from_decimal(value, what=what)
    except ValueError as exc:
        raise InputError(str(exc)) from None


_KEYS: dict[str, frozenset[str]] = {
    "whisper": frozenset({"target", "text", "tone"}),
    "possess": frozenset({"agent", "operator"}),
    "act": frozenset({"agent", "action", "text", "topic", "ritual", "task", "name", "participants", "goal"}),
    "release": frozenset({"agent"}),
    "personality": frozenset({"kind", "agent", "traits"}),
    "ritual": frozenset({"kind", "name", "participants", "blessed"}),
    "vibe": frozenset({"kind", "condition", "intensity", "duration"}),
    "crosspost": frozenset({"origin", "thread", "text"}),
    "mark": frozenset({"command", "note"}),
    "mind_reply": frozenset(
        {"agent", "model", "prompt", "outcome", "reply", "decision", "prompt_tokens", "completion_tokens", "latency_ms"}
    ),
}
_DECISION_KEYS = frozenset({"action", "text", "topic", "thread", "ritual", "task", "name", "participants", "goal"})


def parse_input(obj: object) -> Input:
    """Validate one JSON object and build the input it describes."""
    if not isinstance(obj, Mapping):
        raise InputError("an input must be a JSON object")
    kind = obj.get("type")
    if kind in ("personality", "ritual", "vibe"):  # only reachable through "type": "intervene"
        kind = None
    if kind == "intervene":
        kind = obj.get("kind")
        if kind not in ("personality", "ritual", "vibe"):
            raise InputError("an intervene input needs 'kind': one of personality, ritual, vibe")
    if not isinstance(kind, str) or kind not in _KEYS:
        kinds = "whisper, possess, act, release, intervene, crosspost, mark, mind_reply"
        if "type" not in obj:
            raise InputError(f"an input needs a 'type': one of {kinds}")
        raise InputError(f"unknown input type {obj.get('type')!r}; expected {kinds}")
    extra = set(obj) - _KEYS[kind] - {"type", "tick"}
    if extra:
        raise InputError(f"unknown field(s) for {kind}: {', '.join(sorted(map(str, extra)))}")
    tick = _int(obj, "tick")
    if kind == "whisper":
        tone = _str(obj, "tone", default="gentle")
        if tone not in TONES:
            raise InputError(f"unknown tone {tone!r}; expected one of {', '.join(TONES)}")
        return Whisper(tick=tick, target=_str(obj, "target", limit=64), text=_str(obj, "text"), tone=tone)
    if kind == "possess":
        return Possess(
            tick=tick,
            agent=_str(obj, "agent", limit=64),
            operator=_str(obj, "operator", default="puppet-master"),
        )
    if kind == "release":
        return Release(tick=tick, agent=_str(obj, "agent", limit=64))
    if kind == "crosspost":
        return CrossPost(
            tick=tick, origin=_str(obj, "origin", limit=130), thread=_int(obj, "thread", lo=1), text=_str(obj, "text")
        )
    if kind == "mark":
        return Mark(tick=tick, command=_str(obj, "command", limit=64), note=_str(obj, "note", default=""))
    if kind == "mind_reply":
        return _mind_reply(obj, tick)
    if kind == "act":
        action = _str(obj, "action")
        if action not in ACTIONS:
            raise InputError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
        return Act(
            tick=tick,
            agent=_str(obj, "agent", limit=64),
            action=action,
            text=_str(obj, "text", default=""),
            topic=_str(obj, "topic", default="", limit=64),
            ritual=_int(obj, "ritual", default=0),
            task=_int(obj, "task", default=0),
            name=_str(obj, "name", default="", limit=64),
            participants=_ids(obj, "participants"),
            goal=_str(obj, "goal", default="", limit=120),
        )
    if kind == "personality":
        traits = obj.get("traits")
        if not isinstance(traits, Mapping) or not traits:
            raise InputError("field 'traits' must be an object such as {\"warmth\": 0.8}")
        unknown = set(traits) - set(TRAITS)
        if unknown:
            raise InputError(f"unknown trait(s) {', '.join(sorted(map(str, unknown)))}; expected {', '.join(TRAITS)}")
        return ChangePersonality(
            tick=tick,
            agent=_str(obj, "agent", limit=64),
            traits=tuple((name, _fraction(traits[name], f"trait {name}")) for name in TRAITS if name in traits),
        )
    if kind == "ritual":
        participants = _ids(obj, "participants")
        if len(participants) < 2:
            raise InputError("an injected ritual needs at least two participants")
        blessed = obj.get("blessed", False)
        if not isinstance(blessed, bool):
            raise InputError("field 'blessed' must be true or false")
        return InjectRitual(tick=tick, name=_str(obj, "name", limit=64), participants=participants, blessed=blessed)
    condition = _str(obj, "condition", limit=32)
    if condition not in PHASES:
        raise InputError(f"unknown vibe condition {condition!r}; expected one of {', '.join(PHASES)}")
    return AlterVibe(
        tick=tick,
        condition=condition,
        intensity=_fraction(obj.get("intensity", "0.8"), "intensity"),
        duration=_int(obj, "duration", default=20, lo=1, hi=1_000_000),
    )


def _mind_reply(obj: Mapping[str, Any], tick: int) -> MindReply:
    outcome = _str(obj, "outcome", limit=32)
    if outcome != "reply" and outcome not in FAILURES:
        raise InputError(f"unknown outcome {outcome!r}; expected reply or one of {', '.join(FAILURES)}")
    raw = obj.get("decision")
    if (raw is None) != (outcome != "reply"):
        raise InputError("a mind_reply carries a 'decision' exactly when its outcome is 'reply'")
    return MindReply(
        tick=tick,
        agent=_str(obj, "agent", limit=64),
        model=_str(obj, "model", limit=128),
        prompt=_str(obj, "prompt", limit=128),
        outcome=outcome,
        reply=_str(obj, "reply", default="", limit=MAX_REPLY),
        decision=None if raw is None else parse_decision(raw),
        prompt_tokens=_int(obj, "prompt_tokens", default=0),
        completion_tokens=_int(obj, "completion_tokens", default=0),
        latency_ms=_int(obj, "latency_ms", default=0),
    )


def parse_decision(obj: object) -> Decision:
    """Validate what a language model asked for (already read from its JSON) and build the ``Decision``."""
    if not isinstance(obj, Mapping):
        raise InputError("a decision must be a JSON object")
    extra = set(obj) - _DECISION_KEYS
    if extra:
        raise InputError(f"unknown field(s) for a decision: {', '.join(sorted(map(str, extra)))}")
    action = _str(obj, "action", limit=32)
    if action not in DECISIONS:
        raise InputError(f"unknown decision {action!r}; expected one of {', '.join(DECISIONS)}")
    return Decision(
        action=action,
        text=_str(obj, "text", default=""),
        topic=_str(obj, "topic", default="", limit=64),
        thread=_int(obj, "thread", default=0),
        ritual=_int(obj, "ritual", default=0),
        task=_int(obj, "task", default=0),
        name=_str(obj, "name", default="", limit=64),
        participants=_ids(obj, "participants"),
        goal=_str(obj, "goal", default="", limit=120),
    )


def decision_to_json(decision: Decision) -> dict[str, Any]:
    return {
        "action": decision.action, "text": decision.text, "topic": decision.topic, "thread": decision.thread,
        "ritual": decision.ritual, "task": decision.task, "name": decision.name,
        "participants": list(decision.participants), "goal": decision.goal,
    }  # fmt: skip


def input_to_json(item: Input) -> dict[str, Any]:  # noqa: RET503 -- unhandled() never returns
    """The JSON object ``parse_input`` reads back into an equal input."""
    match item:
        case Whisper():
            return {"tick": item.tick, "type": "whisper", "target": item.target, "text": item.text, "tone": item.tone}
        case Possess():
            return {"tick": item.tick, "type": "possess", "agent": item.agent, "operator": item.operator}
        case Release():
            return {"tick": item.tick, "type": "release", "agent": item.agent}
        case CrossPost():
            return {
                "tick": item.tick, "type": "crosspost", "origin": item.origin, "thread": item.thread, "text": item.text,
            }  # fmt: skip
        case Mark():
            return {"tick": item.tick, "type": "mark", "command": item.command, "note": item.note}
        case MindReply():
            return {
                "tick": item.tick, "type": "mind_reply", "agent": item.agent, "model": item.model,
                "prompt": item.prompt, "outcome": item.outcome, "reply": item.reply,
                "decision": None if item.decision is None else decision_to_json(item.decision),
                "prompt_tokens": item.prompt_tokens, "completion_tokens": item.completion_tokens,
                "latency_ms": item.latency_ms,
            }  # fmt: skip
        case Act():
            return {
                "tick": item.tick, "type": "act", "agent": item.agent, "action": item.action, "text": item.text,
                "topic": item.topic, "ritual": item.ritual, "task": item.task, "name": item.name,
                "participants": list(item.participants), "goal": item.goal,
            }  # fmt: skip
        case ChangePersonality():
            traits = {name: to_decimal_str(value) for name, value in item.traits}
            return {
                "tick": item.tick,
                "type": "intervene",
                "kind": "personality",
                "agent": item.agent,
                "traits": traits,
            }
        case InjectRitual():
            return {
                "tick": item.tick, "type": "intervene", "kind": "ritual", "name": item.name,
                "participants": list(item.participants), "blessed": item.blessed,
            }  # fmt: skip
        case AlterVibe():
            return {
                "tick": item.tick, "type": "intervene", "kind": "vibe", "condition": item.condition,
                "intensity": to_decimal_str(item.intensity), "duration": item.duration,
            }  # fmt: skip
        case _:
            unhandled(item, "input")


__all__ = [
    "ACTIONS",
    "ALL",
    "DECISIONS",
    "FAILURES",
    "SCALE",
    "TONES",
    "Act",
    "AlterVibe",
    "ChangePersonality",
    "CrossPost",
    "Decision",
    "InjectRitual",
    "Input",
    "Mark",
    "MindReply",
    "Possess",
    "Release",
    "Whisper",
    "decision_to_json",
    "input_to_json",
    "parse_decision",
    "parse_input",
]
