"""Property: any sequence of well-formed inputs raises nothing but Soulfra's own errors, and a recorded run
(its JSON input log) replays to the recorded hash."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soulfra.errors import SoulfraError
from soulfra.world import Input, World, WorldSpec, input_to_json, parse_input, schedule
from soulfra.world.genesis import DEFAULT_AGENTS
from soulfra.world.inputs import ACTIONS, TONES
from soulfra.world.model import TRAITS
from soulfra.world.vibe import PHASES

TICKS = 40
SPEC = WorldSpec(loop_length=15, agents=DEFAULT_AGENTS)
AGENTS = ("cal-riven", "arty", "agent-zero", "echo-00001", "echo-00002", "ghost")  # "ghost" does not exist
text = st.text(max_size=40)
agent = st.sampled_from(AGENTS)
tick = st.integers(min_value=0, max_value=TICKS - 1)
fraction = st.integers(min_value=0, max_value=1_000_000)


def _raw() -> st.SearchStrategy[dict[str, object]]:
    whisper = st.fixed_dictionaries(
        {"type": st.just("whisper"), "tick": tick, "target": st.one_of(agent, st.just("*")), "text": text,
         "tone": st.sampled_from(TONES)}
    )  # fmt: skip
    possess = st.fixed_dictionaries({"type": st.just("possess"), "tick": tick, "agent": agent})
    release = st.fixed_dictionaries({"type": st.just("release"), "tick": tick, "agent": agent})
    act = st.fixed_dictionaries(
        {"type": st.just("act"), "tick": tick, "agent": agent, "action": st.sampled_from(ACTIONS)},
        optional={"text": text, "topic": st.sampled_from(("tides", "maps", "")), "ritual": st.integers(0, 6),
                  "task": st.integers(0, 6), "participants": st.lists(agent, max_size=4), "goal": text},
    )  # fmt: skip
    personality = st.fixed_dictionaries(
        {"type": st.just("intervene"), "kind": st.just("personality"), "tick": tick, "agent": agent,
         "traits": st.dictionaries(st.sampled_from(TRAITS), fraction.map(lambda v: f"{v / 1_000_000:.6f}"),
                                   min_size=1)}
    )  # fmt: skip
    ritual = st.fixed_dictionaries(
        {"type": st.just("intervene"), "kind": st.just("ritual"), "tick": tick, "name": st.just("rite"),
         "participants": st.lists(agent, min_size=2, max_size=5), "blessed": st.booleans()}
    )  # fmt: skip
    vibe = st.fixed_dictionaries(
        {"type": st.just("intervene"), "kind": st.just("vibe"), "tick": tick, "condition": st.sampled_from(PHASES),
         "intensity": fraction.map(lambda v: f"{v / 1_000_000:.6f}"), "duration": st.integers(1, 30)}
    )  # fmt: skip
    return st.one_of(whisper, possess, release, act, personality, ritual, vibe)


def run(inputs: list[Input]) -> tuple[str, list[str]]:
    world = World.create(99, SPEC, agents=2)
    by_tick = schedule(inputs)
    kinds: list[str] = []
    for _ in range(TICKS):
        kinds.extend(e.kind for e in world.step(by_tick.get(world.tick, ())))
    return world.state_hash(), kinds


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_raw(), max_size=25))
def test_any_input_sequence_raises_only_domain_errors_and_replays(raws: list[dict[str, object]]) -> None:
    inputs: list[Input] = []
    for raw in raws:
        try:
            inputs.append(parse_input(raw))
        except SoulfraError:
            continue  # a well-typed but invalid combination is refused with our own error, never another
    inputs.sort(key=lambda item: item.tick)
    recorded_hash, recorded_kinds = run(inputs)
    log = "\n".join(json.dumps(input_to_json(item)) for item in inputs)
    replayed = [parse_input(json.loads(line)) for line in log.splitlines() if line]
    assert replayed == inputs
    assert run(replayed) == (recorded_hash, recorded_kinds)
