"""The canonical codec's fast paths give the bytes of the format itself: big dicts of int keys to rows of ints or of
strs, and values passed already encoded, each checked against a plain encoder written here from the format's
definition (one call per value, no fast path), over generated tables that do and do not fit a fast path."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from soulfra.world import World
from soulfra.world.canonical import Encoded, decode, encode
from soulfra.world.canonical_tables import TABLE_MIN_ROWS
from soulfra.world.encoding import FORMAT_VERSION, MAGIC, encode_state, state_tree

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1


def plain(value: Any) -> bytes:
    """The canonical encoding as the format defines it, one value at a time."""
    if value is None:
        return b"N"
    if type(value) is bool:
        return b"T" if value else b"F"
    if type(value) is int:
        if I64_MIN <= value <= I64_MAX:
            return b"i" + struct.pack("<q", value)
        raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
        return b"I" + struct.pack("<I", len(raw)) + raw
    if type(value) is str:
        raw = value.encode()
        return b"s" + struct.pack("<I", len(raw)) + raw
    if type(value) is bytes:
        return b"b" + struct.pack("<I", len(value)) + value
    if type(value) in (tuple, list):
        return b"l" + struct.pack("<I", len(value)) + b"".join(plain(item) for item in value)
    if type(value) is dict:
        entries = sorted((plain(key), plain(item)) for key, item in value.items())
        return b"d" + struct.pack("<I", len(entries)) + b"".join(key + item for key, item in entries)
    raise AssertionError(f"the plain encoder has no case for {type(value).__name__}")


_LEAF_INTS = st.one_of(st.integers(-5, 5), st.integers(I64_MIN, I64_MAX))
_BIG = st.integers(min_value=1 << 63, max_value=1 << 70)  # beyond int64: no fast path takes it
_TEXT = st.one_of(st.text(max_size=6), st.just("ab" * 150))  # a long one: its length takes a u32 header
_BASES = st.one_of(st.integers(-400, 400), st.sampled_from([I64_MIN, I64_MAX - (1 << 50), -(1 << 40)]))
_STEPS = st.sampled_from([1, 3, 255, 256, 1 << 40])


def _table(rows: st.SearchStrategy[Any], odd_key: st.SearchStrategy[int] | None = None) -> st.SearchStrategy[Any]:
    """Dicts of int keys (spread from a base by a step, in shuffled order, maybe one odd key) to ``rows``, with
    about as many entries as a fast path needs, on both sides of it."""

    def build(made: list[Any], base: int, step: int, odd: list[int], order: Any) -> dict[int, Any]:
        keys = [base + step * at for at in range(len(made))]
        keys[: len(odd)] = odd
        order.shuffle(keys)
        return dict(zip(keys, made, strict=True))

    sized = st.lists(rows, min_size=TABLE_MIN_ROWS - 2, max_size=TABLE_MIN_ROWS + 40)
    return st.builds(
        build,
        sized,
        _BASES,
        _STEPS,
        st.just([]) if odd_key is None else st.lists(odd_key, max_size=1),
        st.randoms(use_true_random=False),
    )


def _int_row(ints: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[int, Any]]:
    return st.dictionaries(st.one_of(st.integers(-300, 300), st.integers(I64_MIN, I64_MAX)), ints, max_size=9)


INT_TABLES = st.one_of(
    _table(_int_row(_LEAF_INTS)),
    # one odd leaf somewhere: a bool, a big int, a str; or an odd key
    _table(_int_row(st.one_of(_LEAF_INTS, st.booleans(), _BIG, st.text(max_size=2)))),
    _table(_int_row(_LEAF_INTS), _BIG),
)
STR_TABLES = st.one_of(
    _table(st.lists(_TEXT, max_size=7).map(tuple)),
    _table(st.lists(_TEXT, max_size=7)),  # lists encode as tuples do
    _table(st.lists(_TEXT, max_size=3).map(tuple), _BIG),
    # a row that is no row of strs: an int or None among the texts, a tuple of tuples
    _table(st.lists(st.one_of(_TEXT, st.integers(0, 3), st.none()), max_size=4).map(tuple)),
    _table(st.lists(st.tuples(_TEXT), max_size=3).map(tuple)),
)


@settings(max_examples=120)
@given(INT_TABLES)
def test_a_table_of_int_rows_encodes_as_the_format_says(table: dict[int, dict[int, Any]]) -> None:
    assert encode(table) == plain(table)
    assert encode(decode(encode(table))) == encode(table)


@settings(max_examples=120)
@given(STR_TABLES)
def test_a_table_of_str_rows_encodes_as_the_format_says(table: dict[int, Any]) -> None:
    assert encode(table) == plain(table)


def test_a_table_mixing_rows_of_ints_and_of_strs_takes_the_general_path() -> None:
    table: dict[int, Any] = {key: {key: 1} for key in range(TABLE_MIN_ROWS)}
    table[TABLE_MIN_ROWS] = ("a",)
    assert encode(table) == plain(table)
    flipped: dict[int, Any] = dict.fromkeys(range(TABLE_MIN_ROWS), ("x", "é"))
    flipped[-1] = {2: 3}
    assert encode(flipped) == plain(flipped)


@settings(max_examples=60)
@given(st.dictionaries(st.text(max_size=4), st.recursive(st.integers() | st.text(max_size=4), st.lists), max_size=4))
def test_a_value_passed_encoded_is_written_as_the_value_would_be(value: dict[str, Any]) -> None:
    verbatim = {key: Encoded(encode(item)) for key, item in value.items()}
    assert encode(verbatim) == encode(value)
    assert encode((Encoded(encode(value)), 1)) == encode((value, 1))


def test_a_busy_world_s_state_encodes_as_the_format_says() -> None:
    world = World.create(5, agents=300)
    for _ in range(60):
        world.step()
    state = world.state
    assert len(state.memory) >= TABLE_MIN_ROWS and len(state.affinity) >= TABLE_MIN_ROWS  # both fast paths taken
    tree = state_tree(state)
    arrays = {key for key, value in tree.items() if isinstance(value, np.ndarray)}  # not in the plain encoder
    raw = encode_state(state)
    body = decode(raw[5:])
    assert raw[:5] == MAGIC + bytes([FORMAT_VERSION])
    assert {key: plain(value) for key, value in body.items() if key not in arrays} == {
        key: plain(value) for key, value in tree.items() if key not in arrays
    }


def test_a_world_s_specs_are_encoded_anew_once_they_change() -> None:
    world = World.create(5, agents=40)
    before = encode_state(world.state)
    assert encode_state(world.state) == before  # the same specs: their kept encoding
    renamed = tuple(
        type(spec)(id=spec.id, name=spec.name.upper(), mind=spec.mind, voice=spec.voice, goals=spec.goals)
        for spec in world.state.specs
    )
    changed = world.state.copy()
    changed.specs = renamed
    after = encode_state(changed)
    assert after != before
    assert decode(after[5:])["specs"] == tuple(
        (spec.id, spec.name, spec.mind, spec.voice, spec.goals) for spec in renamed
    )
