"""Fixed-point conversions: user text goes through Decimal so "0.7" is exactly 700_000."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from soulfra.world.fixed import HALF, SCALE, clamp, from_decimal, to_decimal_str


def test_scale_and_half() -> None:
    assert SCALE == 1_000_000
    assert HALF == 500_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.7", 700_000),
        (Decimal("0.7"), 700_000),
        (0.7, 700_000),
        ("0.75", 750_000),
        ("0.1", 100_000),
        (0.1, 100_000),
        (Decimal("0.123456"), 123_456),
        ("0.000001", 1),
        ("0", 0),
        (0, 0),
        (1, SCALE),
        ("1", SCALE),
        ("1.0", SCALE),
        (Decimal("1.000000"), SCALE),
        ("5E-1", HALF),
        (" 0.25 ", 250_000),
    ],
)
def test_from_decimal_is_exact(value: object, expected: int) -> None:
    result = from_decimal(value)
    assert type(result) is int
    assert result == expected


def test_float_goes_through_its_shortest_repr_not_its_binary_value() -> None:
    # 0.1 + 0.2 is 0.30000000000000004 in binary; its repr, rounded to six places, is 0.3.
    assert from_decimal(0.1 + 0.2) == 300_000
    assert from_decimal(0.3) == 300_000
    # 2.5e-06 is a little above 2.5e-06 in binary, but its repr is the exact tie, which rounds half to even
    assert from_decimal(2.5e-06) == 2
    assert from_decimal(3.5e-06) == 4


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.00000049", 0),
        ("0.00000051", 1),
        ("0.9999994", 999_999),
        ("0.9999996", SCALE),
        # exact ties round half to even
        ("0.0000005", 0),
        ("0.0000015", 2),
        ("0.0000025", 2),
        ("0.0000035", 4),
    ],
)
def test_from_decimal_rounds_beyond_six_places(value: str, expected: int) -> None:
    assert from_decimal(value) == expected


def test_from_decimal_custom_bounds() -> None:
    assert from_decimal("-0.5", lo=-SCALE, hi=SCALE) == -500_000
    assert from_decimal("2.5", hi=3 * SCALE) == 2_500_000
    assert from_decimal("0.2", lo=200_000, hi=200_000) == 200_000
    with pytest.raises(ValueError, match="between"):
        from_decimal("0.1", lo=200_000)
    with pytest.raises(ValueError, match="between"):
        from_decimal("0.3", hi=200_000)


@pytest.mark.parametrize("value", ["1.5", "1.0000006", "-0.1", "-0.0000006", 2, -1, 1.01, Decimal("10")])
def test_from_decimal_refuses_out_of_range(value: object) -> None:
    with pytest.raises(ValueError, match=r"trait warmth must be between 0 and 1"):
        from_decimal(value, what="trait warmth")


@pytest.mark.parametrize("value", [True, False, None, [0.5], {"v": 1}, b"0.5", (0.5,)])
def test_from_decimal_refuses_non_numbers(value: object) -> None:
    with pytest.raises(ValueError, match="intensity must be a number"):
        from_decimal(value, what="intensity")


@pytest.mark.parametrize("value", ["abc", "", "0.5.5", "1/2", "0,5"])
def test_from_decimal_refuses_unparseable_text(value: str) -> None:
    with pytest.raises(ValueError, match="intensity must be a number"):
        from_decimal(value, what="intensity")


@pytest.mark.parametrize(
    "value", ["nan", "NaN", "inf", "-Infinity", "sNaN", float("nan"), float("inf"), Decimal("-inf"), Decimal("NaN")]
)
def test_from_decimal_refuses_non_finite(value: object) -> None:
    with pytest.raises(ValueError, match="value must be finite"):
        from_decimal(value)


@given(st.integers(0, SCALE))
def test_every_fixed_value_in_range_is_reachable_from_its_six_place_text(fixed: int) -> None:
    text = f"{fixed // SCALE}.{fixed % SCALE:06d}"
    assert from_decimal(text) == fixed
    assert from_decimal(Decimal(text)) == fixed


@pytest.mark.parametrize(
    ("fixed", "expected"),
    [
        (0, "0"),
        (1, "0.000001"),
        (-1, "-0.000001"),
        (10, "0.00001"),
        (250_000, "0.25"),
        (-250_000, "-0.25"),
        (700_000, "0.7"),
        (123_456, "0.123456"),
        (SCALE, "1"),
        (-SCALE, "-1"),
        (1_500_000, "1.5"),
        (10 * SCALE, "10"),
        (100 * SCALE, "100"),
        (100 * SCALE + 10, "100.00001"),
    ],
)
def test_to_decimal_str(fixed: int, expected: str) -> None:
    assert to_decimal_str(fixed) == expected


@given(st.integers(-(10**18), 10**18))
def test_to_decimal_str_is_plain_minimal_and_inverts_from_decimal(fixed: int) -> None:
    text = to_decimal_str(fixed)
    assert "e" not in text.lower()
    if "." in text:
        assert not text.endswith("0")
        assert len(text.split(".")[1]) <= 6
    assert Decimal(text) * SCALE == fixed
    assert from_decimal(text, lo=-(10**18), hi=10**18) == fixed


@given(st.integers(), st.integers(), st.integers())
def test_clamp(value: int, a: int, b: int) -> None:
    lo, hi = min(a, b), max(a, b)
    result = clamp(value, lo, hi)
    assert lo <= result <= hi
    if lo <= value <= hi:
        assert result == value
    elif value < lo:
        assert result == lo
    else:
        assert result == hi


def test_clamp_examples() -> None:
    assert clamp(-5, 0, SCALE) == 0
    assert clamp(5, 0, SCALE) == 5
    assert clamp(SCALE + 1, 0, SCALE) == SCALE
    assert clamp(0, 0, 0) == 0
