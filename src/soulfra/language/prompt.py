"""What a language agent is asked, and how its answer is read: a prompt built from the state (personality, voice,
goals, recent memories, the thread it is in, the rituals and tasks it could take up, the vibe weather), the JSON
schema its reply must follow, and ``read_reply``, which turns the reply's text into a ``Decision`` or nothing.

The prompt's digest (``Prompt.digest``) is what the recorded reply names, never the prompt itself: the prompt is a
function of the state, which a replay rebuilds anyway.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from soulfra.errors import InputError
from soulfra.world.fixed import to_decimal_str
from soulfra.world.inputs import DECISIONS, Decision, parse_decision
from soulfra.world.model import TRAITS, Thread, WorldState

ROLES = {
    "governor": "You govern: you bless or refuse rituals that wait for a blessing, and you guard trust.",
    "orchestrator": "You orchestrate: you propose rituals, hand out tasks and keep the threads talking.",
    "executor": "You execute: you take tasks and work them to completion, and report on your work.",
    "contagion": "You listen more than you speak, and your mood follows those around you.",
}
REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "action": {"type": "string", "enum": list(DECISIONS)},
        "text": {"type": "string", "maxLength": 280},
        "topic": {"type": "string", "maxLength": 64},
        "thread": {"type": "integer", "minimum": 0},
        "ritual": {"type": "integer", "minimum": 0},
        "task": {"type": "integer", "minimum": 0},
        "name": {"type": "string", "maxLength": 64},
        "participants": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
        "goal": {"type": "string", "maxLength": 120},
    },
    "required": ["action"],
}
_INSTRUCTIONS = (
    'Answer with one JSON object and nothing else. Its "action" is one of: '
    "post (text, topic), reply (thread, text), propose_ritual (name, participants: agent ids), "
    "join_ritual (ritual), bless (ritual), refuse (ritual, text), assign_task (goal), take_task (task), rest."
)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
MAX_SHOWN = 6  # rituals, tasks and agents named in a prompt, at most (a small model reads a short prompt best)


@dataclass(frozen=True, slots=True, kw_only=True)
class Prompt:
    """The messages for one agent's thought, due at ``due``; ``digest`` names them in the recorded reply."""

    agent: str
    model: str
    due: int
    messages: tuple[tuple[str, str], ...]  # (role, content)
    digest: str

    def to_messages(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]


def build_prompt(state: WorldState, agent: int, due: int) -> Prompt:
    """The prompt for ``agent``'s thought, from the state as it stood when the thought began."""
    spec = state.specs[agent]
    traits = ", ".join(f"{name} {to_decimal_str(int(state.traits[agent, i]))}" for i, name in enumerate(TRAITS))
    system = (
        f"You are {spec.name} (id {spec.id}), an agent in the world of Soulfra. {ROLES.get(spec.mind, '')} "
        f"Your voice is {spec.voice}; your traits (0 to 1): {traits}. "
        f"Your goals: {', '.join(spec.goals) or 'none yet'}. {_INSTRUCTIONS}"
    )
    lines = [f"Tick {state.tick}. Your mood: valence {to_decimal_str(int(state.valence[agent]))}, "
             f"energy {to_decimal_str(int(state.energy[agent]))}."]  # fmt: skip
    if state.vibe is not None:
        vibe = state.vibe
        lines.append(f"The vibe weather: {vibe.condition} ({vibe.narrative}), forecast {vibe.forecast}.")
    heard = state.whispers.get(agent)
    if heard is not None:
        lines.append(f"You heard a {heard[2]} whisper: \u201c{heard[1]}\u201d.")
    memory = state.memory.get(agent, ())
    if memory:
        lines.append(f"What you did lately: {'; '.join(memory[-4:])}.")
    thread = _thread_of(state, agent)
    if thread is not None:
        said = " / ".join(f"{_who(state, who)}: {text}" for _, who, text in thread.recent)
        lines.append(f"Your thread {thread.id} on {thread.topic}: {said}")
    rituals = sorted(state.rituals.values(), key=lambda r: r.id)[:MAX_SHOWN]
    for ritual in rituals:
        lines.append(f"Ritual {ritual.id} \u201c{ritual.name}\u201d is {ritual.stage}.")
    tasks = sorted(state.tasks.values(), key=lambda t: t.id)[:MAX_SHOWN]
    for task in tasks:
        holder = "unclaimed" if task.assignee < 0 else f"held by {_who(state, task.assignee)}"
        lines.append(f"Task {task.id} \u201c{task.goal}\u201d, {holder}.")
    lines.append(f"Agents you could invite: {', '.join(_companions(state, agent)) or 'none'}. What do you do?")
    messages = (("system", system), ("user", "\n".join(lines)))
    encoded = json.dumps(messages, ensure_ascii=False, separators=(",", ":")).encode()
    digest = "b2:" + hashlib.blake2b(encoded, digest_size=16).hexdigest()
    return Prompt(agent=spec.id, model=spec.model, due=due, messages=messages, digest=digest)


def read_reply(text: str) -> Decision | None:
    """The decision a reply asks for, or None when it does not parse as one (a small model often strays)."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    if isinstance(obj, dict):  # drop what the schema does not know, and nulls, rather than refuse the reply
        obj = {key: value for key, value in obj.items() if key in REPLY_SCHEMA["properties"] and value is not None}
        if isinstance(obj.get("text"), str):
            obj["text"] = obj["text"][:280]
    try:
        return parse_decision(obj)
    except InputError:
        return None


def _thread_of(state: WorldState, agent: int) -> Thread | None:
    """The thread the agent took part in most recently, else the busiest open one."""
    mine = [t for t in state.threads.values() if agent in t.participants]
    pool = mine or list(state.threads.values())
    if not pool:
        return None
    return max(pool, key=lambda t: (t.last, t.posts, -t.id)) if mine else max(pool, key=lambda t: (t.posts, -t.id))


def _companions(state: WorldState, agent: int) -> list[str]:
    """Up to ``MAX_SHOWN`` others: those the agent holds dearest first, then the world's first agents."""
    row = state.affinity.get(agent, {})
    dearest = [other for other, _ in sorted(row.items(), key=lambda item: (-item[1], item[0]))]
    chosen = list(dict.fromkeys(other for other in (*dearest, *range(MAX_SHOWN + 1)) if other != agent))
    return [state.specs[other].id for other in chosen[:MAX_SHOWN] if other < state.size]


def _who(state: WorldState, agent: int) -> str:
    return "a visitor" if agent < 0 else state.specs[agent].id


__all__ = ["REPLY_SCHEMA", "ROLES", "Prompt", "build_prompt", "read_reply"]
