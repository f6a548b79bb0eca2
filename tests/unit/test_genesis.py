"""Genesis draws every generated agent and every first mood from its own stream: the bulk draws give, agent by
agent, what ``Stream`` gives one draw at a time, so a world begins the same however it is computed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soulfra.errors import ConfigError
from soulfra.world import encode_state, state_hash
from soulfra.world.fixed import SCALE
from soulfra.world.genesis import (
    DEFAULT_AGENTS,
    DEFAULT_WORLD,
    AgentDefinition,
    WorldSpec,
    genesis,
)
from soulfra.world.minds.voice import TOPICS, VOICES
from soulfra.world.model import AgentSpec, WorldState
from soulfra.world.rng import Purpose, Stream

SHARES = (("governor", 5), ("orchestrator", 30), ("executor", 65))


def one_agent(seed: int, number: int, mind: str | None, model: str) -> AgentDefinition:
    """A generated agent drawn one value at a time from its stream, in the documented order."""
    rng = Stream(seed, 0, number, Purpose.GENESIS)
    roll, chosen = rng.below(100), mind
    if chosen is None:
        for key, share in SHARES:
            if roll < share:
                chosen = key
                break
            roll -= share
    traits = tuple(150_000 + rng.below(700_000) for _ in range(4))
    goals = (TOPICS[rng.below(len(TOPICS))], TOPICS[rng.below(len(TOPICS))])
    spec = AgentSpec(
        id=f"echo-{number:05d}", name=f"Echo {number}", mind=chosen or "executor", voice=rng.choice(VOICES),
        goals=goals if goals[0] != goals[1] else goals[:1], model=model,
    )  # fmt: skip
    return AgentDefinition(spec=spec, traits=traits)  # type: ignore[arg-type]


def one_at_a_time(seed: int, spec: WorldSpec, extra: int, mind: str | None) -> WorldState:
    """Genesis with every draw taken from ``Stream``, agent by agent."""
    definitions, taken, number = list(spec.agents), {d.spec.id for d in spec.agents}, 0
    while len(definitions) < len(spec.agents) + extra:
        number += 1
        made = one_agent(seed, number, mind, spec.generated_model)
        if made.spec.id not in taken:
            definitions.append(made)
    state = genesis(seed, spec, extra_agents=extra, mind=mind)  # the parts that are not drawn
    size = len(definitions)
    traits = np.array([d.traits for d in definitions], dtype=np.int64).reshape(size, 4)
    valence, arousal, energy = (np.empty(size, dtype=np.int64) for _ in range(3))
    for i in range(size):
        rng = Stream(seed, 0, i, Purpose.MOOD_VALENCE)
        valence[i] = rng.below(600_001) - 300_000 + (int(traits[i, 0]) - SCALE // 2) // 2
        arousal[i] = 250_000 + rng.below(400_000)
        energy[i] = 700_000 + rng.below(300_001)
    state.specs, state.traits, state.focus = tuple(d.spec for d in definitions), traits, traits[:, 2].copy()
    state.valence, state.arousal, state.energy = valence, arousal, energy
    state.index = {s.id: i for i, s in enumerate(state.specs)}
    return state


def assert_same(bulk: WorldState, single: WorldState) -> None:
    assert bulk.specs == single.specs
    for name in ("traits", "valence", "arousal", "energy", "focus"):
        assert getattr(bulk, name).tolist() == getattr(single, name).tolist(), name
    assert encode_state(bulk) == encode_state(single)
    assert state_hash(bulk) == state_hash(single)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, (1 << 64) - 1),
    st.integers(0, 300),
    st.sampled_from([None, "", "governor", "contagion"]),
)
def test_generated_agents_and_first_moods_are_each_agents_own_draws(seed: int, extra: int, mind: str | None) -> None:
    assert_same(
        genesis(seed, DEFAULT_WORLD, extra_agents=extra, mind=mind), one_at_a_time(seed, DEFAULT_WORLD, extra, mind)
    )


def test_a_number_whose_id_a_defined_agent_has_is_passed_over() -> None:
    two = AgentSpec(id="echo-00002", name="Two", mind="executor", voice="terse", goals=("maps",))
    named = AgentDefinition(spec=two, traits=(1, 2, 3, 4))
    spec = WorldSpec(agents=(*DEFAULT_AGENTS, named), generated_model="tiny")
    state = genesis(9, spec, extra_agents=5)
    assert [s.id for s in state.specs[4:]] == ["echo-00001", "echo-00003", "echo-00004", "echo-00005", "echo-00006"]
    assert {s.model for s in state.specs[4:]} == {"tiny"}
    assert_same(state, one_at_a_time(9, spec, 5, None))


def test_a_world_of_generated_agents_alone_begins_alike() -> None:
    spec = WorldSpec(agents=())
    assert_same(genesis(3, spec, extra_agents=50), one_at_a_time(3, spec, 50, None))
    with pytest.raises(ConfigError, match="at least one agent"):
        genesis(3, spec)


def test_ten_thousand_agents_begin_alike_and_the_minds_are_shared_as_documented() -> None:
    state = genesis(20261126, DEFAULT_WORLD, extra_agents=9_997)
    assert_same(state, one_at_a_time(20261126, DEFAULT_WORLD, 9_997, None))
    minds = [s.mind for s in state.specs[3:]]
    shares = {mind: minds.count(mind) / len(minds) for mind, _ in SHARES}
    assert shares == pytest.approx({"governor": 0.05, "orchestrator": 0.30, "executor": 0.65}, abs=0.02)
