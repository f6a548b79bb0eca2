"""The audit log's hash chain: what each row's hash commits to, and the value a row is stored as.

Row ``n`` is numbered ``n`` (1, 2, 3...) and its hash covers every field it holds plus the hash of row ``n - 1``
(``GENESIS`` for the first), so editing, deleting, inserting or reordering any row breaks the chain at that row.
Both adapters store rows through ``chained``; ``soulfra.security.audit`` verifies the chain through ``row_hash``.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Any

__all__ = ["GENESIS", "canonical_detail", "row_hash"]

GENESIS = "0" * 64  # the "previous hash" of the first row


def _plain(value: Any) -> Any:
    """A JSON value that reads back from every database as it went in: JSONB keeps numbers as decimals, so a float
    that is a whole number past 2**53 comes back as an integer, and -0.0 as 0.0."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0:
            return 0.0
        if value.is_integer() and abs(value) >= 2**53:
            return int(value)
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def canonical_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """``detail`` as it is stored and hashed: JSON only (anything else as its ``str``), numbers as every database
    gives them back."""
    loaded: dict[str, Any] = json.loads(json.dumps(_plain(detail), default=str))
    return loaded


def _when(timestamp: datetime) -> str:
    moment = timestamp if timestamp.tzinfo is not None else timestamp.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_hash(
    *,
    id: int,
    timestamp: datetime,
    actor: str,
    role: str | None,
    source: str | None,
    request_id: str | None,
    action: str,
    instance_id: str | None,
    instances: list[str],
    outcome: str,
    detail: dict[str, Any],
    prev_hash: str,
) -> str:
    """The SHA-256 (hex) of a row's fields and its predecessor's hash, over canonical JSON."""
    body = {
        "id": id, "timestamp": _when(timestamp), "actor": actor, "role": role, "source": source,
        "request_id": request_id, "action": action, "instance_id": instance_id, "instances": sorted(instances),
        "outcome": outcome, "detail": detail, "prev_hash": prev_hash,
    }  # fmt: skip
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()
