"""The short spellings of operator inputs on the command line, one grammar for every command that takes them:
``package edit --personality/--ritual/--vibe`` and ``god fork/clone -m`` (which also takes the input as JSON).

    personality:AGENT:TRAIT=V[,TRAIT=V]     ritual:NAME:AGENT,AGENT[:blessed]     vibe:CONDITION[:INTENSITY[:DURATION]]
    whisper:TARGET:TEXT                     possess:AGENT                         release:AGENT

Only the spelling is checked here; what the values may be is the world's to say when the input is parsed."""

from __future__ import annotations

import json
from typing import Any

from soulfra.errors import InputError

__all__ = ["MODIFY_HELP", "modification", "pair", "personality_spec", "ritual_spec", "vibe_spec"]

MODIFY_HELP = (
    "An input from the next tick (repeatable): personality:AGENT:TRAIT=V[,TRAIT=V], ritual:NAME:AGENT,AGENT[:blessed], "
    "vibe:CONDITION[:INTENSITY[:DURATION]], whisper:TARGET:TEXT, possess:AGENT, release:AGENT, or the input as JSON "
    """without its tick, e.g. -m '{"type": "whisper", "target": "arty", "text": "hello"}'"""
)


def pair(text: str, flag: str) -> tuple[str, str]:
    """``name=value``, stripped."""
    key, sep, value = text.partition("=")
    if not sep:
        raise InputError(f"{flag} takes name=value, not {text!r}")
    return key.strip(), value.strip()


def personality_spec(text: str, flag: str = "--personality") -> dict[str, Any]:
    """``AGENT:TRAIT=V[,TRAIT=V]`` as ``{"agent", "traits"}``."""
    agent, sep, rest = text.partition(":")
    if not sep or not rest:
        raise InputError(f"{flag} takes AGENT:TRAIT=V[,TRAIT=V], not {text!r}")
    return {"agent": agent, "traits": dict(pair(p, flag) for p in rest.split(","))}


def ritual_spec(text: str, flag: str = "--ritual") -> dict[str, Any]:
    """``NAME:AGENT,AGENT[:blessed]`` as ``{"name", "participants", "blessed"}``."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "blessed"):
        raise InputError(f"{flag} takes NAME:AGENT,AGENT[:blessed], not {text!r}")
    return {"name": parts[0], "participants": parts[1].split(","), "blessed": len(parts) == 3}


def vibe_spec(text: str, flag: str = "--vibe") -> dict[str, Any]:
    """``CONDITION[:INTENSITY[:DURATION]]`` as ``{"condition", "intensity"?, "duration"?}``."""
    parts = text.split(":")
    if len(parts) > 3:
        raise InputError(f"{flag} takes CONDITION[:INTENSITY[:DURATION]], not {text!r}")
    spec: dict[str, Any] = {"condition": parts[0]}
    if len(parts) > 1:
        spec["intensity"] = parts[1]
    if len(parts) > 2:
        if not parts[2].isdigit():
            raise InputError(f"{flag} duration must be a whole number of ticks, not {parts[2]!r}")
        spec["duration"] = int(parts[2])
    return spec


_INTERVENTIONS = {"personality": personality_spec, "ritual": ritual_spec, "vibe": vibe_spec}


def modification(text: str, flag: str = "--modify") -> dict[str, Any]:
    """One input without its tick: JSON (``{...}``), or ``KIND:SPEC`` in the short spelling above."""
    if text.lstrip().startswith("{"):
        try:
            given = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{flag} is not valid JSON: {exc.msg} (at character {exc.pos})") from None
        if not isinstance(given, dict):
            raise InputError(f"{flag} takes one input, a JSON object")
        return given
    kind, sep, rest = text.partition(":")
    if kind in _INTERVENTIONS and sep:
        return {"type": "intervene", "kind": kind, **_INTERVENTIONS[kind](rest, f"{flag} {kind}:")}
    if kind == "whisper" and sep:
        target, sep, said = rest.partition(":")
        if sep and target and said:
            return {"type": "whisper", "target": target, "text": said}
        raise InputError(f"{flag} whisper: takes whisper:TARGET:TEXT, not {text!r}")
    if kind in ("possess", "release") and sep and rest and ":" not in rest:
        return {"type": kind, "agent": rest}
    raise InputError(
        f"{flag} takes KIND:SPEC (personality, ritual, vibe, whisper, possess or release) or an input as JSON, "
        f"not {text!r}"
    )
