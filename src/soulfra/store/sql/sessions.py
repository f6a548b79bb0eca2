"""The ``SessionStore`` port in SQL: dashboard sessions by the hash of their id (the id itself is never stored)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from soulfra.store import schema
from soulfra.store.ports import SessionRecord
from soulfra.store.sql.clock import aware

if TYPE_CHECKING:
    from soulfra.store.sql.store import SqlStore

_SESSIONS = schema.sessions


class SqlSessionStore:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def create(self, record: SessionRecord, *, limit: int) -> SessionRecord:
        with self._store.connect("opening a dashboard session") as conn:
            conn.execute(
                _SESSIONS.insert().values(
                    id_hash=record.id_hash, token_hash=record.token_hash, created_at=record.created_at,
                    last_seen_at=record.last_seen_at, expires_at=record.expires_at,
                )
            )  # fmt: skip
            surplus = (
                sa.select(_SESSIONS.c.id_hash)
                .where(_SESSIONS.c.token_hash == record.token_hash)
                .order_by(_SESSIONS.c.created_at.desc(), _SESSIONS.c.id_hash)
                .offset(limit)
            )
            ended = list(conn.execute(surplus).scalars())
            if ended:
                conn.execute(_SESSIONS.delete().where(_SESSIONS.c.id_hash.in_(ended)))
        return record

    def get(self, id_hash: str) -> SessionRecord | None:
        with self._store.connect("reading a dashboard session") as conn:
            row = conn.execute(sa.select(_SESSIONS).where(_SESSIONS.c.id_hash == id_hash)).first()
        return None if row is None else _record(row)

    def touch(self, id_hash: str, at: datetime) -> None:
        with self._store.connect("noting a dashboard session was seen") as conn:
            conn.execute(
                _SESSIONS.update()
                .where(_SESSIONS.c.id_hash == id_hash, _SESSIONS.c.last_seen_at < at)
                .values(last_seen_at=at)
            )

    def delete(self, id_hash: str) -> bool:
        with self._store.connect("ending a dashboard session") as conn:
            done = conn.execute(_SESSIONS.delete().where(_SESSIONS.c.id_hash == id_hash))
        return bool(done.rowcount)

    def delete_for_token(self, token_hash: str) -> int:
        with self._store.connect("ending a token's dashboard sessions") as conn:
            done = conn.execute(_SESSIONS.delete().where(_SESSIONS.c.token_hash == token_hash))
        return int(done.rowcount)

    def purge(self, *, now: datetime, idle_since: datetime) -> int:
        with self._store.connect("ending dashboard sessions that are over") as conn:
            done = conn.execute(
                _SESSIONS.delete().where(sa.or_(_SESSIONS.c.expires_at <= now, _SESSIONS.c.last_seen_at <= idle_since))
            )
        return int(done.rowcount)


def _record(row: Any) -> SessionRecord:
    return SessionRecord(
        id_hash=row.id_hash, token_hash=row.token_hash, created_at=aware(row.created_at),
        last_seen_at=aware(row.last_seen_at), expires_at=aware(row.expires_at),
    )  # fmt: skip
