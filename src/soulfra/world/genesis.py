"""How a world begins: the three named agents, any agents a world file defines, and generated ones.

Everything here is a function of the seed; generated agents (``echo-00001`` ...) draw their mind, traits,
voice, goals and first moods from the ``GENESIS`` stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from soulfra.errors import ConfigError
from soulfra.world.daemons.final_export import first_digest
from soulfra.world.fixed import SCALE
from soulfra.world.minds.voice import TOPICS, VOICES
from soulfra.world.model import ORDER, AgentSpec, I64Array, LoopTrace, WorldState
from soulfra.world.rng import MASK, Purpose, below_each, draws

MAX_AGENTS = 1_000_000
DEFAULT_LOOP_LENGTH = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentDefinition:
    spec: AgentSpec
    traits: tuple[int, int, int, int]  # warmth, curiosity, order, chaos


@dataclass(frozen=True, slots=True, kw_only=True)
class WorldSpec:
    """A world's definition before it starts (what a world file describes)."""

    name: str = "soulfra"
    loop_length: int = DEFAULT_LOOP_LENGTH
    agents: tuple[AgentDefinition, ...] = ()
    generated_model: str = ""  # generated agents are language agents of this model (their drawn mind, the fallback)


CAL_RIVEN = AgentDefinition(
    spec=AgentSpec(id="cal-riven", name="Cal Riven", mind="governor", voice="measured",
                   goals=("trust", "thresholds")),
    traits=(550_000, 400_000, 900_000, 100_000),
)  # fmt: skip
ARTY = AgentDefinition(
    spec=AgentSpec(id="arty", name="Arty", mind="orchestrator", voice="lyrical", goals=("lanterns", "echoes")),
    traits=(800_000, 850_000, 450_000, 500_000),
)
AGENT_ZERO = AgentDefinition(
    spec=AgentSpec(id="agent-zero", name="Agent Zero", mind="executor", voice="terse", goals=("the archive", "maps")),
    traits=(400_000, 500_000, 800_000, 200_000),
)
DEFAULT_AGENTS = (CAL_RIVEN, ARTY, AGENT_ZERO)
DEFAULT_WORLD = WorldSpec(agents=DEFAULT_AGENTS)

_GENERATED_MINDS = (("governor", 5), ("orchestrator", 30), ("executor", 65))
_GENERATED_MIND = tuple(mind for mind, share in _GENERATED_MINDS for _ in range(share))  # by the roll, 0..99


def _drawn(seed: int, agents: npt.NDArray[np.uint64], purpose: int, counter: int, n: int) -> I64Array:
    """``Stream(seed, 0, agent, purpose)``'s draw number ``counter``, mapped onto ``range(n)``, for every agent."""
    return below_each(draws(seed, 0, agents, purpose, counter), n).astype(np.int64)


def generated_agents(
    seed: int, numbers: Sequence[int], mind: str | None = None, model: str = ""
) -> tuple[list[AgentSpec], I64Array]:
    """The generated agents of these numbers, with their traits as rows. Each agent's draws come from its own
    ``GENESIS`` stream of tick 0 (``Stream(seed, 0, number, GENESIS)``: the mind's roll, four traits, two goals, a
    voice, in that order), drawn here for all of them at once."""
    keys = np.asarray(numbers, dtype=np.uint64)
    traits = np.column_stack([150_000 + _drawn(seed, keys, Purpose.GENESIS, c, 700_000) for c in (1, 2, 3, 4)])
    rolls, firsts, seconds, voices = (
        _drawn(seed, keys, Purpose.GENESIS, counter, n).tolist()
        for counter, n in ((0, 100), (5, len(TOPICS)), (6, len(TOPICS)), (7, len(VOICES)))
    )
    specs = []
    for number, roll, first, second, voice in zip(numbers, rolls, firsts, seconds, voices, strict=True):
        chosen = _GENERATED_MIND[roll] if mind is None else mind or "executor"
        specs.append(AgentSpec(
            id=f"echo-{number:05d}", name=f"Echo {number}", mind=chosen, voice=VOICES[voice],
            goals=(TOPICS[first], TOPICS[second]) if first != second else (TOPICS[first],), model=model,
        ))  # fmt: skip
    return specs, traits


def genesis(
    seed: int, spec: WorldSpec = DEFAULT_WORLD, *, extra_agents: int = 0, mind: str | None = None
) -> WorldState:
    """The state at tick 0. ``extra_agents`` generated agents join ``spec``'s, all with ``mind`` if given."""
    if not 0 <= seed <= MASK:
        raise ConfigError(f"seed must be between 0 and {MASK}, got {seed}")
    if extra_agents < 0 or len(spec.agents) + extra_agents > MAX_AGENTS:
        raise ConfigError(f"a world holds 1 to {MAX_AGENTS} agents; asked for {len(spec.agents) + extra_agents}")
    if spec.loop_length < 1:
        raise ConfigError("loop_length must be at least 1")
    taken = {d.spec.id for d in spec.agents}
    specs = [d.spec for d in spec.agents]
    rows = [np.array([d.traits for d in spec.agents], dtype=np.int64).reshape(len(specs), 4)]
    number = 0
    while len(specs) < len(spec.agents) + extra_agents:  # a number whose id a defined agent has is passed over
        wanted = len(spec.agents) + extra_agents - len(specs)
        made, traits = generated_agents(seed, range(number + 1, number + wanted + 1), mind, spec.generated_model)
        number += wanted
        kept = [i for i, agent in enumerate(made) if agent.id not in taken]
        specs.extend(made[i] for i in kept)
        rows.append(traits[kept])
    if not specs:
        raise ConfigError("a world needs at least one agent")
    size = len(specs)
    traits = np.concatenate(rows).reshape(size, 4)
    indices = np.arange(size, dtype=np.uint64)
    valence = _drawn(seed, indices, Purpose.MOOD_VALENCE, 0, 600_001) - 300_000 + (traits[:, 0] - SCALE // 2) // 2
    arousal = 250_000 + _drawn(seed, indices, Purpose.MOOD_VALENCE, 1, 400_000)
    energy = 700_000 + _drawn(seed, indices, Purpose.MOOD_VALENCE, 2, 300_001)
    return WorldState(
        seed=seed, tick=0, loop_length=spec.loop_length, specs=tuple(specs), traits=traits,
        valence=valence, arousal=arousal, energy=energy, focus=traits[:, ORDER].copy(), possessed={}, whispers={},
        memory={}, affinity={}, threads={}, rituals={}, tasks={}, ledger={}, next_id={},
        loop=LoopTrace(index=0, start=0, digest=first_digest(0)), pending_seed=None, vibe=None, vibe_history=(),
        vibe_override=None,
    )  # fmt: skip
