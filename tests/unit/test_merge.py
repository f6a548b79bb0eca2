"""Three-way merge of world states: the rule's properties, every conflict reported and resolved by its policy,
renumbered ids, the world's limits, refusals, and a merged world that keeps running deterministically."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soulfra.errors import InputError, MergeError
from soulfra.meta.diff import plain
from soulfra.meta.merge import DEFAULT_POLICIES, DOMAINS, POLICIES, MergeResult, merge_states, parse_policies
from soulfra.world import (
    AlterVibe,
    ChangePersonality,
    InjectRitual,
    Input,
    Possess,
    Whisper,
    World,
    WorldSpec,
    WorldState,
    state_hash,
)
from soulfra.world.daemons.thread_weaver import max_open
from soulfra.world.genesis import DEFAULT_AGENTS
from soulfra.world.model import AFFINITY_LIMIT, MEMORY_LIMIT, TRAITS, WARMTH, AgentSpec, Thread, VibeOverride
from soulfra.world.vibe import PHASES

SPEC = WorldSpec(loop_length=30, agents=DEFAULT_AGENTS)
AGENTS = ("cal-riven", "arty", "agent-zero", "echo-00001", "echo-00002")
KINDS = ("whisper", "personality", "vibe", "ritual")
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Plan = Sequence[tuple[int, str, str, int]]  # (tick offset, kind, agent, value)


def make_input(tick: int, kind: str, agent: str, value: int) -> Input:
    if kind == "whisper":
        return Whisper(tick=tick, target=agent, text=f"the tide turns {value}", tone="playful")
    if kind == "personality":
        return ChangePersonality(tick=tick, agent=agent, traits=(("warmth", value),))
    if kind == "vibe":
        return AlterVibe(tick=tick, condition=PHASES[value % len(PHASES)], intensity=value, duration=10)
    other = "arty" if agent == "cal-riven" else "cal-riven"
    return InjectRitual(tick=tick, name=f"rite {value % 3}", participants=(agent, other), blessed=value % 2 == 0)


def advance(state: WorldState, ticks: int, plan: Plan = ()) -> WorldState:
    """A new state: ``state`` stepped ``ticks`` times with ``plan``'s inputs (offsets from its tick)."""
    world = World(state.copy())
    start = world.tick
    for _ in range(ticks):
        offset = world.tick - start
        world.step([make_input(world.tick, k, a, v) for o, k, a, v in plan if o == offset])
    return world.state


def root(seed: int = 7, ticks: int = 12, agents: int = 2) -> WorldState:
    return advance(World.create(seed, SPEC, agents=agents).state, ticks)


plans = st.lists(
    st.tuples(
        st.integers(0, 9), st.sampled_from(KINDS), st.sampled_from(AGENTS), st.integers(0, 1_000_000)
    ),
    max_size=6,
)  # fmt: skip


@st.composite
def forks(draw: st.DrawFn) -> tuple[WorldState, WorldState, WorldState]:
    """A common ancestor and two descendants stepped apart, for different tick counts, with different inputs."""
    base = root(draw(st.integers(0, 2**32)), draw(st.integers(0, 25)))
    ours = advance(base, draw(st.integers(0, 20)), draw(plans))
    theirs = advance(base, draw(st.integers(0, 20)), draw(plans))
    return base, ours, theirs


def reordered(state: WorldState) -> WorldState:
    """The same state with every dict built in the reverse order."""
    copy = state.copy()
    for name in ("possessed", "whispers", "memory", "threads", "rituals", "tasks", "ledger", "next_id"):
        setattr(copy, name, dict(reversed(getattr(copy, name).items())))
    copy.affinity = {agent: dict(reversed(row.items())) for agent, row in reversed(copy.affinity.items())}
    copy.loop.topics = dict(reversed(copy.loop.topics.items()))
    return copy


def triples(result: MergeResult) -> set[tuple[str, str, str]]:
    return {(c.domain, c.entity, c.field) for c in result.conflicts}


# -- the rule's properties ----------------------------------------------------------------------------------------


@PROPERTY
@given(forks())
def test_merging_a_state_with_itself_gives_it_back(states: tuple[WorldState, WorldState, WorldState]) -> None:
    for x in states:
        result = merge_states(x, x, x)
        assert state_hash(result.state) == state_hash(x)
        assert result.conflicts == ()
        assert all(count == 0 for counts in result.changes.values() for count in counts.values())


