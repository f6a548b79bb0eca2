"""The ``SessionStore`` port in memory: dashboard sessions by the hash of their id, as a database keeps them."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from soulfra.errors import ConflictError
from soulfra.store.ports import SessionRecord

if TYPE_CHECKING:
    from soulfra.store.memory.store import InMemoryStore


class InMemorySessionStore:
    def __init__(self, store: InMemoryStore) -> None:
        self._store = store

    def create(self, record: SessionRecord, *, limit: int) -> SessionRecord:
        with self._store.write("opening a dashboard session") as tables:
            if record.id_hash in tables.sessions:
                raise ConflictError("opening a dashboard session: the database refused a conflicting write")
            tables.sessions[record.id_hash] = record
            mine = [s for s in tables.sessions.values() if s.token_hash == record.token_hash]
            mine.sort(key=lambda s: s.id_hash)
            mine.sort(key=lambda s: s.created_at, reverse=True)  # newest first, ties by id hash (as the SQL orders)
            for ended in mine[limit:]:
                del tables.sessions[ended.id_hash]
        return record

    def get(self, id_hash: str) -> SessionRecord | None:
        return self._store.view().sessions.get(id_hash)

    def touch(self, id_hash: str, at: datetime) -> None:
        found = self._store.view().sessions.get(id_hash)
        if found is None or found.last_seen_at >= at:
            return  # no write, as the SQL UPDATE that matches no row takes no lock worth speaking of
        with self._store.write("noting a dashboard session was seen") as tables:
            found = tables.sessions.get(id_hash)
            if found is not None and found.last_seen_at < at:
                tables.sessions[id_hash] = replace(found, last_seen_at=at)

    def delete(self, id_hash: str) -> bool:
        with self._store.write("ending a dashboard session") as tables:
            return tables.sessions.pop(id_hash, None) is not None

    def delete_for_token(self, token_hash: str) -> int:
        with self._store.write("ending a token's dashboard sessions") as tables:
            ended = [key for key, s in tables.sessions.items() if s.token_hash == token_hash]
            for key in ended:
                del tables.sessions[key]
        return len(ended)

    def purge(self, *, now: datetime, idle_since: datetime) -> int:
        with self._store.write("ending dashboard sessions that are over") as tables:
            ended = [k for k, s in tables.sessions.items() if s.expires_at <= now or s.last_seen_at <= idle_since]
            for key in ended:
                del tables.sessions[key]
        return len(ended)
