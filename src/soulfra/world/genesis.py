"""How a world begins: the three named agents, any agents a world file defines, and generated ones.

Everything here is a function of the seed; generated agents (``echo-00001`` ...) draw their mind, traits,
voice, goals and first moods from the ``GENESIS`` stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soulfra.errors import ConfigError
from soulfra.world.daemons.final_export import first_digest
from soulfra.world.fixed import SCALE
from soulfra.world.minds.voice import TOPICS, VOICES
from soulfra.world.model import ORDER, AgentSpec, LoopTrace, WorldState
from soulfra.world.rng import MASK, Purpose, Stream

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


def generated_agent(seed: int, number: int, mind: str | None = None, model: str = "") -> AgentDefinition:
    rng = Stream(seed, 0, number, Purpose.GENESIS)
    roll = rng.below(100)
    chosen = mind
    if chosen is None:
        for key, share in _GENERATED_MINDS:
            if roll < share:
                chosen = key
                break
            roll -= share
    traits = (
        150_000 + rng.below(700_000), 150_000 + rng.below(700_000),
        150_000 + rng.below(700_000), 150_000 + rng.below(700_000),
    )  # fmt: skip
    goals = (TOPICS[rng.below(len(TOPICS))], TOPICS[rng.below(len(TOPICS))])
    spec = AgentSpec(
        id=f"echo-{number:05d}", name=f"Echo {number}", mind=chosen or "executor", voice=rng.choice(VOICES),
        goals=goals if goals[0] != goals[1] else goals[:1], model=model,
    )  # fmt: skip
    return AgentDefinition(spec=spec, traits=traits)


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
    definitions = list(spec.agents)
    taken = {d.spec.id for d in definitions}
    number = 0
    while len(definitions) < len(spec.agents) + extra_agents:
        number += 1
        made = generated_agent(seed, number, mind, spec.generated_model)
        if made.spec.id not in taken:
            definitions.append(made)
    if not definitions:
        raise ConfigError("a world needs at least one agent")
    size = len(definitions)
    traits = np.array([d.traits for d in definitions], dtype=np.int64).reshape(size, 4)
    valence = np.empty(size, dtype=np.int64)
    arousal = np.empty(size, dtype=np.int64)
    energy = np.empty(size, dtype=np.int64)
    for i in range(size):
        rng = Stream(seed, 0, i, Purpose.MOOD_VALENCE)
        valence[i] = rng.below(600_001) - 300_000 + (traits[i, 0] - SCALE // 2) // 2
        arousal[i] = 250_000 + rng.below(400_000)
        energy[i] = 700_000 + rng.below(300_001)
    return WorldState(
        seed=seed, tick=0, loop_length=spec.loop_length, specs=tuple(d.spec for d in definitions), traits=traits,
        valence=valence, arousal=arousal, energy=energy, focus=traits[:, ORDER].copy(), possessed={}, whispers={},
        memory={}, affinity={}, threads={}, rituals={}, tasks={}, ledger={}, next_id={},
        loop=LoopTrace(index=0, start=0, digest=first_digest(0)), pending_seed=None, vibe=None, vibe_history=(),
        vibe_override=None,
    )  # fmt: skip
