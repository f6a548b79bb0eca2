"""CrossPost and Mark: the two inputs the puppet master adds to a world's log."""

from __future__ import annotations

import pytest

from soulfra.errors import InputError
from soulfra.world import DEFAULT_WORLD, CrossPost, Input, Mark, Whisper, World, input_to_json, parse_input


def test_both_round_trip_through_json() -> None:
    for item in (CrossPost(tick=3, origin="north/arty", thread=2, text="hello"), Mark(tick=0, command="FREEZE_TIME")):
        assert parse_input(input_to_json(item)) == item


def test_a_mark_leaves_the_world_exactly_as_it_would_have_been() -> None:
    plain, marked = World.create(5, DEFAULT_WORLD, agents=4), World.create(5, DEFAULT_WORLD, agents=4)
    for tick in range(30):
        plain.step()
        marked.step([Mark(tick=tick, command="FREEZE_TIME", note="{}")] if tick % 7 == 0 else [])
    assert marked.state_hash() == plain.state_hash()


def test_a_cross_post_lands_in_an_open_thread_and_is_refused_for_a_closed_one() -> None:
    world = World.create(5, DEFAULT_WORLD)
    while not world.state.threads:
        world.step()
    thread = min(world.state.threads)
    posts = world.state.threads[thread].posts
    events = world.step([CrossPost(tick=world.tick, origin="south/cal", thread=thread, text="from afar")])
    visited = [e for e in events if e.kind == "visitor_posted"]
    assert len(visited) == 1
    assert world.state.threads[thread].posts >= posts + 1
    assert any(text == "south/cal: from afar" for _, author, text in world.state.threads[thread].recent if author == -1)
    events = world.step([CrossPost(tick=world.tick, origin="south/cal", thread=9999, text="lost")])
    assert [e.kind for e in events if e.kind == "input_rejected"] == ["input_rejected"]


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "crosspost", "tick": 0, "origin": "a/b", "thread": 0, "text": "x"},
        {"type": "crosspost", "tick": 0, "origin": "a/b", "text": "x"},
        {"type": "mark", "tick": 0},
        {"type": "mark", "tick": 0, "command": "X", "extra": 1},
    ],
)
def test_malformed_ones_are_refused(obj: dict[str, object]) -> None:
    with pytest.raises(InputError):
        parse_input(obj)


def test_run_to_replays_inputs_at_their_ticks_like_stepping_by_hand() -> None:
    inputs: list[Input] = [
        Whisper(tick=3, target="arty", text="a"),
        Mark(tick=3, command="X"),
        Whisper(tick=9, target="*", text="b"),
    ]
    by_hand, replayed = World.create(4, DEFAULT_WORLD, agents=3), World.create(4, DEFAULT_WORLD, agents=3)
    for tick in range(12):
        by_hand.step([item for item in inputs if item.tick == tick])
    seen: list[int] = []
    replayed.run_to(12, inputs, on_tick=seen.append)
    assert replayed.state_hash() == by_hand.state_hash()
    assert seen == list(range(1, 13))
    with pytest.raises(InputError, match="comes after"):
        replayed.run_to(20, [Whisper(tick=5, target="*", text="late")])
