"""The ``TokenStore`` port in memory: API tokens by name (their hashes only, as a database keeps them)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from soulfra.errors import ConflictError, NotFoundError
from soulfra.store.ports import TokenRecord

if TYPE_CHECKING:
    from soulfra.store.memory.store import InMemoryStore


class InMemoryTokenStore:
    def __init__(self, store: InMemoryStore) -> None:
        self._store = store

    def create(self, record: TokenRecord) -> TokenRecord:
        with self._store.write(f"creating token {record.name}") as tables:
            found = tables.tokens.get(record.name)
            if found is not None and found.revoked_at is None:
                raise ConflictError(f"a token named {record.name!r} exists; revoke it first or choose another name")
            if any(t.token_hash == record.token_hash and t.name != record.name for t in tables.tokens.values()):
                raise ConflictError("another token has the same hash")
            tables.tokens[record.name] = record
        return record

    def get(self, name: str) -> TokenRecord:
        found = self._store.view().tokens.get(name)
        if found is None:
            raise NotFoundError(f"no token named {name!r}")
        return found

    def by_hash(self, token_hash: str) -> TokenRecord | None:
        return next((t for t in self._store.view().tokens.values() if t.token_hash == token_hash), None)

    def list_tokens(self) -> list[TokenRecord]:
        return sorted(self._store.view().tokens.values(), key=lambda t: t.name)

    def revoke(self, name: str, at: datetime) -> TokenRecord:
        with self._store.write(f"revoking token {name}") as tables:
            found = tables.tokens.get(name)
            if found is None or found.revoked_at is not None:
                raise NotFoundError(f"no token named {name!r} that is not revoked")
            tables.tokens[name] = revoked = replace(found, revoked_at=at)
        return revoked
