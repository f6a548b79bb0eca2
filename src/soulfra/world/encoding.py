"""The versioned canonical encoding of a ``WorldState`` and its BLAKE2b state hash.

Layout: ``MAGIC`` + one format-version byte + the canonical encoding (see ``canonical``) of a dict of plain
values. Records are written as tuples in their field order; a change to any of this bumps ``FORMAT_VERSION``
(and the golden hashes under ``tests/golden`` say so loudly). Language minds extend format 1 without changing it
for worlds that have none: a language agent's spec row gains its model as a sixth field, and the ``thinking`` key
is written only while some agent waits for a reply, so every world without them encodes byte for byte as before.
"""

from __future__ import annotations

import hashlib
from dataclasses import fields
from typing import Any, TypeVar

import numpy as np

from soulfra.errors import CodecError
from soulfra.world import canonical
from soulfra.world.model import (
    AgentSpec,
    LoopSeed,
    LoopTrace,
    Ritual,
    Task,
    Thread,
    VibeOverride,
    VibeReading,
    WorldState,
)

MAGIC = b"SFST"
FORMAT_VERSION = 1
HASH_PREFIX = "b2:"
R = TypeVar("R")


def _names(cls: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


# Field names per record type, read once: ``fields()`` on every record is a good part of a decode's time.
_FIELDS: dict[type[Any], tuple[str, ...]] = {
    cls: _names(cls) for cls in (AgentSpec, LoopSeed, Ritual, Task, Thread, VibeOverride, VibeReading)
}


def _row(record: Any) -> tuple[Any, ...]:
    """A record's field values in declaration order (shallow; the fields are immutable already)."""
    return tuple(getattr(record, name) for name in _FIELDS[type(record)])


def _opt(record: Any) -> tuple[Any, ...] | None:
    return None if record is None else _row(record)


def state_tree(state: WorldState) -> dict[str, Any]:
    """The state as plain values, in the shape ``encode_state`` writes."""
    return _tree(state, _spec_rows(state.specs))


def _tree(state: WorldState, specs: Any) -> dict[str, Any]:
    loop = state.loop
    tree: dict[str, Any] = {
        "seed": state.seed,
        "tick": state.tick,
        "loop_length": state.loop_length,
        "specs": specs,
        "traits": state.traits,
        "valence": state.valence,
        "arousal": state.arousal,
        "energy": state.energy,
        "focus": state.focus,
        "possessed": state.possessed,
        "whispers": state.whispers,
        "memory": state.memory,
        "affinity": state.affinity,
        "threads": {key: _row(value) for key, value in state.threads.items()},
        "rituals": {key: _row(value) for key, value in state.rituals.items()},
        "tasks": {key: _row(value) for key, value in state.tasks.items()},
        "ledger": state.ledger,
        "next_id": state.next_id,
        "loop": (
            loop.index,
            loop.start,
            loop.digest,
            loop.topics,
            loop.posts,
            loop.performed,
            loop.refused,
            loop.artifacts,
            loop.themes,
            loop.intentions,
            loop.baseline,
        ),
        "pending_seed": _opt(state.pending_seed),
        "vibe": _opt(state.vibe),
        "vibe_history": state.vibe_history,
        "vibe_override": _opt(state.vibe_override),
    }
    if state.thinking:
        tree["thinking"] = state.thinking
    return tree


def _spec_rows(specs: tuple[AgentSpec, ...]) -> tuple[tuple[Any, ...], ...]:
    return tuple((s.id, s.name, s.mind, s.voice, s.goals, s.model) if s.model else _spec_row(s) for s in specs)


def _spec_row(spec: AgentSpec) -> tuple[Any, ...]:
    return (spec.id, spec.name, spec.mind, spec.voice, spec.goals)


def encode_state(state: WorldState) -> bytes:
    # The specs' encoding is kept from the last encoding of the same specs (they are fixed for an agent's life).
    tree = _tree(state, canonical.Encoded(_SPECS.encoded(state.specs)))
    return MAGIC + bytes([FORMAT_VERSION]) + canonical.encode(tree)


def state_hash(state: WorldState) -> str:
    """``"b2:"`` + hex BLAKE2b-256 of the canonical encoding; equal hashes mean equal worlds."""
    return encoded_hash(encode_state(state))


def encoded_hash(data: bytes) -> str:
    """The state hash of state bytes as ``encode_state`` gives them, without decoding them."""
    return HASH_PREFIX + hashlib.blake2b(data, digest_size=32).hexdigest()


def decode_state(data: bytes) -> WorldState:
    _check_header(data)
    tree = canonical.decode_keeping(data[5:], _KEPT, likely=_SPECS.encodings())
    try:
        tree["specs"] = _SPECS.specs(tree["specs"])
        return _state_from_tree(tree)
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"world state has the wrong shape: {exc}") from exc


def state_agents(data: bytes) -> tuple[int, tuple[str, ...]]:
    """The tick and the agent ids of state bytes as ``encode_state`` gives them, without decoding the rest of the
    state (the ids sort early in it): what checks of a state's agents need, at a small part of a decode's cost."""
    _check_header(data)
    tree = canonical.decode_fields(data[5:], _AGENT_FIELDS, heads=frozenset({"specs"}))  # each spec's id alone
    try:
        tick, ids = tree["tick"], tree["specs"]
        if type(tick) is not int or type(ids) is not tuple:
            raise TypeError("tick or specs of the wrong type")
        if not all(type(agent) is str for agent in ids):
            raise TypeError("an agent id is not a str")
    except (KeyError, TypeError) as exc:
        raise CodecError(f"world state has the wrong shape: {exc}") from exc
    return tick, ids