@PROPERTY
@given(forks())
def test_a_side_equal_to_the_ancestor_yields_to_the_other(states: tuple[WorldState, WorldState, WorldState]) -> None:
    base, ours, theirs = states
    for policy in POLICIES:
        policies = dict.fromkeys(DOMAINS, policy)
        taken = merge_states(base, base, theirs, policies=policies)
        kept = merge_states(base, ours, base, policies=policies)
        assert state_hash(taken.state) == state_hash(theirs)
        assert state_hash(kept.state) == state_hash(ours)
        assert taken.conflicts == kept.conflicts == ()


@PROPERTY
@given(forks())
def test_merge_is_deterministic_pure_and_gives_a_world_that_keeps_running(
    states: tuple[WorldState, WorldState, WorldState],
) -> None:
    base, ours, theirs = states
    before = [state_hash(s) for s in states]
    result = merge_states(base, ours, theirs)
    again = merge_states(reordered(base), reordered(ours), reordered(theirs))
    assert state_hash(again.state) == state_hash(result.state)
    assert again.conflicts == result.conflicts
    assert again.to_json() == result.to_json()
    json.dumps(result.to_json())  # the report is plain JSON

    merged = result.state
    assert merged.seed == ours.seed
    assert merged.tick == max(ours.tick, theirs.tick)
    assert all(len(row) <= AFFINITY_LIMIT for row in merged.affinity.values())
    assert all(len(memory) <= MEMORY_LIMIT for memory in merged.memory.values())
    assert len(merged.threads) <= max_open(merged)
    for kind, records in (("thread", merged.threads), ("ritual", merged.rituals), ("task", merged.tasks)):
        assert all(key == record.id < merged.next_id[kind] for key, record in records.items())

    runs = []
    for _ in range(2):
        world = World(merged.copy())
        for _ in range(50):
            world.step()
        runs.append(world.state_hash())
    assert runs[0] == runs[1]

    # the result shares nothing mutable with the inputs: wrecking it leaves them as they were
    for name in ("traits", "valence", "arousal", "energy", "focus"):
        getattr(merged, name)[...] = 0
    for name in ("possessed", "whispers", "memory", "threads", "rituals", "tasks", "ledger", "next_id"):
        getattr(merged, name).clear()
    for row in merged.affinity.values():
        row.clear()
    merged.loop.topics.clear()
    merged.loop.posts = -1
    assert [state_hash(s) for s in states] == before


@PROPERTY
@given(forks())
def test_every_mood_and_trait_changed_on_both_sides_is_reported(
    states: tuple[WorldState, WorldState, WorldState],
) -> None:
    base, ours, theirs = states
    expected: set[tuple[str, str, str]] = set()
    for name in ("traits", "valence", "arousal", "energy", "focus"):
        b, o, t = getattr(base, name), getattr(ours, name), getattr(theirs, name)
        for index in np.argwhere((o != t) & (o != b) & (t != b)):
            field = TRAITS[index[1]] if name == "traits" else name
            expected.add(("agents", ours.specs[index[0]].id, field))
    result = merge_states(base, ours, theirs, policies={"agents": "theirs"})
    others = ("possessed", "whisper", "memory")
    assert {key for key in triples(result) if key[0] == "agents" and key[2] not in others} == expected
    assert all(c.resolved == c.theirs for c in result.conflicts if c.domain == "agents")


# -- conflicts and policies ---------------------------------------------------------------------------------------


