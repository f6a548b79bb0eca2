"""World files: TOML that defines a world's name, loop length and agents.

    [world]
    name = "harbor"
    loop_length = 50
    default_agents = true          # keep Cal Riven, Arty and Agent Zero (the default)

    [[agents]]
    id = "mira"                    # lower case letters, digits and dashes
    name = "Mira"
    mind = "orchestrator"          # governor | orchestrator | executor | contagion (or the class name)
    voice = "lyrical"              # measured | lyrical | terse | warm | wry | curious
    goals = ["lanterns", "tides"]
    traits = { warmth = 0.8, curiosity = 0.7, order = 0.3, chaos = 0.4 }   # each 0..1, default 0.5

    [[agents]]
    id = "sage"
    mind = "language"              # decides by a language model's recorded replies (see soulfra.world.minds.language)
    model = "smollm2"              # the model's name as the endpoint knows it
    fallback = "governor"          # the built-in mind for ticks without a usable reply (default: executor)

Numbers are read as decimals (never floats), so a file gives the same world on every machine. Names and ids are
bounded as storage bounds them (``MAX_WORLD_NAME``, ``MAX_AGENT_ID``), so every backend refuses the same files.
"""

from __future__ import annotations

import re
import tomllib
from decimal import Decimal
from typing import Any

from soulfra.errors import WorldFileError
from soulfra.world.fixed import HALF, from_decimal
from soulfra.world.genesis import DEFAULT_AGENTS, DEFAULT_LOOP_LENGTH, AgentDefinition, WorldSpec
from soulfra.world.minds import MIND_ALIASES, MINDS
from soulfra.world.minds.voice import VOICES
from soulfra.world.model import TRAITS, AgentSpec

MAX_WORLD_NAME = 200  # characters: the instances table's name column
MAX_AGENT_ID = 64  # characters: the agents table's id column
MAX_AGENT_NAME = 64
_ID = re.compile(rf"[a-z0-9][a-z0-9-]{{0,{MAX_AGENT_ID - 1}}}")
_WORLD_KEYS = {"name", "loop_length", "default_agents"}
_AGENT_KEYS = {"id", "name", "mind", "voice", "goals", "traits", "model", "fallback"}
LANGUAGE = "language"
MAX_MODEL_NAME = 128


def parse_world(text: str, *, source: str = "<world>") -> WorldSpec:
    try:
        doc = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise WorldFileError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return _build(doc)
    except WorldFileError as exc:
        raise WorldFileError(f"{source}: {exc.detail}") from None


def _build(doc: dict[str, Any]) -> WorldSpec:
    extra = set(doc) - {"world", "agents"}
    if extra:
        raise WorldFileError(f"unknown table(s) {', '.join(sorted(extra))}; expected [world] and [[agents]]")
    world = doc.get("world", {})
    if not isinstance(world, dict):
        raise WorldFileError("[world] must be a table")
    extra = set(world) - _WORLD_KEYS
    if extra:
        raise WorldFileError(f"unknown key(s) in [world]: {', '.join(sorted(extra))}")
    name = world.get("name", "soulfra")
    loop_length = world.get("loop_length", DEFAULT_LOOP_LENGTH)
    defaults = world.get("default_agents", True)
    if not isinstance(name, str) or not name:
        raise WorldFileError("world.name must be a non-empty string")
    if len(name) > MAX_WORLD_NAME:
        raise WorldFileError(f"world.name is {len(name)} characters, over the limit of {MAX_WORLD_NAME}")
    if isinstance(loop_length, bool) or not isinstance(loop_length, int) or not 1 <= loop_length <= 1_000_000:
        raise WorldFileError("world.loop_length must be an integer from 1 to 1000000")
    if not isinstance(defaults, bool):
        raise WorldFileError("world.default_agents must be true or false")
    raw_agents = doc.get("agents", [])
    if not isinstance(raw_agents, list):
        raise WorldFileError("agents must be an array of tables: [[agents]]")
    agents = list(DEFAULT_AGENTS) if defaults else []
    for number, raw in enumerate(raw_agents, start=1):
        agents.append(_agent(raw, number))
    seen: set[str] = set()
    for definition in agents:
        if definition.spec.id in seen:
            raise WorldFileError(f"agent id {definition.spec.id!r} is used twice")
        seen.add(definition.spec.id)
    if not agents:
        raise WorldFileError("the world has no agents: define [[agents]] or keep default_agents = true")
    return WorldSpec(name=name, loop_length=loop_length, agents=tuple(agents))


