"""Running a golden case: shared by the test and by ``regenerate.py``."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

from soulfra.runner import load_inputs, load_world_file, run
from soulfra.world import DEFAULT_WORLD, World, event_to_json
from soulfra.world.events import Event

HERE = Path(__file__).parent
CASES = HERE / "cases.toml"


def load_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = tomllib.loads(CASES.read_text(encoding="utf-8"))["case"]
    return cases


def play(case: dict[str, Any]) -> tuple[str, str]:
    """The (state hash, events digest) a case's run gives."""
    spec = load_world_file(HERE / case["world"]) if "world" in case else DEFAULT_WORLD
    inputs = load_inputs(HERE / case["inputs"]) if "inputs" in case else []
    world = World.create(case["seed"], spec, agents=case["agents"])
    digest = hashlib.blake2b(digest_size=32)

    def absorb(events: list[Event]) -> None:
        for event in events:
            digest.update(json.dumps(event_to_json(event), sort_keys=True).encode() + b"\n")

    report = run(world, case["ticks"], inputs, on_tick=absorb)
    return report.state_hash, digest.hexdigest()
