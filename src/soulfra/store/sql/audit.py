"""The ``AuditLog`` port in SQL: who did what to which instance, appended and read back in order. Entries are stored
as given; what goes into them is the security layer's to decide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from soulfra.store import schema
from soulfra.store.ports import AuditEntry
from soulfra.store.sql.clock import aware, utc_now

if TYPE_CHECKING:
    from soulfra.store.sql.store import SqlStore


class SqlAuditLog:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def append(self, *, actor: str, action: str, instance_id: str | None, detail: dict[str, Any]) -> None:
        with self._store.connect(f"auditing {action}") as conn:
            conn.execute(
                schema.audit_log.insert().values(
                    timestamp=utc_now(), actor=actor, action=action, instance_id=instance_id, detail=detail
                )
            )

    def read(self, *, instance_id: str | None = None) -> list[AuditEntry]:
        table = schema.audit_log
        query = sa.select(table).order_by(table.c.id)
        if instance_id is not None:
            query = query.where(table.c.instance_id == instance_id)
        with self._store.connect("reading the audit log") as conn:
            rows = conn.execute(query).all()
        return [
            AuditEntry(id=r.id, timestamp=aware(r.timestamp), actor=r.actor, action=r.action,
                       instance_id=r.instance_id, detail=dict(r.detail))
            for r in rows
        ]  # fmt: skip
