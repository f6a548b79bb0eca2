"""The canonical codec: one value, one byte string; floats refused; corrupt bytes only ever raise CodecError."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from soulfra.errors import CodecError
from soulfra.world.canonical import decode, decode_fields, decode_keeping, encode

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
U64_MAX = (1 << 64) - 1

# ---------------------------------------------------------------------------------------------------------------
# Strategies


def _int_arrays() -> st.SearchStrategy[np.ndarray[Any, Any]]:
    shapes = hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=4)
    signed = hnp.arrays(np.int64, shapes, elements=st.integers(I64_MIN, I64_MAX))
    unsigned = hnp.arrays(np.uint64, shapes, elements=st.integers(0, U64_MAX))
    return st.one_of(signed, unsigned)


_INTS = st.one_of(
    st.integers(),
    st.integers(I64_MIN - 3, I64_MIN + 3),
    st.integers(I64_MAX - 3, I64_MAX + 3),
    st.integers(min_value=1 << 64, max_value=1 << 200),
    st.integers(min_value=-(1 << 200), max_value=-(1 << 64)),
)
_KEYS: st.SearchStrategy[str | int] = st.one_of(st.text(max_size=8), _INTS)
_LEAVES: st.SearchStrategy[object] = st.one_of(
    st.none(), st.booleans(), _INTS, st.text(max_size=20), st.binary(max_size=20), _int_arrays()
)


def _extend(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(
        st.lists(children, max_size=4).map(tuple),
        st.lists(children, max_size=4),
        st.dictionaries(_KEYS, children, max_size=4),
    )


VALUES: st.SearchStrategy[object] = st.recursive(_LEAVES, _extend, max_leaves=12)


def _same(decoded: object, original: object) -> bool:
    """Structural equality after a round trip: lists come back as tuples, arrays keep dtype, shape and values."""
    if isinstance(original, np.ndarray):
        return (
            isinstance(decoded, np.ndarray)
            and decoded.dtype == original.dtype
            and decoded.shape == original.shape
            and bool(np.array_equal(decoded, original))
        )
    if isinstance(original, tuple | list):
        return (
            type(decoded) is tuple
            and len(decoded) == len(original)
            and all(_same(d, o) for d, o in zip(decoded, original, strict=True))
        )
    if isinstance(original, dict):
        return (
            type(decoded) is dict
            and set(decoded) == set(original)
            and all(_same(decoded[k], original[k]) for k in original)
        )
    return type(decoded) is type(original) and decoded == original


# ---------------------------------------------------------------------------------------------------------------
# Round trips


@settings(max_examples=150)
@given(VALUES)
def test_decode_of_encode_reencodes_to_identical_bytes(value: object) -> None:
    data = encode(value)
    decoded = decode(data)
    assert encode(decoded) == data
    assert _same(decoded, value)


@settings(max_examples=60)
@given(VALUES)
def test_encoding_is_deterministic(value: object) -> None:
    assert encode(value) == encode(value)


@settings(max_examples=60)
@given(
    st.lists(st.tuples(_KEYS, VALUES), max_size=6, unique_by=lambda pair: pair[0]).flatmap(
        lambda pairs: st.tuples(st.just(pairs), st.permutations(pairs))
    )
)
def test_dict_key_order_does_not_change_the_encoding(
    orders: tuple[list[tuple[str | int, object]], list[tuple[str | int, object]]],
) -> None:
    first, second = orders
    assert encode(dict(first)) == encode(dict(second))
    assert encode(dict(first)) == encode(dict(reversed(first)))


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        I64_MIN,
        I64_MAX,
        I64_MIN - 1,
        I64_MAX + 1,
        1 << 64,
        -(1 << 64),
        U64_MAX,
        (1 << 1000) + 12345,
        -(1 << 1000) - 1,
    ],
)
def test_integers_of_any_size_round_trip(value: int) -> None:
    decoded = decode(encode(value))
    assert type(decoded) is int
    assert decoded == value


def test_lists_decode_as_tuples_and_encode_like_tuples() -> None:
    assert encode([1, "a", None]) == encode((1, "a", None))
    assert decode(encode([1, [2, 3]])) == (1, (2, 3))


def test_bool_is_not_encoded_as_an_int() -> None:
    assert encode(True) != encode(1)
    assert encode(False) != encode(0)
    assert decode(encode(True)) is True
    assert decode(encode(False)) is False
    assert type(decode(encode(1))) is int


def test_str_and_bytes_are_distinct() -> None:
    assert encode("abc") != encode(b"abc")
    assert decode(encode("abc")) == "abc"
    assert decode(encode(b"abc")) == b"abc"


def test_dict_with_int_and_str_keys_round_trips() -> None:
    value = {1: "one", "1": 1, -5: None, "": b"", 1 << 70: True}
    decoded = decode(encode(value))
    assert decoded == value
    assert {type(k) for k in decoded} == {int, str}


# ---------------------------------------------------------------------------------------------------------------
# The exact byte format (little-endian everywhere)


def test_scalar_byte_format() -> None:
    assert encode(None) == b"N"
    assert encode(True) == b"T"
    assert encode(False) == b"F"
    assert encode(1) == b"i" + struct.pack("<q", 1)
    assert encode(-2) == b"i" + struct.pack("<q", -2)
    assert encode(I64_MAX) == b"i" + struct.pack("<q", I64_MAX)
    assert encode(I64_MIN) == b"i" + struct.pack("<q", I64_MIN)
    big = I64_MAX + 1
    raw = big.to_bytes(9, "little", signed=True)
    assert encode(big) == b"I" + struct.pack("<I", len(raw)) + raw
    assert encode("hé") == b"s" + struct.pack("<I", 3) + "hé".encode()
    assert encode(b"\x00\xff") == b"b" + struct.pack("<I", 2) + b"\x00\xff"


def test_container_byte_format() -> None:
    assert encode(()) == b"l" + struct.pack("<I", 0)
    assert encode((None, True)) == b"l" + struct.pack("<I", 2) + b"NT"
    # keys are written in sorted order of their encodings, whatever order the dict holds them in
    expected = b"d" + struct.pack("<I", 2) + encode("a") + b"F" + encode("b") + b"T"
    assert encode({"b": True, "a": False}) == expected


def test_array_byte_format() -> None:
    one = np.array([1, -1], dtype=np.int64)
    assert encode(one) == b"aq\x01" + struct.pack("<I", 2) + struct.pack("<2q", 1, -1)
    two = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint64)
    assert encode(two) == b"aQ\x02" + struct.pack("<II", 2, 3) + struct.pack("<6Q", 1, 2, 3, 4, 5, 6)


# ---------------------------------------------------------------------------------------------------------------
# Arrays


@settings(max_examples=60)
@given(_int_arrays())
def test_arrays_round_trip_with_dtype_shape_and_values(array: np.ndarray[Any, Any]) -> None:
    decoded = decode(encode(array))
    assert isinstance(decoded, np.ndarray)
    assert decoded.dtype == array.dtype
    assert decoded.dtype.isnative
    assert decoded.shape == array.shape
    assert np.array_equal(decoded, array)


def test_decoded_array_is_writable_and_independent_of_the_input_bytes() -> None:
    data = bytearray(encode(np.array([1, 2, 3], dtype=np.int64)))
    decoded = decode(bytes(data))
    decoded[0] = 99
    assert decoded.tolist() == [99, 2, 3]
    assert decode(bytes(data)).tolist() == [1, 2, 3]


def test_uint64_extremes_survive() -> None:
    array = np.array([0, U64_MAX, 1 << 63], dtype=np.uint64)
    decoded = decode(encode(array))
    assert decoded.dtype == np.uint64
    assert [int(v) for v in decoded] == [0, U64_MAX, 1 << 63]


def test_non_contiguous_arrays_encode_like_their_contiguous_copy() -> None:
    base = np.arange(12, dtype=np.int64).reshape(3, 4)
    transposed = base.T
    assert not transposed.flags["C_CONTIGUOUS"]
    assert encode(transposed) == encode(np.ascontiguousarray(transposed))
    strided = base[:, ::2]
    assert encode(strided) == encode(strided.copy())
    assert np.array_equal(decode(encode(transposed)), transposed)


def test_int64_and_uint64_arrays_with_equal_values_encode_differently() -> None:
    assert encode(np.array([1], dtype=np.int64)) != encode(np.array([1], dtype=np.uint64))


# ---------------------------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize(
    "value",
    [
        1.0,
        0.5,
        float("nan"),
        [1, 2.0],
        (None, (3.5,)),
        {"a": 1.5},
        {1.5: "a"},
        {(1, 2): "a"},
        {b"k": 1},
        1j,
        {1, 2},
        frozenset(),
        bytearray(b"x"),
        object(),
    ],
)
def test_unsupported_values_are_refused(value: object) -> None:
    with pytest.raises(CodecError):
        encode(value)


@pytest.mark.parametrize(
    "array",
    [
        np.array([1.0, 2.0]),
        np.array([1, 2], dtype=np.int32),
        np.array([1, 2], dtype=np.uint32),
        np.array([True, False]),
        np.array(5, dtype=np.int64),
        np.zeros((2, 2, 2), dtype=np.int64),
    ],
    ids=["float64", "int32", "uint32", "bool", "0-d", "3-d"],
)
def test_unsupported_arrays_are_refused(array: np.ndarray[Any, Any]) -> None:
    with pytest.raises(CodecError):
        encode(array)


def test_a_float_deep_inside_a_structure_is_refused() -> None:
    with pytest.raises(CodecError, match="float"):
        encode({"a": [1, {"b": (2, 3.0)}]})


# ---------------------------------------------------------------------------------------------------------------
# Malformed input


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"X",
        b"NN",
        b"N\x00",
        b"i\x00\x00",
        b"I\x05\x00\x00\x00\x01",
        b"s\x02\x00\x00\x00\xff\xfe",  # not UTF-8
        b"s\xff\xff\xff\xff",  # length far beyond the data
        b"b\x03\x00\x00\x00ab",
        b"l\x02\x00\x00\x00N",
        b"d\x01\x00\x00\x00N",  # a dict key that is None
        b"d\x01\x00\x00\x00" + encode((1,)) + b"N",  # a dict key that is a tuple
        b"d\x01\x00\x00\x00T" + b"N",  # a dict key that is a bool
        b"d\x01\x00\x00\x00" + encode("k"),  # value missing
        b"af\x01\x01\x00\x00\x00" + b"\x00" * 8,  # unknown array dtype
        b"aq\x03\x01\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00" + b"\x00" * 8,  # 3-D
        b"aq\x00" + b"\x00" * 8,  # 0-D
        b"aq\x01\x02\x00\x00\x00" + b"\x00" * 8,  # one element short
        b"aq",
    ],
)
def test_malformed_data_raises_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode(data)


def test_trailing_bytes_are_reported() -> None:
    with pytest.raises(CodecError, match="trailing"):
        decode(encode((1, 2)) + b"N")


@settings(max_examples=80)
@given(VALUES)
def test_every_strict_prefix_of_an_encoding_raises_codec_error(value: object) -> None:
    data = encode(value)
    for end in range(len(data)):
        with pytest.raises(CodecError):
            decode(data[:end])


@settings(max_examples=80)
@given(VALUES, st.binary(min_size=1, max_size=16))
def test_any_trailing_garbage_raises_codec_error(value: object, extra: bytes) -> None:
    with pytest.raises(CodecError):
        decode(encode(value) + extra)


def _decode_or_codec_error(data: bytes) -> None:
    """Decoding arbitrary bytes either yields a value that re-encodes, or raises CodecError -- nothing else."""
    try:
        value = decode(data)
    except CodecError:
        return
    reencoded = encode(value)
    assert encode(decode(reencoded)) == reencoded


@settings(max_examples=150)
@given(VALUES, st.data())
def test_corrupting_one_byte_never_raises_anything_but_codec_error(value: object, data: st.DataObject) -> None:
    encoded = bytearray(encode(value))
    position = data.draw(st.integers(0, len(encoded) - 1))
    encoded[position] = data.draw(st.integers(0, 255).filter(lambda b: b != encoded[position]))
    _decode_or_codec_error(bytes(encoded))


@settings(max_examples=150)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_raise_anything_but_codec_error(data: bytes) -> None:
    _decode_or_codec_error(data)


@settings(max_examples=100)
@given(st.lists(st.sampled_from([b"N", b"T", b"F", b"i", b"I", b"s", b"b", b"l", b"d", b"a", b"q", b"Q"]), max_size=12))
def test_tag_soup_never_raises_anything_but_codec_error(parts: list[bytes]) -> None:
    _decode_or_codec_error(b"\x01\x00\x00\x00".join(parts))


# ---------------------------------------------------------------------------------------------------------------
# Reading some entries of a dict (decode_fields)


@settings(max_examples=120)
@given(st.dictionaries(st.text(max_size=6), VALUES, max_size=6), st.sets(st.text(max_size=6), max_size=4))
def test_decode_fields_gives_the_named_entries_as_a_whole_decode_does(
    value: dict[str, object], names: set[str]
) -> None:
    decoded = decode_fields(encode(value), frozenset(names))
    whole = decode(encode(value))
    assert set(decoded) == names & set(value)
    assert all(encode(decoded[name]) == encode(whole[name]) for name in decoded)


@settings(max_examples=80)
@given(st.lists(st.lists(VALUES, min_size=1, max_size=4), max_size=5), VALUES)
def test_decode_fields_reads_only_the_first_items_of_a_heads_entry(rows: list[list[object]], other: object) -> None:
    data = encode({"rows": rows, "other": other})
    found = decode_fields(data, frozenset({"rows", "other"}), heads=frozenset({"rows"}))
    assert encode(found["rows"]) == encode(tuple(row[0] for row in rows))
    assert encode(found["other"]) == encode(other)


@settings(max_examples=60)
@given(st.dictionaries(st.text(max_size=6), VALUES, min_size=1, max_size=5))
def test_decode_fields_of_a_prefix_raises_or_gives_what_the_whole_gives(value: dict[str, object]) -> None:
    data = encode(value)
    names = frozenset(list(value)[:1])
    expected = decode_fields(data, names)
    for end in range(len(data)):
        try:
            found = decode_fields(data[:end], names)
        except CodecError:
            continue
        assert {k: encode(v) for k, v in found.items()} == {k: encode(v) for k, v in expected.items()}


@pytest.mark.parametrize(
    ("data", "heads"),
    [
        (encode((1, 2)), frozenset()),  # not a dict
        (encode({1: 2}), frozenset()),  # a key that is not a str
        (encode({"rows": (1, 2)}), frozenset({"rows"})),  # heads of a list that holds no lists
        (encode({"rows": ((),)}), frozenset({"rows"})),  # an inner list with no first item
        (encode({"rows": 5}), frozenset({"rows"})),
    ],
)
def test_decode_fields_refuses_what_is_not_such_a_dict(data: bytes, heads: frozenset[str]) -> None:
    with pytest.raises(CodecError):
        decode_fields(data, frozenset({"rows"}) | heads, heads=heads)


# ---------------------------------------------------------------------------------------------------------------
# Keeping some entries of a dict encoded (decode_keeping)


@settings(max_examples=120)
@given(st.dictionaries(st.text(max_size=6), VALUES, max_size=6), st.sets(st.text(max_size=6), max_size=4))
def test_decode_keeping_leaves_the_named_entries_as_their_encoding(value: dict[str, object], kept: set[str]) -> None:
    data = encode(value)
    found = decode_keeping(data, frozenset(kept))
    whole = decode(data)
    assert set(found) == set(value)
    for key, item in found.items():
        if key in kept:
            assert item == encode(value[key])
        else:
            assert encode(item) == encode(whole[key])
    # encodings said to be likely change nothing: those found are taken, the others ignored
    likely = [b"", encode("x" * 7), encode(()), *(encode(item) for item in value.values())]
    hinted = decode_keeping(data, frozenset(kept), likely=likely)
    assert {key: encode(item) for key, item in hinted.items()} == {key: encode(item) for key, item in found.items()}


@settings(max_examples=60)
@given(st.dictionaries(st.text(max_size=6), VALUES, min_size=1, max_size=5), st.binary(min_size=1, max_size=8))
def test_decode_keeping_refuses_what_decode_refuses(value: dict[str, object], extra: bytes) -> None:
    data = encode(value)
    kept = frozenset(list(value)[:1])
    for end in range(len(data)):
        with pytest.raises(CodecError):
            decode_keeping(data[:end], kept)
    with pytest.raises(CodecError):
        decode_keeping(data + extra, kept)


@pytest.mark.parametrize("data", [encode((1, 2)), encode({1: 2}), b""])
def test_decode_keeping_refuses_what_is_no_dict_of_str_keys(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_keeping(data, frozenset({"a"}))
