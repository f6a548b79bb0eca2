"""The ``TokenStore`` port in SQL: API tokens by name and by hash (the token itself is never stored)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from soulfra.errors import ConflictError, NotFoundError
from soulfra.store import schema
from soulfra.store.ports import TokenRecord
from soulfra.store.sql.clock import aware

if TYPE_CHECKING:
    from soulfra.store.sql.store import SqlStore

_TOKENS = schema.api_tokens


class SqlTokenStore:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def create(self, record: TokenRecord) -> TokenRecord:
        with self._store.connect(f"creating token {record.name}") as conn:
            found = conn.execute(sa.select(_TOKENS.c.revoked_at).where(_TOKENS.c.name == record.name)).first()
            if found is not None and found.revoked_at is None:
                raise ConflictError(f"a token named {record.name!r} exists; revoke it first or choose another name")
            if found is not None:
                conn.execute(_TOKENS.delete().where(_TOKENS.c.name == record.name))
            taken = conn.execute(sa.select(_TOKENS.c.name).where(_TOKENS.c.token_hash == record.token_hash)).first()
            if taken is not None:
                raise ConflictError("another token has the same hash")
            conn.execute(
                _TOKENS.insert().values(
                    name=record.name, role=record.role, token_hash=record.token_hash,
                    instances=None if record.instances is None else list(record.instances),
                    created_at=record.created_at, expires_at=record.expires_at, revoked_at=record.revoked_at,
                    created_by=record.created_by,
                )
            )  # fmt: skip
        return record

    def get(self, name: str) -> TokenRecord:
        with self._store.connect(f"reading token {name}") as conn:
            row = conn.execute(sa.select(_TOKENS).where(_TOKENS.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no token named {name!r}")
        return _record(row)

    def by_hash(self, token_hash: str) -> TokenRecord | None:
        with self._store.connect("checking a token") as conn:
            row = conn.execute(sa.select(_TOKENS).where(_TOKENS.c.token_hash == token_hash)).first()
        return None if row is None else _record(row)

    def list_tokens(self) -> list[TokenRecord]:
        with self._store.connect("listing tokens") as conn:
            rows = conn.execute(sa.select(_TOKENS).order_by(_TOKENS.c.name)).all()
        return [_record(r) for r in rows]

    def revoke(self, name: str, at: datetime) -> TokenRecord:
        with self._store.connect(f"revoking token {name}") as conn:
            done = conn.execute(
                _TOKENS.update().where(_TOKENS.c.name == name, _TOKENS.c.revoked_at.is_(None)).values(revoked_at=at)
            )
            if done.rowcount == 0:
                raise NotFoundError(f"no token named {name!r} that is not revoked")
            row = conn.execute(sa.select(_TOKENS).where(_TOKENS.c.name == name)).one()
        return _record(row)


def _record(row: Any) -> TokenRecord:
    return TokenRecord(
        name=row.name, role=row.role, token_hash=row.token_hash,
        instances=None if row.instances is None else tuple(row.instances), created_at=aware(row.created_at),
        expires_at=None if row.expires_at is None else aware(row.expires_at),
        revoked_at=None if row.revoked_at is None else aware(row.revoked_at), created_by=row.created_by,
    )  # fmt: skip