def _agent(raw: object, number: int) -> AgentDefinition:
    where = f"agent #{number}"
    if not isinstance(raw, dict):
        raise WorldFileError(f"{where} must be a table")
    extra = set(raw) - _AGENT_KEYS
    if extra:
        raise WorldFileError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
    agent_id = raw.get("id")
    if not isinstance(agent_id, str) or not _ID.fullmatch(agent_id):
        raise WorldFileError(
            f"{where}: id must be lower case letters, digits and dashes (at most {MAX_AGENT_ID} characters), "
            f"got {_shown(agent_id)}"
        )
    where = f"agent {agent_id!r}"
    name = raw.get("name", agent_id)
    mind = raw.get("mind")
    voice = raw.get("voice", "measured")
    goals = raw.get("goals", [])
    traits = raw.get("traits", {})
    if not isinstance(name, str) or not name or len(name) > MAX_AGENT_NAME:
        raise WorldFileError(f"{where}: name must be a string of 1 to {MAX_AGENT_NAME} characters")
    if not isinstance(mind, str):
        raise WorldFileError(f"{where}: mind is required, one of {', '.join(MINDS)}, {LANGUAGE}")
    key, model = _mind(raw, mind, where)
    if voice not in VOICES:
        raise WorldFileError(f"{where}: unknown voice {_shown(voice)}; expected one of {', '.join(VOICES)}")
    if not isinstance(goals, list) or len(goals) > 8 or not all(isinstance(g, str) and 0 < len(g) <= 64 for g in goals):
        raise WorldFileError(f"{where}: goals must be a list of at most 8 short strings")
    if not isinstance(traits, dict):
        raise WorldFileError(f"{where}: traits must be a table such as {{ warmth = 0.8 }}")
    unknown = set(traits) - set(TRAITS)
    if unknown:
        raise WorldFileError(f"{where}: unknown trait(s) {', '.join(sorted(unknown))}; expected {', '.join(TRAITS)}")
    try:
        values = tuple(from_decimal(traits[t], what=f"trait {t}") if t in traits else HALF for t in TRAITS)
    except ValueError as exc:
        raise WorldFileError(f"{where}: {exc}") from None
    spec = AgentSpec(id=agent_id, name=name, mind=key, voice=voice, goals=tuple(goals), model=model)
    return AgentDefinition(spec=spec, traits=(values[0], values[1], values[2], values[3]))


def _mind(raw: dict[str, Any], mind: str, where: str) -> tuple[str, str]:
    """The built-in mind's key and, for a language agent, its model (``""`` for a built-in one)."""
    if mind != LANGUAGE:
        if "model" in raw or "fallback" in raw:
            raise WorldFileError(f"{where}: model and fallback belong to mind = {LANGUAGE!r}")
        key = MIND_ALIASES.get(mind, mind)
        if key not in MINDS:
            raise WorldFileError(
                f"{where}: unknown mind {_shown(mind)}; expected one of {', '.join(MINDS)}, {LANGUAGE}"
            )
        return key, ""
    model = raw.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > MAX_MODEL_NAME:
        raise WorldFileError(
            f"{where}: a language mind needs model, the model's name (1 to {MAX_MODEL_NAME} characters)"
        )
    fallback = raw.get("fallback", "executor")
    key = MIND_ALIASES.get(fallback, fallback) if isinstance(fallback, str) else ""
    if key not in MINDS:
        raise WorldFileError(f"{where}: unknown fallback mind {_shown(fallback)}; expected one of {', '.join(MINDS)}")
    return key, model


def _shown(value: object) -> str:
    """A value as an error message shows it: its repr, cut short when it is long (with its length)."""
    if isinstance(value, str) and len(value) > 2 * MAX_AGENT_ID:
        return f"{value[:MAX_AGENT_ID]!r}... ({len(value)} characters)"
    return repr(value)
