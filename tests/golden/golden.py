"""Running a golden case: shared by the test and by ``regenerate.py``."""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soulfra.cli.runner import load_inputs, load_world_file, run
from soulfra.world import DEFAULT_WORLD, World, event_to_json
from soulfra.world.events import Event
from soulfra.world.inputs import Input

HERE = Path(__file__).parent
CASES = HERE / "cases.toml"


def load_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = tomllib.loads(CASES.read_text(encoding="utf-8"))["case"]
    return cases


TICKS = HERE / "ticks"  # each case's state hash after every tick, to name the first tick a change diverges at
SHORT = 24  # characters of each tick's state hash kept (the final hash is kept whole in cases.toml)


@dataclass(frozen=True, slots=True)
class Played:
    state_hash: str
    events_digest: str
    tick_hashes: list[str]  # the state hash after tick 1, 2, ... (shortened)


def play(case: dict[str, Any], inputs: list[Input] | None = None) -> Played:
    """What a case's run gives (with ``inputs`` instead of its own input log, when given)."""
    spec = load_world_file(HERE / case["world"]) if "world" in case else DEFAULT_WORLD
    if inputs is None:
        inputs = load_inputs(HERE / case["inputs"]) if "inputs" in case else []
    world = World.create(case["seed"], spec, agents=case["agents"])
    digest = hashlib.blake2b(digest_size=32)
    tick_hashes: list[str] = []

    def absorb(events: list[Event]) -> None:
        for event in events:
            digest.update(json.dumps(event_to_json(event), sort_keys=True).encode() + b"\n")
        tick_hashes.append(world.state_hash()[:SHORT])

    report = run(world, case["ticks"], inputs, on_tick=absorb)
    return Played(report.state_hash, digest.hexdigest(), tick_hashes)


def recorded_ticks(case: dict[str, Any]) -> list[str]:
    recorded: list[str] = json.loads((TICKS / f"{case['name']}.json").read_text(encoding="utf-8"))
    return recorded


def first_divergence(recorded: list[str], replayed: list[str]) -> str | None:
    """Where a replay first differs from the record, as a sentence (None if it never does)."""
    for tick, (was, now) in enumerate(zip(recorded, replayed, strict=False), start=1):
        if was != now:
            return f"first divergent tick: {tick} (state after it recorded {was}..., replayed {now}...)"
    if len(recorded) != len(replayed):
        return f"the record has {len(recorded)} ticks, the replay {len(replayed)}"
    return None
