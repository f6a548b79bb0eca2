"""soulfra.world: the pure, deterministic core. Standard library and numpy only; no I/O, clock or global random.

Everything that happens in a world is a function of (seed, initial state, input log): ``World.step`` is
``state(t+1) = tick(state(t), inputs(t))``, and ``state_hash`` names the result.
"""

from __future__ import annotations

from soulfra.world.encoding import FORMAT_VERSION, decode_state, encode_state, state_hash
from soulfra.world.engine import World, schedule
from soulfra.world.events import EVENT_KINDS, Event, event_to_json
from soulfra.world.fixed import SCALE
from soulfra.world.genesis import DEFAULT_WORLD, AgentDefinition, WorldSpec, genesis
from soulfra.world.inputs import (
    Act,
    AlterVibe,
    ChangePersonality,
    CrossPost,
    InjectRitual,
    Input,
    Mark,
    Possess,
    Release,
    Whisper,
    input_to_json,
    parse_input,
)
from soulfra.world.minds import MINDS
from soulfra.world.model import WorldState
from soulfra.world.worldfile import parse_world

__all__ = [
    "DEFAULT_WORLD",
    "EVENT_KINDS",
    "FORMAT_VERSION",
    "MINDS",
    "SCALE",
    "Act",
    "AgentDefinition",
    "AlterVibe",
    "ChangePersonality",
    "CrossPost",
    "Event",
    "InjectRitual",
    "Input",
    "Mark",
    "Possess",
    "Release",
    "Whisper",
    "World",
    "WorldSpec",
    "WorldState",
    "decode_state",
    "encode_state",
    "event_to_json",
    "genesis",
    "input_to_json",
    "parse_input",
    "parse_world",
    "schedule",
    "state_hash",
]
