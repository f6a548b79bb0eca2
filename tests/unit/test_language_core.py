"""Language minds in the pure core: a language agent drawn to act thinks for ``THINK_TICKS`` ticks, then acts on the
reply recorded for that tick or falls back to its built-in mind, with a ``mind_decided`` event saying which. The
world never asks a model: these tests play the asker with a function of the prompt's tick, and check the results
by state hash, tick by tick."""

from __future__ import annotations

from typing import Any

import pytest

from soulfra.errors import InputError, WorldFileError
from soulfra.world import DEFAULT_WORLD, World, WorldSpec, decode_state, encode_state, schedule
from soulfra.world.encoding import state_tree
from soulfra.world.events import Event, MindDecided
from soulfra.world.genesis import DEFAULT_AGENTS
from soulfra.world.inputs import Decision, Input, MindReply, input_to_json, parse_input
from soulfra.world.minds.language import THINK_TICKS
from soulfra.world.worldfile import parse_world

SPEC = WorldSpec(agents=DEFAULT_AGENTS, generated_model="tiny")
DECISIONS = (
    Decision(action="post", topic="tides", text="the tide turns"),
    Decision(action="rest"),
    Decision(action="reply", thread=1, text="yes"),
    Decision(action="bless", ritual=1),  # only a governor may: others fall back ("not-done")
    Decision(action="take_task", task=1),
)


def scripted(world: World, ticks: int, *, fail_every: int = 0) -> tuple[list[Input], dict[int, str], list[Event]]:
    """Run a language world as a runtime would, answering every new thought with a decision chosen by its due
    tick and agent (a failure every ``fail_every``-th), and leaving every fifth unanswered."""
    log: list[Input] = []
    hashes: dict[int, str] = {}
    events: list[Event] = []
    answered: set[tuple[int, int]] = set()
    waiting: dict[int, list[Input]] = {}
    count = 0
    for _ in range(ticks):
        items = waiting.pop(world.tick, [])
        log.extend(items)
        events.extend(world.step(items))
        hashes[world.tick] = world.state_hash()
        for agent, due in sorted(world.state.thinking.items()):
            if (agent, due) in answered:
                continue
            answered.add((agent, due))
            count += 1
            if count % 5 == 0:
                continue  # no reply by its tick
            failed = fail_every and count % fail_every == 0
            reply = MindReply(
                tick=due, agent=world.state.specs[agent].id, model="tiny", prompt=f"b2:{count:032x}",
                outcome="timeout" if failed else "reply",
                decision=None if failed else DECISIONS[(agent + due) % len(DECISIONS)],
                prompt_tokens=10, completion_tokens=5, latency_ms=100 + count,
            )  # fmt: skip
            waiting.setdefault(due, []).append(reply)
    return log, hashes, events


def replay(log: list[Input], ticks: int, agents: int) -> dict[int, str]:
    world = World.create(3, SPEC, agents=agents)
    due = schedule(log)
    hashes = {}
    for _ in range(ticks):
        world.step(due.get(world.tick, ()))
        hashes[world.tick] = world.state_hash()
    return hashes


def test_recorded_replies_replay_to_the_same_hash_at_every_tick() -> None:
    log, live, events = scripted(World.create(3, SPEC, agents=10), 60, fail_every=7)
    again = replay(log, 60, 10)
    assert next((tick for tick in live if live[tick] != again[tick]), None) is None
    decided = [e for e in events if isinstance(e, MindDecided)]
    outcomes = {e.outcome for e in decided}
    assert {"reply", "no-reply", "timeout", "not-done"} <= outcomes
    assert all(e.action for e in decided if e.outcome in ("reply", "not-done"))
    # what the log holds is what replays: the JSON form reads back into equal inputs
    assert [parse_input(input_to_json(item)) for item in log] == log


def test_a_language_agent_acts_its_think_ticks_after_it_was_drawn() -> None:
    world = World.create(3, SPEC, agents=10)
    started: dict[int, int] = {}
    for _ in range(30):
        before = dict(world.state.thinking)
        tick = world.tick
        events = world.step()
        for agent, due in world.state.thinking.items():
            if agent not in before:
                assert due == tick + THINK_TICKS
                started[agent] = due
        for event in events:
            if isinstance(event, MindDecided):
                assert event.outcome == "no-reply"
                assert before[world.state.index[event.agent]] == tick
    assert started


def test_a_reply_for_an_agent_not_due_is_rejected_and_changes_nothing_else() -> None:
    plain, stray = World.create(3, SPEC, agents=10), World.create(3, SPEC, agents=10)
    reply = MindReply(tick=0, agent="echo-00001", model="tiny", prompt="b2:00", outcome="reply",
                      decision=Decision(action="rest"))  # fmt: skip
    plain.step()
    events = stray.step([reply])
    rejected = [e for e in events if e.kind == "input_rejected"]
    assert len(rejected) == 1 and "not due" in rejected[0].reason  # type: ignore[attr-defined]
    assert plain.state.thinking == stray.state.thinking
    assert plain.state.valence.tolist() == stray.state.valence.tolist()


def test_worlds_without_language_agents_encode_as_before() -> None:
    world = World.create(3, DEFAULT_WORLD, agents=20)
    for _ in range(20):
        world.step()
    tree = state_tree(world.state)
    assert "thinking" not in tree
    assert {len(row) for row in tree["specs"]} == {5}


def test_a_thinking_world_round_trips_through_its_encoding() -> None:
    world = World.create(3, SPEC, agents=10)
    while not world.state.thinking:
        world.step()
    decoded = decode_state(encode_state(world.state))
    assert decoded.thinking == world.state.thinking
    assert [s.model for s in decoded.specs] == [s.model for s in world.state.specs]
    assert World(decoded).state_hash() == world.state_hash()


@pytest.mark.parametrize(
    ("body", "message"),
    [({"outcome": "reply"}, "exactly when"), ({"outcome": "timeout", "decision": {"action": "rest"}}, "exactly when"),
     ({"outcome": "bored"}, "unknown outcome"),
     ({"outcome": "reply", "decision": {"action": "dance"}}, "unknown decision"),
     ({"outcome": "reply", "decision": {"action": "post", "mood": 1}}, "unknown field")],
)  # fmt: skip
def test_malformed_mind_replies_are_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_input({"type": "mind_reply", "tick": 1, "agent": "a", "model": "m", "prompt": "b2:00", **body})


def test_world_files_choose_a_language_mind_per_agent() -> None:
    spec = parse_world('[[agents]]\nid = "sage"\nmind = "language"\nmodel = "smollm2"\n')
    assert (spec.agents[-1].spec.mind, spec.agents[-1].spec.model) == ("executor", "smollm2")
    for body, message in [
        ('mind = "language"', "needs model"),
        ('mind = "language"\nmodel = "m"\nfallback = "poet"', "unknown fallback"),
        ('mind = "governor"\nmodel = "m"', "belong to mind"),
    ]:
        with pytest.raises(WorldFileError, match=message):
            parse_world(f'[[agents]]\nid = "sage"\n{body}\n')
