"""Inputs that used to escape as the wrong exception type: each now raises the project's own error."""

from __future__ import annotations

import pytest

from soulfra.errors import CodecError, InputError, WorldFileError
from soulfra.world import canonical, parse_input, parse_world
from soulfra.world.fixed import from_decimal


def test_deeply_nested_data_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="nested too deeply"):
        canonical.decode(b"l\x01\x00\x00\x00" * 5000 + b"N")
    nested: object = None
    for _ in range(5000):
        nested = [nested]
    with pytest.raises(CodecError, match="nested too deeply"):
        canonical.encode(nested)


def test_a_huge_exponent_is_out_of_range_everywhere() -> None:
    with pytest.raises(ValueError, match="out of range"):
        from_decimal("1e999999999")
    with pytest.raises(InputError, match="out of range"):
        parse_input(
            {"type": "intervene", "kind": "vibe", "tick": 0, "condition": "calm-bloom", "intensity": "1e999999999"}
        )
    with pytest.raises(WorldFileError, match="out of range"):
        parse_world('[[agents]]\nid="x"\nmind="governor"\ntraits={warmth=1e999999999}')


@pytest.mark.parametrize("kind", ["vibe", "personality", "ritual"])
def test_intervention_kinds_are_not_top_level_types(kind: str) -> None:
    with pytest.raises(InputError, match="unknown input type"):
        parse_input({"type": kind, "tick": 0, "condition": "calm-bloom"})


def test_non_string_keys_are_reported_not_crashed_on() -> None:
    with pytest.raises(InputError, match="unknown field"):
        parse_input({"type": "release", "tick": 0, "agent": "a", 1: 2})
