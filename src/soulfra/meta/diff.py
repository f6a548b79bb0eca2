"""The pieces of a three-way merge that know nothing of worlds: the marker for a missing value, the one rule that
picks a side, and how any state value is shown in a conflict report (plain JSON: ints, strs, lists, dicts).
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any, Final

import numpy as np

__all__ = ["ABSENT", "Side", "gone", "plain", "three_way"]


class _Absent(Enum):
    ABSENT = "absent"

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent.ABSENT
"""A key or entity that one state does not hold (a closed thread, a consumed whisper)."""


class Side(Enum):
    """Where a merged value comes from."""

    BOTH = "both"
    OURS = "ours"
    THEIRS = "theirs"
    CONFLICT = "conflict"


def three_way(base: Any, ours: Any, theirs: Any) -> Side:
    """The rule every field follows: agreement wins, a side equal to the ancestor yields, anything else conflicts."""
    if ours == theirs:
        return Side.BOTH
    if ours == base:
        return Side.THEIRS
    if theirs == base:
        return Side.OURS
    return Side.CONFLICT


def gone(value: Any) -> bool:
    """True for a value that is not there: a missing key, or an optional record that is ``None``."""
    return value is ABSENT or value is None


def plain(value: Any) -> Any:
    """``value`` as JSON-friendly data: records become dicts, tuples lists, bytes hex, a missing value ``None``."""
    if value is ABSENT or value is None or isinstance(value, bool | str):
        return None if value is ABSENT else value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain(value[key]) for key in sorted(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return repr(value)
