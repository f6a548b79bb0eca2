"""Operator inputs: parse_input validates one JSON object, input_to_json is its exact inverse."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soulfra.errors import InputError
from soulfra.world.inputs import (
    ACTIONS,
    ALL,
    MAX_PARTICIPANTS,
    MAX_TEXT,
    SCALE,
    TONES,
    Act,
    AlterVibe,
    ChangePersonality,
    InjectRitual,
    Input,
    Possess,
    Release,
    Whisper,
    input_to_json,
    parse_input,
)
from soulfra.world.model import TRAITS
from soulfra.world.vibe import PHASES

# ---------------------------------------------------------------------------------------------------------------
# Strategies building valid inputs


def _text(limit: int) -> st.SearchStrategy[str]:
    return st.text(max_size=min(limit, 40)) | st.just("x" * limit)


ticks = st.integers(0, 1 << 62)
ids = _text(64)
fractions = st.integers(0, SCALE)


@st.composite
def _personality(draw: st.DrawFn) -> ChangePersonality:
    names = draw(st.lists(st.sampled_from(TRAITS), min_size=1, unique=True))
    ordered = tuple(name for name in TRAITS if name in names)  # parse_input returns traits in TRAITS order
    return ChangePersonality(
        tick=draw(ticks), agent=draw(ids), traits=tuple((name, draw(fractions)) for name in ordered)
    )


INPUTS: st.SearchStrategy[Input] = st.one_of(
    st.builds(Whisper, tick=ticks, target=ids | st.just(ALL), text=_text(MAX_TEXT), tone=st.sampled_from(TONES)),
    st.builds(Possess, tick=ticks, agent=ids, operator=_text(MAX_TEXT)),
    st.builds(Release, tick=ticks, agent=ids),
    st.builds(
        Act,
        tick=ticks,
        agent=ids,
        action=st.sampled_from(ACTIONS),
        text=_text(MAX_TEXT),
        topic=_text(64),
        ritual=ticks,
        task=ticks,
        name=_text(64),
        participants=st.lists(ids, max_size=MAX_PARTICIPANTS).map(tuple),
        goal=_text(120),
    ),
    _personality(),
    st.builds(
        InjectRitual,
        tick=ticks,
        name=_text(64),
        participants=st.lists(ids, min_size=2, max_size=MAX_PARTICIPANTS).map(tuple),
        blessed=st.booleans(),
    ),
    st.builds(
        AlterVibe, tick=ticks, condition=st.sampled_from(PHASES), intensity=fractions, duration=st.integers(1, 10**6)
    ),
)


# ---------------------------------------------------------------------------------------------------------------
# Round trips


@settings(max_examples=200)
@given(INPUTS)
def test_input_to_json_then_parse_input_gives_an_equal_input(item: Input) -> None:
    parsed = parse_input(input_to_json(item))
    assert type(parsed) is type(item)
    assert parsed == item


@settings(max_examples=100)
@given(INPUTS)
def test_round_trip_through_json_text(item: Input) -> None:
    # the way an input log stores it: JSON text, read back with decimals as Decimal
    line = json.dumps(input_to_json(item), ensure_ascii=False)
    assert parse_input(json.loads(line, parse_float=Decimal)) == item
    assert parse_input(json.loads(line)) == item


@settings(max_examples=100)
@given(INPUTS)
def test_input_to_json_carries_the_type_and_tick(item: Input) -> None:
    obj = input_to_json(item)
    assert obj["tick"] == item.tick
    assert obj["type"] == item.type
    if isinstance(item, ChangePersonality | InjectRitual | AlterVibe):
        assert obj["type"] == "intervene"
        assert obj["kind"] == item.kind
    # fixed-point quantities are written as exact decimal strings, never as floats or raw scaled ints
    if isinstance(item, AlterVibe):
        assert isinstance(obj["intensity"], str)
        assert Decimal(obj["intensity"]) * SCALE == item.intensity
    if isinstance(item, ChangePersonality):
        assert all(isinstance(v, str) for v in obj["traits"].values())
        assert {k: Decimal(v) * SCALE for k, v in obj["traits"].items()} == dict(item.traits)


def test_input_to_json_writes_fixed_point_as_decimal_strings() -> None:
    item = ChangePersonality(tick=3, agent="arty", traits=(("warmth", 700_000), ("chaos", 50_000)))
    assert input_to_json(item) == {
        "tick": 3,
        "type": "intervene",
        "kind": "personality",
        "agent": "arty",
        "traits": {"warmth": "0.7", "chaos": "0.05"},
    }
    vibe = AlterVibe(tick=1, condition=PHASES[0], intensity=SCALE, duration=5)
    assert input_to_json(vibe)["intensity"] == "1"


# ---------------------------------------------------------------------------------------------------------------
# Well-formed inputs and their defaults


def test_whisper_defaults_to_a_gentle_tone() -> None:
    assert parse_input({"type": "whisper", "tick": 4, "target": "*", "text": "hello"}) == Whisper(
        tick=4, target=ALL, text="hello", tone="gentle"
    )


def test_possess_defaults_the_operator() -> None:
    assert parse_input({"type": "possess", "tick": 0, "agent": "arty"}) == Possess(
        tick=0, agent="arty", operator="puppet-master"
    )


def test_release() -> None:
    assert parse_input({"type": "release", "tick": 9, "agent": "arty"}) == Release(tick=9, agent="arty")


def test_act_defaults() -> None:
    act = parse_input({"type": "act", "tick": 2, "agent": "arty", "action": "rest"})
    assert act == Act(tick=2, agent="arty", action="rest")
    assert isinstance(act, Act)
    assert (act.text, act.topic, act.ritual, act.task, act.name, act.participants, act.goal) == (
        "",
        "",
        0,
        0,
        "",
        (),
        "",
    )


def test_act_participants_become_a_tuple() -> None:
    act = parse_input({"type": "act", "tick": 0, "agent": "a", "action": "propose_ritual", "participants": ["b", "c"]})
    assert isinstance(act, Act)
    assert act.participants == ("b", "c")


def test_ritual_defaults_to_unblessed() -> None:
    ritual = parse_input({"type": "intervene", "kind": "ritual", "tick": 1, "name": "rite", "participants": ["a", "b"]})
    assert ritual == InjectRitual(tick=1, name="rite", participants=("a", "b"), blessed=False)


def test_vibe_defaults() -> None:
    vibe = parse_input({"type": "intervene", "kind": "vibe", "tick": 1, "condition": PHASES[1]})
    assert vibe == AlterVibe(tick=1, condition=PHASES[1], intensity=800_000, duration=20)


@pytest.mark.parametrize("value", ["0.7", Decimal("0.7"), 0.7, "0.700000", Decimal("0.70"), "7E-1"])
def test_decimal_trait_values_are_exact(value: object) -> None:
    item = parse_input(
        {"type": "intervene", "kind": "personality", "tick": 0, "agent": "a", "traits": {"warmth": value}}
    )
    assert item == ChangePersonality(tick=0, agent="a", traits=(("warmth", 700_000),))


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (1, SCALE), ("0", 0), ("1", SCALE), ("0.000001", 1)])
def test_trait_bounds_are_inclusive(value: object, expected: int) -> None:
    item = parse_input(
        {"type": "intervene", "kind": "personality", "tick": 0, "agent": "a", "traits": {"order": value}}
    )
    assert isinstance(item, ChangePersonality)
    assert item.traits == (("order", expected),)


def test_traits_come_back_in_canonical_order() -> None:
    item = parse_input(
        {
            "type": "intervene",
            "kind": "personality",
            "tick": 0,
            "agent": "a",
            "traits": {"chaos": "0.1", "warmth": "0.2", "order": "0.3"},
        }
    )
    assert isinstance(item, ChangePersonality)
    assert item.traits == (("warmth", 200_000), ("order", 300_000), ("chaos", 100_000))


def test_vibe_intensity_is_exact() -> None:
    vibe = parse_input(
        {"type": "intervene", "kind": "vibe", "tick": 0, "condition": PHASES[2], "intensity": Decimal("0.35")}
    )
    assert isinstance(vibe, AlterVibe)
    assert vibe.intensity == 350_000


def test_boundary_lengths_are_accepted() -> None:
    whisper = parse_input({"type": "whisper", "tick": 0, "target": "t" * 64, "text": "x" * MAX_TEXT})
    assert isinstance(whisper, Whisper)
    assert len(whisper.text) == MAX_TEXT
    ritual = parse_input(
        {"type": "intervene", "kind": "ritual", "tick": 0, "name": "r", "participants": ["p"] * MAX_PARTICIPANTS}
    )
    assert isinstance(ritual, InjectRitual)
    assert len(ritual.participants) == MAX_PARTICIPANTS


def test_tick_and_duration_bounds_are_inclusive() -> None:
    assert parse_input({"type": "release", "tick": 1 << 62, "agent": "a"}).tick == 1 << 62
    vibe = parse_input({"type": "intervene", "kind": "vibe", "tick": 0, "condition": PHASES[0], "duration": 10**6})
    assert isinstance(vibe, AlterVibe)
    assert vibe.duration == 10**6
    vibe = parse_input({"type": "intervene", "kind": "vibe", "tick": 0, "condition": PHASES[0], "duration": 1})
    assert isinstance(vibe, AlterVibe)
    assert vibe.duration == 1


def test_any_mapping_is_accepted() -> None:
    obj = MappingProxyType({"type": "release", "tick": 0, "agent": "a"})
    assert parse_input(obj) == Release(tick=0, agent="a")


def test_participants_may_be_a_tuple() -> None:
    item = parse_input({"type": "intervene", "kind": "ritual", "tick": 0, "name": "r", "participants": ("a", "b")})
    assert isinstance(item, InjectRitual)
    assert item.participants == ("a", "b")


# ---------------------------------------------------------------------------------------------------------------
# Malformed inputs: each raises InputError naming the problem

WHISPER: dict[str, Any] = {"type": "whisper", "tick": 0, "target": "arty", "text": "hi"}
POSSESS: dict[str, Any] = {"type": "possess", "tick": 0, "agent": "arty"}
RELEASE: dict[str, Any] = {"type": "release", "tick": 0, "agent": "arty"}
ACT: dict[str, Any] = {"type": "act", "tick": 0, "agent": "arty", "action": "post"}
PERSONALITY: dict[str, Any] = {
    "type": "intervene",
    "kind": "personality",
    "tick": 0,
    "agent": "arty",
    "traits": {"warmth": "0.5"},
}
RITUAL: dict[str, Any] = {"type": "intervene", "kind": "ritual", "tick": 0, "name": "rite", "participants": ["a", "b"]}
VIBE: dict[str, Any] = {"type": "intervene", "kind": "vibe", "tick": 0, "condition": PHASES[0]}
VALID = (WHISPER, POSSESS, RELEASE, ACT, PERSONALITY, RITUAL, VIBE)


def _with(base: dict[str, Any], **changes: object) -> dict[str, Any]:
    return {**base, **changes}


def _without(base: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k != key}


@pytest.mark.parametrize("obj", VALID)
def test_the_valid_bases_parse(obj: dict[str, Any]) -> None:
    # the malformed cases below are each one change away from one of these
    assert input_to_json(parse_input(obj))["type"] == obj["type"]


MALFORMED: list[tuple[object, str]] = [
    # not an object
    ([], "must be a JSON object"),
    ("whisper", "must be a JSON object"),
    (None, "must be a JSON object"),
    (3, "must be a JSON object"),
    ([("type", "release")], "must be a JSON object"),
    # unknown type
    ({"tick": 0, "agent": "a"}, "an input needs a 'type': one of whisper, possess"),
    (_with(RELEASE, type="shout"), "unknown input type 'shout'"),
    (_with(RELEASE, type=3), "unknown input type 3"),
    (_with(RELEASE, type="Release"), "unknown input type 'Release'"),
    (_without(VIBE, "kind"), "needs 'kind'"),
    (_with(VIBE, kind="weather"), "needs 'kind'"),
    # unknown field
    (_with(WHISPER, volume=11), "unknown field(s) for whisper: volume"),
    (_with(RELEASE, operator="x"), "unknown field(s) for release: operator"),
    (_with(POSSESS, kind="personality"), "unknown field(s) for possess: kind"),
    (_with(ACT, target="x", zeta=1), "unknown field(s) for act: target, zeta"),
    (_with(VIBE, agent="a"), "unknown field(s) for vibe: agent"),
    (_with(RITUAL, agent="a"), "unknown field(s) for ritual: agent"),
    (_with(PERSONALITY, name="a"), "unknown field(s) for personality: name"),
    # missing field
    (_without(WHISPER, "tick"), "missing field 'tick'"),
    (_without(WHISPER, "text"), "missing field 'text'"),
    (_without(WHISPER, "target"), "missing field 'target'"),
    (_without(POSSESS, "agent"), "missing field 'agent'"),
    (_without(RELEASE, "agent"), "missing field 'agent'"),
    (_without(ACT, "action"), "missing field 'action'"),
    (_without(ACT, "agent"), "missing field 'agent'"),
    (_without(PERSONALITY, "agent"), "missing field 'agent'"),
    (_without(PERSONALITY, "traits"), "field 'traits' must be an object"),
    (_without(RITUAL, "name"), "missing field 'name'"),
    (_without(VIBE, "condition"), "missing field 'condition'"),
    (_with(WHISPER, text=None), "missing field 'text'"),
    # wrong field type
    (_with(WHISPER, text=5), "field 'text' must be a string"),
    (_with(WHISPER, target=["arty"]), "field 'target' must be a string"),
    (_with(WHISPER, tone=1), "field 'tone' must be a string"),
    (_with(RELEASE, tick="3"), "field 'tick' must be an integer"),
    (_with(RELEASE, tick=3.0), "field 'tick' must be an integer"),
    (_with(RELEASE, tick=Decimal(3)), "field 'tick' must be an integer"),
    (_with(ACT, ritual="1"), "field 'ritual' must be an integer"),
    (_with(ACT, participants="ab"), "field 'participants' must be a list of agent ids"),
    (_with(ACT, participants=[1]), "field 'participants' must be a list of agent ids"),
    (_with(RITUAL, participants={"a": 1, "b": 2}), "field 'participants' must be a list of agent ids"),
    (_with(RITUAL, blessed="yes"), "field 'blessed' must be true or false"),
    (_with(RITUAL, blessed=1), "field 'blessed' must be true or false"),
    (_with(PERSONALITY, traits=[["warmth", "0.5"]]), "field 'traits' must be an object"),
    (_with(PERSONALITY, traits={}), "field 'traits' must be an object"),
    (_with(PERSONALITY, traits={"warmth": None}), "trait warmth must be a number"),
    (_with(PERSONALITY, traits={"warmth": "warm"}), "trait warmth must be a number"),
    (_with(VIBE, duration="20"), "field 'duration' must be an integer"),
    (_with(VIBE, intensity="strong"), "intensity must be a number"),
    (_with(VIBE, condition=7), "field 'condition' must be a string"),
    # negative or oversized numbers
    (_with(RELEASE, tick=-1), "field 'tick' must be between 0"),
    (_with(RELEASE, tick=(1 << 62) + 1), "field 'tick' must be between 0"),
    (_with(ACT, task=-5), "field 'task' must be between 0"),
    # bool where an int is expected
    (_with(RELEASE, tick=True), "field 'tick' must be an integer"),
    (_with(RELEASE, tick=False), "field 'tick' must be an integer"),
    (_with(ACT, ritual=True), "field 'ritual' must be an integer"),
    (_with(VIBE, duration=True), "field 'duration' must be an integer"),
    (_with(PERSONALITY, traits={"warmth": True}), "trait warmth must be a number"),
    # over-long text
    (_with(WHISPER, text="x" * (MAX_TEXT + 1)), "field 'text' is longer than 500 characters"),
    (_with(WHISPER, target="t" * 65), "field 'target' is longer than 64 characters"),
    (_with(POSSESS, operator="o" * (MAX_TEXT + 1)), "field 'operator' is longer than 500 characters"),
    (_with(ACT, text="x" * (MAX_TEXT + 1)), "field 'text' is longer than 500 characters"),
    (_with(ACT, topic="t" * 65), "field 'topic' is longer than 64 characters"),
    (_with(ACT, goal="g" * 121), "field 'goal' is longer than 120 characters"),
    (_with(RITUAL, name="n" * 65), "field 'name' is longer than 64 characters"),
    # unknown enumerations
    (_with(WHISPER, tone="sarcastic"), "unknown tone 'sarcastic'"),
    (_with(ACT, action="dance"), "unknown action 'dance'"),
    (_with(ACT, action="POST"), "unknown action 'POST'"),
    (_with(PERSONALITY, traits={"warmth": "0.5", "kindness": "0.5"}), "unknown trait(s) kindness"),
    (_with(VIBE, condition="sunny"), "unknown vibe condition 'sunny'"),
    # fractions out of [0, 1]
    (_with(PERSONALITY, traits={"warmth": "1.5"}), "trait warmth must be between 0 and 1"),
    (_with(PERSONALITY, traits={"chaos": Decimal("-0.1")}), "trait chaos must be between 0 and 1"),
    (_with(PERSONALITY, traits={"order": 2}), "trait order must be between 0 and 1"),
    (_with(PERSONALITY, traits={"order": "NaN"}), "trait order must be finite"),
    (_with(VIBE, intensity="1.01"), "intensity must be between 0 and 1"),
    (_with(VIBE, intensity=-1), "intensity must be between 0 and 1"),
    # participants
    (_with(RITUAL, participants=["a"]), "at least two participants"),
    (_with(RITUAL, participants=[]), "at least two participants"),
    (_without(RITUAL, "participants"), "at least two participants"),
    (_with(RITUAL, participants=["p"] * (MAX_PARTICIPANTS + 1)), "names more than 12 agents"),
    (_with(ACT, participants=["p"] * (MAX_PARTICIPANTS + 1)), "names more than 12 agents"),
    # duration
    (_with(VIBE, duration=0), "field 'duration' must be between 1 and 1000000, got 0"),
    (_with(VIBE, duration=-3), "field 'duration' must be between 1"),
    (_with(VIBE, duration=10**6 + 1), "field 'duration' must be between 1 and 1000000"),
]


@pytest.mark.parametrize(("obj", "fragment"), MALFORMED)
def test_malformed_inputs_raise_input_error_naming_the_problem(obj: object, fragment: str) -> None:
    with pytest.raises(InputError, match=re.escape(fragment)) as info:
        parse_input(obj)
    assert info.value.code == "invalid_input"


REQUIRED: dict[type, tuple[str, ...]] = {
    Whisper: ("type", "tick", "target", "text"),
    Possess: ("type", "tick", "agent"),
    Release: ("type", "tick", "agent"),
    Act: ("type", "tick", "agent", "action"),
    ChangePersonality: ("type", "kind", "tick", "agent", "traits"),
    InjectRitual: ("type", "kind", "tick", "name", "participants"),
    AlterVibe: ("type", "kind", "tick", "condition"),
}
KNOWN_FIELDS = frozenset(
    [
        "type",
        "tick",
        "kind",
        "target",
        "text",
        "tone",
        "agent",
        "operator",
        "action",
        "topic",
        "ritual",
        "task",
        "name",
        "participants",
        "goal",
        "traits",
        "blessed",
        "condition",
        "intensity",
        "duration",
    ]
)


@settings(max_examples=100)
@given(INPUTS, st.text(min_size=1, max_size=12).filter(lambda k: k not in KNOWN_FIELDS))
def test_any_unknown_field_is_refused(item: Input, key: str) -> None:
    obj = input_to_json(item)
    obj[key] = 0
    with pytest.raises(InputError, match="unknown field"):
        parse_input(obj)


@settings(max_examples=100)
@given(INPUTS, st.data())
def test_dropping_a_required_field_is_refused(item: Input, data: st.DataObject) -> None:
    obj = input_to_json(item)
    key = data.draw(st.sampled_from(REQUIRED[type(item)]))
    assert key in obj
    del obj[key]
    with pytest.raises(InputError):
        parse_input(obj)


@settings(max_examples=100)
@given(INPUTS, st.integers(max_value=-1))
def test_negative_ticks_are_refused(item: Input, tick: int) -> None:
    obj = input_to_json(item)
    obj["tick"] = tick
    with pytest.raises(InputError, match="field 'tick' must be between 0"):
        parse_input(obj)
