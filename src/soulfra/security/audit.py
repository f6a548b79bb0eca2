"""AuditLogger: every change an operator makes, recorded with who, what, which instance and the details.

Writes go through the store's ``AuditLog`` port; reading is ``entries``. Details are kept small and JSON-only.
"""

from __future__ import annotations

import json
from typing import Any

from soulfra.store.ports import AuditEntry, Store

__all__ = ["AuditLogger"]

MAX_DETAIL_BYTES = 8192


class AuditLogger:
    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, *, actor: str, action: str, instance_id: str | None, detail: dict[str, Any]) -> None:
        text = json.dumps(detail, default=str, sort_keys=True)
        detail = {"truncated": True, "size": len(text)} if len(text) > MAX_DETAIL_BYTES else json.loads(text)
        self.store.audit.append(actor=actor, action=action, instance_id=instance_id, detail=detail)

    def entries(self, instance_id: str | None = None) -> list[AuditEntry]:
        return self.store.audit.read(instance_id=instance_id)
