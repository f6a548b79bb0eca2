"""A genesis recipe: the few fields a tick-0 state is rebuilt from (seed, loop length, the defined agents, how many
generated ones), in place of the state itself. Only offered when rebuilding gives the very same state hash.
Language agents add their ``model`` (and generated ones, ``generated_model``), written only when there are some.
"""

from __future__ import annotations

import re
from typing import Any

from soulfra.errors import PackageError
from soulfra.world.encoding import decode_state, encode_state, encoded_hash
from soulfra.world.genesis import AgentDefinition, WorldSpec, genesis
from soulfra.world.model import AgentSpec

__all__ = ["genesis_recipe", "state_from_recipe"]

_GENERATED = re.compile(r"echo-\d{5,}")


def genesis_recipe(raw: bytes) -> dict[str, Any] | None:
    """The recipe of a tick-0 state (``encode_state`` bytes), or None when it cannot be rebuilt from one."""
    state = decode_state(raw)
    if state.tick != 0:
        return None
    defined = 0
    while defined < state.size and not _GENERATED.fullmatch(state.specs[defined].id):
        defined += 1
    agents: list[dict[str, Any]] = [
        {"id": s.id, "name": s.name, "mind": s.mind, "voice": s.voice, "goals": list(s.goals),
         "traits": [int(v) for v in state.traits[i]], **({"model": s.model} if s.model else {})}
        for i, s in enumerate(state.specs[:defined])
    ]  # fmt: skip
    recipe: dict[str, Any] = {
        "seed": state.seed, "loop_length": state.loop_length, "agents": agents, "generated": state.size - defined,
    }  # fmt: skip
    if state.size > defined and state.specs[defined].model:
        recipe["generated_model"] = state.specs[defined].model
    try:
        rebuilt = encode_state(_genesis(recipe))
    except (PackageError, ValueError):
        return None
    return recipe if encoded_hash(rebuilt) == encoded_hash(raw) else None


def state_from_recipe(recipe: object) -> bytes:
    """The tick-0 state bytes a recipe describes; ``PackageError`` for a malformed recipe."""
    if not isinstance(recipe, dict):
        raise PackageError("the genesis recipe is not a JSON object")
    return encode_state(_genesis(recipe))


def _genesis(recipe: dict[str, Any]) -> Any:
    try:
        agents = tuple(
            AgentDefinition(
                spec=AgentSpec(
                    id=a["id"],
                    name=a["name"],
                    mind=a["mind"],
                    voice=a["voice"],
                    goals=tuple(a["goals"]),
                    model=str(a.get("model", "")),
                ),
                traits=tuple(int(v) for v in a["traits"]),  # type: ignore[arg-type]
            )
            for a in recipe["agents"]
        )
        spec = WorldSpec(
            loop_length=int(recipe["loop_length"]),
            agents=agents,
            generated_model=str(recipe.get("generated_model", "")),
        )
        return genesis(int(recipe["seed"]), spec, extra_agents=int(recipe["generated"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise PackageError(f"the genesis recipe is malformed: {exc}") from None
    except Exception as exc:  # genesis' own refusals (a ConfigError for an impossible world)
        raise PackageError(f"the genesis recipe describes no valid world: {exc}") from None