def conflicted() -> tuple[WorldState, WorldState, WorldState, int, int]:
    """An ancestor and two sides that both change exactly ten values; ours is the later state."""
    base = root(agents=1)
    tick = base.tick
    x, y = base.take_id("thread"), base.take_id("thread")
    thread = Thread(id=x, topic="tides", opened=tick - 5, last=tick - 1, posts=3, participants=(0, 1),
                    recent=((tick - 1, 0, "hello"),))  # fmt: skip
    base.threads = {x: thread, y: replace(thread, id=y, topic="maps")}
    base.ledger = {"artifacts": 2}
    base.affinity = {0: {1: 100_000}}
    base.memory = {0: (f"{tick - 2}:posted", f"{tick - 1}:rested")}
    base.valence[2] = 7
    base.vibe_override = None
    ours, theirs = base.copy(), base.copy()
    ours.tick, theirs.tick = tick + 3, tick + 2
    ours.traits[1, WARMTH], theirs.traits[1, WARMTH] = 200_000, 501_001
    ours.valence[2], theirs.valence[2] = -3, 0
    ours.memory[0] = (*base.memory[0], f"{tick + 1}:ours")
    theirs.memory[0] = (*base.memory[0], f"{tick + 2}:theirs")
    ours.threads[x] = replace(thread, last=tick + 1, posts=4)
    theirs.threads[x] = replace(thread, last=tick + 2, posts=5)
    del ours.threads[y]
    theirs.threads[y] = replace(base.threads[y], last=tick + 2, posts=4)
    ours.ledger["artifacts"], theirs.ledger["artifacts"] = 5, 4
    ours.affinity[0][1], theirs.affinity[0][1] = 300_000, 600_000
    ours.vibe_override = VibeOverride(condition="calm-bloom", intensity=500_000, until=tick + 20)
    theirs.vibe_override = VibeOverride(condition="chaos-bloom", intensity=700_000, until=tick + 20)
    ours.loop.posts, theirs.loop.posts = base.loop.posts + 1, base.loop.posts + 2
    return base, ours, theirs, x, y


# For each policy, every conflict's resolution: "ours"/"theirs" name a side's value, (label, value) a computed one.
def expectations(tick: int, x: int, y: int) -> dict[str, dict[tuple[str, str, str], Any]]:
    keys = {
        "warmth": ("agents", "arty", "warmth"), "valence": ("agents", "agent-zero", "valence"),
        "memory": ("agents", "cal-riven", "memory"), "last": ("threads", str(x), "last"),
        "posts": ("threads", str(x), "posts"), "gone": ("threads", str(y), "*"),
        "affinity": ("affinities", "cal-riven", "arty"), "override": ("vibe", "vibe_override", "*"),
        "ledger": ("ledger", "artifacts", "value"), "loop": ("loop", "loop", "posts"),
    }  # fmt: skip
    memory = [f"{tick - 2}:posted", f"{tick - 1}:rested", f"{tick + 1}:ours", f"{tick + 2}:theirs"]
    table: dict[str, dict[str, Any]] = {
        "ours": dict.fromkeys(keys, "ours"),
        "theirs": dict.fromkeys(keys, "theirs"),
        "newest": {"warmth": "ours", "valence": "ours", "memory": "theirs", "last": "theirs", "posts": "theirs",
                   "gone": "theirs", "affinity": "ours", "override": "ours", "ledger": "ours", "loop": "ours"},
        "mean": {"warmth": ("mean", 350_500), "valence": ("mean", -2), "memory": ("mean→newest", "theirs"),
                 "last": ("mean", tick + 1), "posts": ("mean", 4), "gone": ("mean→newest", "theirs"),
                 "affinity": ("mean", 450_000), "override": ("mean→newest", "ours"), "ledger": ("mean", 4),
                 "loop": ("mean", None)},
        "union": {"warmth": ("union→newest", "ours"), "valence": ("union→newest", "ours"),
                  "memory": ("union", memory), "last": ("union→newest", "theirs"),
                  "posts": ("union→newest", "theirs"), "gone": ("union", "theirs"),
                  "affinity": ("union→newest", "ours"), "override": ("union→newest", "ours"), "ledger": ("union", 7),
                  "loop": ("union→newest", "ours")},
        "defaults": {"warmth": ("mean", 350_500), "valence": ("mean", -2), "memory": ("mean→newest", "theirs"),
                     "last": ("union→newest", "theirs"), "posts": ("union→newest", "theirs"),
                     "gone": ("union", "theirs"), "affinity": ("mean", 450_000), "override": "ours",
                     "ledger": ("union", 7), "loop": "ours"},
    }  # fmt: skip
    return {policy: {keys[name]: want for name, want in wants.items()} for policy, wants in table.items()}


@pytest.mark.parametrize("policy", [*POLICIES, "defaults"])
def test_every_conflict_is_reported_and_resolved_by_its_policy(policy: str) -> None:
    base, ours, theirs, x, y = conflicted()
    policies = None if policy == "defaults" else dict.fromkeys(DOMAINS, policy)
    result = merge_states(base, ours, theirs, policies=policies)
    expected = expectations(base.tick, x, y)[policy]
    assert triples(result) == set(expected)
    for conflict in result.conflicts:
        want = expected[(conflict.domain, conflict.entity, conflict.field)]
        label, value = want if isinstance(want, tuple) else (policy, want)
        if policy == "defaults" and not isinstance(want, tuple):
            label = DEFAULT_POLICIES[conflict.domain]
        if value is None:  # the mean of the loop's post counts
            value = (conflict.ours + conflict.theirs) // 2
        value = conflict.ours if value == "ours" else conflict.theirs if value == "theirs" else value
        assert (conflict.policy, conflict.resolved) == (label, value), conflict
    assert sum(counts["conflicts"] for counts in result.changes.values()) == 10
    assert result.policies == (parse_policies(policies))


