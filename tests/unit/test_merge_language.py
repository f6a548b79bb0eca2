"""Merging language worlds: the pending thoughts (``state.thinking``) follow the three-way rule, a thought whose due
tick the merged world has passed is dropped and counted, and agents whose models differ are refused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from soulfra.errors import MergeError
from soulfra.meta.merge import merge_states
from soulfra.world import World, WorldSpec, WorldState, state_hash
from soulfra.world.genesis import DEFAULT_AGENTS

SPEC = WorldSpec(loop_length=30, agents=DEFAULT_AGENTS, generated_model="tiny")


def advance(state: WorldState, ticks: int) -> WorldState:
    world = World(state.copy())
    for _ in range(ticks):
        world.step()
    return world.state


def language_world(ticks: int = 10) -> WorldState:
    """A world of three built-in agents and nine language agents (3 to 11), ``ticks`` ticks on, none thinking."""
    state = advance(World.create(11, SPEC, agents=9).state, ticks)
    state.thinking.clear()
    return state


def test_merging_a_thinking_world_with_itself_gives_it_back() -> None:
    state = advance(World.create(11, SPEC, agents=9).state, 12)
    assert state.thinking, "some language agent is thinking"
    result = merge_states(state, state, state)
    assert result.state.thinking == state.thinking
    assert state_hash(result.state) == state_hash(state)


def test_pending_thoughts_follow_the_three_way_rule() -> None:
    base = language_world()
    ours, theirs = advance(base, 4), advance(base, 2)
    b, t = base.tick, ours.tick  # the merged world starts at ours' tick, the later one
    base.thinking.update({3: b + 1, 7: b + 1})
    ours.thinking.clear()
    theirs.thinking.clear()
    ours.thinking.update({4: t, 6: t + 1, 8: t + 1})
    theirs.thinking.update({5: theirs.tick + 1, 6: t, 7: t + 1, 8: t + 1})
    result = merge_states(base, ours, theirs)
    assert result.state.tick == t
    assert result.state.thinking == {
        # 3 finished its thought on both sides; 5's is due before the merged world's first tick: both gone
        4: t,  # started on ours only
        6: t + 1,  # both sides started one: the later (newer) thought, not the mean of the two due ticks
        7: t + 1,  # finished on ours, started anew on theirs: the change is kept
        8: t + 1,  # the same thought on both sides
    }
    assert result.changes["agents"]["trimmed"] == 1  # 5's
    [conflict] = [c for c in result.conflicts if c.field == "thinking" and c.entity == base.specs[6].id]
    assert (conflict.ours, conflict.theirs, conflict.resolved, conflict.policy) == (t + 1, t, t + 1, "mean→newest")
    theirs_policy = merge_states(base, ours, theirs, policies={"agents": "theirs"})
    assert theirs_policy.state.thinking[6] == t
    # the merged world keeps running, and its thinkers act at their due ticks
    world = World(result.state.copy())
    for _ in range(3):
        world.step()
    assert all(due >= world.tick for due in world.state.thinking.values())


def test_worlds_whose_agent_thinks_with_another_model_are_refused() -> None:
    base = language_world()
    other = base.copy()
    other.specs = (*base.specs[:-1], replace(base.specs[-1], model="bigger"))
    with pytest.raises(MergeError, match=r"agent '.+' thinks with model 'tiny' in the ancestor and 'bigger' in theirs"):
        merge_states(base, base, other)
    built_in = base.copy()
    built_in.specs = (*base.specs[:-1], replace(base.specs[-1], model=""))
    with pytest.raises(MergeError, match=r"'tiny' in the ancestor and '\(none\)' in ours"):
        merge_states(base, built_in, base)
