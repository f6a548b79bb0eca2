"""A merge's conflicts as a person reads them (``soulfra god merge --verbose``): every fixed-point value as the decimal
it stands for, long lists as their length, anything else as JSON (never Python's repr). Shows; never decides."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["conflict_line"]

# The fields the world keeps as fixed-point integers, by name wherever they appear: an agent's traits (added from the
# model), mood, energy and focus; the vibe's temperature, pressure and wind; a ritual's or a vibe override's
# intensity; a loop's mood baseline. An affinity (the affinities domain) is one too, named by the other agent.
FIXED_POINT_FIELDS = frozenset(
    {"valence", "arousal", "energy", "focus", "temperature", "pressure", "wind", "intensity", "baseline"}
)
COUNTED = frozenset({"vibe_history"})  # lists of fixed-point readings: shown by their length, however short
LONGEST_LIST = 3  # a list longer than this is shown by its length (--json gives the values)


def conflict_line(conflict: dict[str, Any]) -> str:
    """One conflict of a merge reply: ``domain/entity.field: ours X, theirs Y -> RESOLVED (policy)``."""
    from soulfra.world.model import TRAITS  # noqa: PLC0415 -- the world loads only where it is needed

    domain, entity, field = conflict["domain"], conflict["entity"], conflict["field"]
    fixed = domain == "affinities" or field in FIXED_POINT_FIELDS or field in TRAITS
    counted = entity in COUNTED or field in COUNTED
    ours, theirs, resolved = (_shown(conflict[k], fixed=fixed, counted=counted) for k in ("ours", "theirs", "resolved"))
    return f"  {domain}/{entity}.{field}: ours {ours}, theirs {theirs} -> {resolved} ({conflict['policy']})"


class _Decimal(str):
    """Written as it is, unquoted in JSON: a fixed-point value's decimal, or a long list's length."""

    __slots__ = ()


def _shown(value: Any, *, fixed: bool, counted: bool) -> str:
    if isinstance(value, list) and (counted or len(value) > LONGEST_LIST):
        return f"{len(value)} {'entry' if len(value) == 1 else 'entries'}"
    readable = _decimals(value, fixed=fixed)
    return (
        str(readable)
        if isinstance(readable, _Decimal | str | int) and not isinstance(readable, bool)
        else (_json(readable))
    )


def _decimals(value: Any, *, fixed: bool) -> Any:
    """``value`` with its fixed-point integers as decimals: itself when ``fixed``, else its fields named so."""
    from soulfra.world.fixed import to_decimal_str  # noqa: PLC0415
    from soulfra.world.model import TRAITS  # noqa: PLC0415

    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return _Decimal(to_decimal_str(value)) if fixed else value
    if isinstance(value, dict):
        return {key: _decimals(item, fixed=key in FIXED_POINT_FIELDS or key in TRAITS) for key, item in value.items()}
    if isinstance(value, list):
        if len(value) > LONGEST_LIST:  # within a record: its length, in brackets
            return _Decimal(f"[{len(value)} entries]")
        return [_decimals(item, fixed=False) for item in value]
    return value


def _json(value: Any) -> str:
    """JSON as ``json.dumps`` writes it (", " and ": "), with decimals unquoted."""
    if isinstance(value, _Decimal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)}: {_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_json(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)