def test_the_merged_state_holds_the_resolved_values() -> None:
    base, ours, theirs, x, y = conflicted()
    merged = merge_states(base, ours, theirs).state
    assert int(merged.traits[1, WARMTH]) == 350_500
    assert int(merged.valence[2]) == -2
    assert merged.ledger == {"artifacts": 7}
    assert merged.affinity == {0: {1: 450_000}}
    assert merged.threads[x] == theirs.threads[x]
    assert merged.threads[y] == theirs.threads[y]  # deleted on ours, changed on theirs: union keeps the change
    assert merged.vibe_override == ours.vibe_override
    assert merged.memory[0] == theirs.memory[0]
    assert merged.tick == ours.tick


def test_deleted_on_one_side_and_unchanged_on_the_other_stays_deleted() -> None:
    base, ours, theirs, _, y = conflicted()
    theirs.threads[y] = base.threads[y]
    result = merge_states(base, ours, theirs)
    assert y not in result.state.threads
    assert ("threads", str(y), "*") not in triples(result)


def test_personality_changed_on_both_sides_is_one_reported_trait_conflict() -> None:
    base = root()
    ours = advance(base, 8, [(0, "personality", "arty", 200_000)])
    theirs = advance(base, 5, [(0, "personality", "arty", 600_001)])
    result = merge_states(base, ours, theirs)
    traits = [c for c in result.conflicts if c.field in TRAITS]
    assert [(c.domain, c.entity, c.field, c.policy, c.resolved) for c in traits] == [
        ("agents", "arty", "warmth", "mean", 400_000)
    ]
    assert int(result.state.traits[1, WARMTH]) == 400_000


# -- renumbering and limits ---------------------------------------------------------------------------------------


def test_threads_both_sides_opened_under_the_same_id_both_survive() -> None:
    base = root()
    base.threads = {}
    ours, theirs = base.copy(), base.copy()
    for state, topic in ((ours, "tides"), (theirs, "maps")):
        new = state.take_id("thread")
        state.threads[new] = Thread(id=new, topic=topic, opened=state.tick, last=state.tick, posts=1,
                                    participants=(0,), recent=((state.tick, 0, topic),))  # fmt: skip
        same = state.take_id("thread")  # a second one, identical on both sides: one entity, kept once
        state.threads[same] = Thread(id=same, topic="lanterns", opened=state.tick, last=state.tick, posts=0,
                                     participants=(), recent=())  # fmt: skip
    result = merge_states(base, ours, theirs)
    merged = result.state
    first = base.next_id.get("thread", 1)
    assert {key: t.topic for key, t in merged.threads.items()} == {
        first: "tides",
        first + 1: "lanterns",
        first + 2: "maps",
    }
    assert merged.threads[first + 2].id == first + 2
    assert merged.next_id["thread"] == first + 3
    assert result.renumbered == {"threads": {first: first + 2}}
    assert result.changes["threads"]["renumbered"] == 1
    assert result.conflicts == ()


def test_rituals_injected_on_both_sides_both_survive_the_merge() -> None:
    world = World(root())
    world.step([Possess(tick=world.tick, agent="cal-riven")])  # nobody blesses: the rituals wait
    base = world.state
    ours = advance(base, 3, [(0, "ritual", "arty", 1)])
    theirs = advance(base, 4, [(0, "ritual", "arty", 3)])  # odd values: injected unblessed
    (mine,) = set(ours.rituals) - set(base.rituals)
    (yours,) = set(theirs.rituals) - set(base.rituals)
    assert mine == yours
    result = merge_states(base, ours, theirs)
    names = sorted(r.name for r in result.state.rituals.values() if r.id not in base.rituals)
    assert names == ["rite 0", "rite 1"]
    fresh = result.renumbered["rituals"][yours]
    assert result.state.rituals[fresh] == replace(theirs.rituals[yours], id=fresh)
    assert result.state.next_id["ritual"] == fresh + 1
    world = World(result.state)
    for _ in range(50):
        world.step()


