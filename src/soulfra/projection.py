"""JSON projections of a world's state for people and stores: agents, their moods and memories, the vibe weather,
snapshot records. Pure functions of what they are given; numbers that are fixed point inside a world become floats
here, for display only, and are never fed back into one. Used by the store (the agents table), the platforms (API
replies) and the CLI; it imports only the world core and the storage records."""

from __future__ import annotations

from typing import Any

from soulfra.store.ports import SnapshotInfo
from soulfra.world.fixed import SCALE
from soulfra.world.model import VibeReading, WorldState

__all__ = [
    "TRAIT_NAMES",
    "agent_briefs",
    "agent_json",
    "agent_state_json",
    "fixed_to_number",
    "personality_json",
    "snapshot_json",
    "vibe_to_json",
]

TRAIT_NAMES = ("warmth", "curiosity", "order", "chaos")


def fixed_to_number(value: int) -> float:
    """A fixed-point value for display (JSON, terminals); never fed back into a world."""
    return value / SCALE


def vibe_to_json(vibe: VibeReading | None) -> dict[str, Any] | None:
    if vibe is None:
        return None
    return {
        "condition": vibe.condition,
        "temperature": fixed_to_number(vibe.temperature),
        "pressure": fixed_to_number(vibe.pressure),
        "wind": fixed_to_number(vibe.wind),
        "forecast": vibe.forecast,
        "frequency": vibe.frequency,
        "colour": vibe.colour,
        "emotion": vibe.emotion,
        "narrative": vibe.narrative,
    }


def personality_json(state: WorldState, i: int) -> dict[str, Any]:
    """Agent ``i``'s personality as the agents table keeps it (traits as fixed point, with their scale)."""
    spec = state.specs[i]
    traits = {name: int(state.traits[i, k]) for k, name in enumerate(TRAIT_NAMES)}
    return {"name": spec.name, "voice": spec.voice, "goals": list(spec.goals), "traits": traits, "scale": SCALE}


def agent_state_json(state: WorldState, i: int) -> dict[str, Any]:
    """Agent ``i``'s state as the agents table keeps it (fixed point, with its scale)."""
    return {
        "index": i,
        "valence": int(state.valence[i]),
        "arousal": int(state.arousal[i]),
        "energy": int(state.energy[i]),
        "focus": int(state.focus[i]),
        "possessed_by": state.possessed.get(i),
        "memory": list(state.memory.get(i, ())),
        "scale": SCALE,
    }


def agent_json(state: WorldState, i: int) -> dict[str, Any]:
    """Agent ``i`` as the API shows it: the stored projections plus moods and affinities as numbers. A language
    agent also shows its ``model`` (``mind`` is then the built-in mind it falls back to) and, while it thinks, the
    tick its reply is ``due`` at."""
    spec = state.specs[i]
    affinity = state.affinity.get(i, {})
    language = {"model": spec.model, "due": state.thinking.get(i)} if spec.model else {}
    return {
        "id": spec.id,
        "name": spec.name,
        "mind": spec.mind,
        **language,
        "personality": personality_json(state, i),
        "state": agent_state_json(state, i),
        "mood": {"valence": fixed_to_number(int(state.valence[i])), "arousal": fixed_to_number(int(state.arousal[i]))},
        "affinity": {state.specs[other].id: fixed_to_number(value) for other, value in sorted(affinity.items())},
        "whisper": _whisper_json(state, i),
    }


def agent_briefs(state: WorldState, start: int, stop: int) -> list[dict[str, Any]]:
    """Agents ``start..stop-1`` as a live canvas draws them: id, name, mind, and mood and energy as numbers; none of
    the memories and affinities that make the full view heavy. Columns are converted once, not agent by agent."""
    ids = range(start, min(stop, state.size))
    if not ids:
        return []
    valence = (state.valence[ids.start : ids.stop] / SCALE).tolist()
    arousal = (state.arousal[ids.start : ids.stop] / SCALE).tolist()
    energy = (state.energy[ids.start : ids.stop] / SCALE).tolist()
    rows = []
    for n, i in enumerate(ids):
        spec = state.specs[i]
        rows.append(
            {
                "id": spec.id,
                "name": spec.name,
                "mind": spec.mind,
                "valence": valence[n],
                "arousal": arousal[n],
                "energy": energy[n],
            }
        )
    return rows


def _whisper_json(state: WorldState, i: int) -> dict[str, Any] | None:
    heard = state.whispers.get(i)
    if heard is None:
        return None
    return {"tick": heard[0], "text": heard[1], "tone": heard[2]}


def snapshot_json(info: SnapshotInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "tick": info.tick,
        "type": info.type,
        "state_hash": info.state_hash,
        "raw_size": info.raw_size,
        "stored_size": info.stored_size,
        "codec": info.codec,
        "timestamp": info.timestamp.isoformat(),
    }
