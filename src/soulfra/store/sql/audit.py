"""The ``AuditLog`` port in SQL: a hash chain of rows, appended one at a time. The first statement of an append
moves the ``audit_chain`` head row, which takes the database's write lock (SQLite) or that row's lock (PostgreSQL)
until the transaction ends, so two processes never chain a row to the same predecessor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from soulfra.store import schema
from soulfra.store.audit_chain import GENESIS, canonical_detail, row_hash
from soulfra.store.ports import AuditEntry, SignedHead
from soulfra.store.sql.clock import aware, utc_now

if TYPE_CHECKING:
    from soulfra.store.sql.store import SqlStore

_CHAIN = schema.audit_chain


class SqlAuditLog:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def append(
        self,
        *,
        actor: str,
        action: str,
        instance_id: str | None,
        detail: dict[str, Any],
        role: str | None = None,
        source: str | None = None,
        request_id: str | None = None,
        outcome: str = "ok",
        instances: Sequence[str] = (),
    ) -> AuditEntry:
        with self._store.connect(f"auditing {action}") as conn:
            moved = conn.execute(_CHAIN.update().where(_CHAIN.c.id == 1).values(last_id=_CHAIN.c.last_id + 1))
            if moved.rowcount == 0:  # the first row of a database made before the chain: start it
                conn.execute(_CHAIN.insert().values(id=1, last_id=1, last_hash=GENESIS))
            last_id, prev_hash = conn.execute(sa.select(_CHAIN.c.last_id, _CHAIN.c.last_hash)).one()
            entry = AuditEntry(
                id=last_id, timestamp=utc_now(), actor=actor, action=action, instance_id=instance_id,
                detail=canonical_detail(detail), role=role, source=source, request_id=request_id, outcome=outcome,
                instances=tuple(sorted(set(instances))), prev_hash=prev_hash,
            )  # fmt: skip
            digest = row_hash(**entry.hash_fields())
            conn.execute(
                schema.audit_log.insert().values(
                    id=entry.id, timestamp=entry.timestamp, actor=actor, action=action, instance_id=instance_id,
                    detail=entry.detail, role=role, source=source, request_id=request_id, outcome=outcome,
                    instances=list(entry.instances), prev_hash=prev_hash, row_hash=digest,
                )
            )  # fmt: skip
            conn.execute(_CHAIN.update().where(_CHAIN.c.id == 1).values(last_hash=digest))
        return replace(entry, row_hash=digest)

    def read(
        self,
        *,
        instance_id: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
    ) -> list[AuditEntry]:
        table = schema.audit_log
        query = sa.select(table).where(table.c.id > after_id).order_by(table.c.id)
        if actor is not None:
            query = query.where(table.c.actor == actor)
        if action is not None:
            matches = table.c.action.startswith(action, autoescape=True) if action.endswith(".") else None
            query = query.where(matches if matches is not None else table.c.action == action)
        if outcome is not None:
            query = query.where(table.c.outcome == outcome)
        if limit is not None and instance_id is None:  # an instance may be named in the JSON list: filtered below
            query = query.limit(limit)
        with self._store.connect("reading the audit log") as conn:
            rows = conn.execute(query).all()
        entries = [_entry(r) for r in rows]
        if instance_id is not None:  # the same on both dialects, without their different JSON operators
            entries = [e for e in entries if e.instance_id == instance_id or instance_id in e.instances]
            if limit is not None:
                entries = entries[:limit]
        return entries

    def head(self) -> tuple[int, str]:
        with self._store.connect("reading the audit chain's head") as conn:
            row = conn.execute(sa.select(_CHAIN.c.last_id, _CHAIN.c.last_hash).where(_CHAIN.c.id == 1)).first()
        return (0, GENESIS) if row is None else (int(row.last_id), str(row.last_hash))

    def save_head(self, head: SignedHead) -> None:
        with self._store.connect("keeping the audit chain's signed head") as conn:
            conn.execute(
                schema.audit_heads.insert().values(
                    row_id=head.row_id, row_hash=head.row_hash, key_id=head.key_id, signature=head.signature,
                    signed_at=head.signed_at,
                )
            )  # fmt: skip

    def signed_heads(self) -> list[SignedHead]:
        table = schema.audit_heads
        with self._store.connect("reading the audit chain's signed heads") as conn:
            rows = conn.execute(sa.select(table).order_by(table.c.id)).all()
        return [
            SignedHead(row_id=r.row_id, row_hash=r.row_hash, key_id=r.key_id, signature=r.signature,
                       signed_at=aware(r.signed_at))
            for r in rows
        ]  # fmt: skip


def _entry(r: Any) -> AuditEntry:
    return AuditEntry(
        id=r.id, timestamp=aware(r.timestamp), actor=r.actor, action=r.action, instance_id=r.instance_id,
        detail=dict(r.detail), role=r.role, source=r.source, request_id=r.request_id, outcome=r.outcome,
        instances=tuple(r.instances or ()), prev_hash=r.prev_hash, row_hash=r.row_hash,
    )  # fmt: skip