_AGENT_FIELDS = frozenset({"tick", "specs"})


def _check_header(data: bytes) -> None:
    if data[:4] != MAGIC:
        raise CodecError("not a Soulfra world state (bad magic)")
    if len(data) < 5 or data[4] != FORMAT_VERSION:
        version = data[4] if len(data) > 4 else "missing"
        raise CodecError(f"unsupported world state format version {version}; this build reads {FORMAT_VERSION}")


def _record(cls: type[R], row: tuple[Any, ...] | None) -> R:
    names = _FIELDS[cls]
    if row is None or len(row) != len(names):
        raise ValueError(f"a {cls.__name__} row needs {len(names)} fields")
    return cls(**dict(zip(names, row, strict=True)))


def _optional(cls: type[R], row: tuple[Any, ...] | None) -> R | None:
    return None if row is None else _record(cls, row)


def _state_from_tree(tree: dict[str, Any]) -> WorldState:
    loop = tree["loop"]
    return WorldState(
        seed=tree["seed"],
        tick=tree["tick"],
        loop_length=tree["loop_length"],
        specs=tree["specs"],
        traits=np.asarray(tree["traits"], dtype=np.int64),
        valence=np.asarray(tree["valence"], dtype=np.int64),
        arousal=np.asarray(tree["arousal"], dtype=np.int64),
        energy=np.asarray(tree["energy"], dtype=np.int64),
        focus=np.asarray(tree["focus"], dtype=np.int64),
        possessed=dict(tree["possessed"]),
        whispers=dict(tree["whispers"]),
        memory=dict(tree["memory"]),
        # Decoded rows are fresh dicts already; only a row of another type needs converting.
        affinity={key: row if type(row) is dict else dict(row) for key, row in tree["affinity"].items()},
        threads={key: _record(Thread, row) for key, row in tree["threads"].items()},
        rituals={key: _record(Ritual, row) for key, row in tree["rituals"].items()},
        tasks={key: _record(Task, row) for key, row in tree["tasks"].items()},
        ledger=dict(tree["ledger"]),
        next_id=dict(tree["next_id"]),
        loop=LoopTrace(
            index=loop[0],
            start=loop[1],
            digest=loop[2],
            topics=dict(loop[3]),
            posts=loop[4],
            performed=loop[5],
            refused=loop[6],
            artifacts=loop[7],
            themes=loop[8],
            intentions=loop[9],
            baseline=loop[10],
        ),
        pending_seed=_optional(LoopSeed, tree["pending_seed"]),
        vibe=_optional(VibeReading, tree["vibe"]),
        vibe_history=tree["vibe_history"],
        vibe_override=_optional(VibeOverride, tree["vibe_override"]),
        thinking=dict(tree.get("thinking", {})),
    )


_KEPT = frozenset({"specs"})
SPECS_CACHED_BYTES = 2 * 1024 * 1024  # encoded specs up to this size (about 20,000 agents) are kept decoded
SPECS_CACHED = 8


class _SpecsCache:
    """The agents' specs of the last few encodings decoded or made. A spec is fixed for the agent's life, so every
    snapshot of a world (and of its forks) holds the same bytes: decoding them is a third of a 1,000-agent state's
    decoding, and finding where they end another tenth, both saved when they are kept; encoding them is a sixth of
    a 10,000-agent state's encoding, saved while the world keeps the same tuple of specs. Threads share it without a
    lock: what it keeps is replaced whole (one assignment), so a race can only forget an entry."""

    def __init__(self) -> None:
        self._kept: tuple[tuple[bytes, tuple[AgentSpec, ...]], ...] = ()  # newest first

    def encodings(self) -> tuple[bytes, ...]:
        return tuple(encoded for encoded, _ in self._kept)

    def encoded(self, specs: tuple[AgentSpec, ...]) -> bytes:
        """The encoding of ``specs``: kept when they are the very specs (the same tuple) of one kept."""
        kept = self._kept
        for encoded, known in kept:
            if known is specs:
                return encoded
        encoded = canonical.encode(_spec_rows(specs))
        if len(encoded) <= SPECS_CACHED_BYTES:
            self._kept = ((encoded, specs), *kept[: SPECS_CACHED - 1])
        return encoded

    def specs(self, encoded: bytes) -> tuple[AgentSpec, ...]:
        kept = self._kept
        for known, specs in kept:
            if known == encoded:
                return specs
        specs = _decode_specs(encoded)
        if len(encoded) <= SPECS_CACHED_BYTES:
            self._kept = ((encoded, specs), *kept[: SPECS_CACHED - 1])
        return specs


def _decode_specs(encoded: bytes) -> tuple[AgentSpec, ...]:
    rows = canonical.decode(encoded)
    if type(rows) is not tuple:
        raise TypeError("specs are not a list")
    return tuple(_spec(row) for row in rows)


_SPECS = _SpecsCache()


def _spec(row: tuple[Any, ...]) -> AgentSpec:
    if len(row) not in (5, 6):
        raise ValueError("an agent spec row needs 5 or 6 fields")
    return AgentSpec(
        id=row[0], name=row[1], mind=row[2], voice=row[3], goals=row[4], model=row[5] if len(row) == 6 else ""
    )
