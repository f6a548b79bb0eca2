"""The world's dispatch is closed: an input or action of no known type raises ``TypeError``, never passes unnoticed.

mypy enforces the same at type-check time (each ``match`` ends in a ``Never``-typed call); these tests pin what
happens at run time to an object that slipped past the types.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import ClassVar, cast

import pytest

from soulfra.world import Act, Input, Possess, Whisper, World
from soulfra.world.actions import Action, Work
from soulfra.world.events import InputRejected, OperatorActed
from soulfra.world.inputs import AlterVibe, input_to_json, parse_input
from soulfra.world.minds import MINDS, Mind, View
from soulfra.world.rng import Stream


@dataclass(frozen=True, slots=True, kw_only=True)
class Murmur:
    """Looks like a Whisper (same fields, same ``type``) but is not one of the ``Input`` union's types."""

    type: ClassVar[str] = "whisper"
    tick: int
    target: str
    text: str
    tone: str = "gentle"


@dataclass(frozen=True, slots=True, kw_only=True)
class Loiter:
    """Looks like Work (it has a ``task``) but is not one of the ``Action`` union's types."""

    task: int


class LoiteringMind(Mind):
    def decide(self, view: View, agent: int, rng: Stream) -> Action:
        return cast(Action, Loiter(task=1))


def test_the_input_and_action_unions_are_the_closed_sets_the_engine_matches() -> None:
    assert Murmur not in typing.get_args(Input)
    assert Loiter not in typing.get_args(Action)
    assert Whisper in typing.get_args(Input)
    assert Work in typing.get_args(Action)


def test_an_input_of_no_known_type_raises_type_error_instead_of_being_ignored() -> None:
    world = World.create(5)
    stray = cast(Input, Murmur(tick=0, target="cal-riven", text="hello"))
    with pytest.raises(TypeError, match=r"Murmur is not a world input type"):
        world.step([stray])
    with pytest.raises(TypeError, match=r"Murmur is not a world input type"):
        world.check(stray)


def test_an_action_of_no_known_type_raises_type_error_instead_of_counting_as_work() -> None:
    state = World.create(5).state
    world = World(state, minds={key: LoiteringMind() for key in MINDS})
    # A whispered-to agent always acts this tick, so its mind's action reaches the engine.
    with pytest.raises(TypeError, match=r"Loiter is not a world action type"):
        world.step([Whisper(tick=0, target="cal-riven", text="act now")])


def test_an_act_with_an_unknown_action_is_rejected_not_taken_for_a_rest() -> None:
    world = World.create(5)
    world.step([Possess(tick=0, agent="arty")])
    events = world.step([Act(tick=1, agent="arty", action="loiter")])
    rejected = [e for e in events if isinstance(e, InputRejected)]
    assert [(e.input, e.reason.split(";")[0]) for e in rejected] == [("act", "unknown action 'loiter'")]
    assert not [e for e in events if isinstance(e, OperatorActed)]  # a rest would have been reported as acted


def test_an_input_of_no_known_type_is_not_written_as_some_other_input() -> None:
    """input_to_json used to write whatever it did not recognise as a vibe intervention."""
    vibe = AlterVibe(tick=3, condition="echo-storm", intensity=500_000, duration=4)
    assert parse_input(input_to_json(vibe)) == vibe
    with pytest.raises(TypeError, match=r"Murmur is not a world input type"):
        input_to_json(cast(Input, Murmur(tick=0, target="cal-riven", text="hello")))