def test_a_union_of_affinities_past_the_limit_keeps_the_strongest() -> None:
    base = root(agents=17)
    base.affinity = {0: {other: 100_000 + other for other in range(1, 11)}}
    ours, theirs = base.copy(), base.copy()
    ours.affinity[0].update({other: 50_000 + other for other in range(11, 15)})
    theirs.affinity[0].update({other: 300_000 + other for other in range(15, 20)})
    result = merge_states(base, ours, theirs)
    row = result.state.affinity[0]
    assert len(row) == AFFINITY_LIMIT
    assert set(row) == set(range(1, 20)) - {11, 12, 13}  # the three weakest ties went
    assert result.changes["affinities"] == {
        "taken_from_ours": 4, "taken_from_theirs": 5, "conflicts": 0, "renumbered": 0, "trimmed": 3
    }  # fmt: skip


def test_a_union_of_memories_past_the_limit_keeps_the_newest_and_says_so() -> None:
    base = root()
    tick = base.tick
    base.memory = {0: tuple(f"{tick - 6 + i}:old {i}" for i in range(6))}
    ours, theirs = base.copy(), base.copy()
    ours.memory[0] = (*base.memory[0], f"{tick}:a", f"{tick + 2}:c")
    theirs.memory[0] = (*base.memory[0], f"{tick + 1}:b", f"{tick + 3}:d", f"{tick + 4}:e")
    result = merge_states(base, ours, theirs, policies={"agents": "union"})
    assert result.state.memory[0] == (
        f"{tick - 3}:old 3", f"{tick - 2}:old 4", f"{tick - 1}:old 5",
        f"{tick}:a", f"{tick + 1}:b", f"{tick + 2}:c", f"{tick + 3}:d", f"{tick + 4}:e",
    )  # fmt: skip
    (conflict,) = result.conflicts
    assert conflict.policy == "union, 3 trimmed to the limit"
    assert result.changes["agents"]["trimmed"] == 3


def test_a_union_of_threads_past_the_world_bound_closes_the_stalest() -> None:
    base = root()
    base.threads = {}
    ours, theirs = base.copy(), base.copy()
    for state, offset in ((ours, 0), (theirs, 100)):
        for i in range(5):
            new = state.take_id("thread")
            last = state.tick + offset + i
            state.threads[new] = Thread(
                id=new, topic=f"topic {offset + i}", opened=state.tick, last=last, posts=1, participants=(0,), recent=()
            )
    result = merge_states(base, ours, theirs)
    limit = max_open(base)
    assert len(result.state.threads) == limit
    assert result.changes["threads"]["trimmed"] == 10 - limit
    kept = sorted(t.topic for t in result.state.threads.values())
    assert kept == sorted(f"topic {i}" for i in [*range(10 - limit, 5), *range(100, 105)])


# -- refusals -----------------------------------------------------------------------------------------------------


def test_policies_default_and_are_validated() -> None:
    assert parse_policies(None) == dict(DEFAULT_POLICIES)
    assert parse_policies({"vibe": "ours"}) == {**DEFAULT_POLICIES, "vibe": "ours"}
    assert set(DEFAULT_POLICIES) == set(DOMAINS)
    with pytest.raises(InputError, match="unknown merge domain 'weather'; expected one of agents, threads"):
        parse_policies({"weather": "ours"})
    with pytest.raises(InputError, match="'sideways' for threads; expected one of ours, theirs, newest, union, mean"):
        parse_policies({"threads": "sideways"})


def test_worlds_with_different_agents_or_loops_are_refused() -> None:
    base = root()
    with pytest.raises(MergeError, match="theirs has 6 agents, the ancestor 5"):
        merge_states(base, base, root(agents=3))
    renamed = base.copy()
    renamed.specs = (*base.specs[:-1], replace(base.specs[-1], mind="governor"))
    with pytest.raises(MergeError, match="agent 4 differs in mind"):
        merge_states(base, renamed, base)
    longer = base.copy()
    longer.loop_length = 99
    with pytest.raises(MergeError, match="loop length 99"):
        merge_states(base, base, longer)


def test_conflict_values_are_plain_json() -> None:
    assert plain((1, np.int64(2), b"\x01", {2: "b", 1: None})) == [1, 2, "01", {"1": None, "2": "b"}]
    assert plain(AgentSpec(id="a", name="A", mind="m", voice="v", goals=("g",)))["goals"] == ["g"]
