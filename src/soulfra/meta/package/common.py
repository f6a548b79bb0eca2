"""What the package writer, reader and manifest share: the reader's ``Limits``, the progress callback, and the JSON
helpers that turn a value a package cannot hold into a PackageError. No ZIP, signing or manifest rules here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from soulfra.errors import ConfigError, PackageError

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What a reader accepts: bytes per entry and in total (decompressed, across nested packages), entry count."""

    max_entry_bytes: int = 1 << 30
    max_total_bytes: int = 4 << 30
    max_entries: int = 10_000

    def __post_init__(self) -> None:
        for name in ("max_entry_bytes", "max_total_bytes", "max_entries"):
            if getattr(self, name) < 1:
                raise ConfigError(f"package limit {name} must be positive, not {getattr(self, name)}")


def canonical(value: object) -> bytes:
    """The one JSON encoding a package signs and stores: sorted keys, no spaces, UTF-8, no NaN."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise PackageError(f"a package holds only JSON values: {exc}") from exc


def json_object(data: bytes, name: str) -> dict[str, Any]:
    """Entry ``name``'s bytes as a JSON object."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise PackageError(f"entry {name} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise PackageError(f"entry {name} is not a JSON object")
    return value


def json_lines(data: bytes, name: str) -> list[dict[str, Any]]:
    """Entry ``name``'s bytes as one JSON object a line."""
    return [json_object(line, f"{name} line {number}") for number, line in enumerate(data.splitlines(), 1)]
