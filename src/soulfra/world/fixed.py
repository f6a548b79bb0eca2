"""Fixed-point numbers: every quantity that must replay bit-identically is an int scaled by ``SCALE``.

A trait of 0.75 is ``750_000``. Conversions from user text go through ``Decimal`` so that "0.7" is exact;
floats never enter the world's arithmetic.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

SCALE = 1_000_000
HALF = SCALE // 2


def from_decimal(value: object, *, lo: int = 0, hi: int = SCALE, what: str = "value") -> int:
    """Convert a user-supplied number in ``[lo/SCALE, hi/SCALE]`` to fixed point, or raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"{what} must be a number, got {type(value).__name__}")
    try:
        dec = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not dec.is_finite():
        raise ValueError(f"{what} must be finite, got {value!r}")
    if dec.adjusted() > 18:  # far outside any range a world uses; also keeps Decimal from overflowing
        raise ValueError(f"{what} is out of range, got {value}")
    fixed = int((dec * SCALE).to_integral_value(rounding=ROUND_HALF_EVEN))
    if not lo <= fixed <= hi:
        raise ValueError(f"{what} must be between {Decimal(lo) / SCALE} and {Decimal(hi) / SCALE}, got {value}")
    return fixed


def to_decimal_str(fixed: int) -> str:
    """Render a fixed-point int as a plain decimal string, e.g. ``-250000`` -> ``"-0.25"``."""
    text = format(Decimal(fixed) / SCALE, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def clamp(value: int, lo: int, hi: int) -> int:
    return lo if value < lo else hi if value > hi else value
