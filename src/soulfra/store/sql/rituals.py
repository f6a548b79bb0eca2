"""The ``RitualStorage`` port in SQL: the events a world derived and the records platforms made of it, kept in
``ritual_logs`` for reading: appended and read back in order, never edited here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from soulfra.errors import StorageError
from soulfra.store import schema
from soulfra.store.ports import TraceRecord
from soulfra.store.sql.clock import aware, utc_now
from soulfra.world.events import Event, event_to_json

if TYPE_CHECKING:
    from soulfra.store.sql.store import SqlStore


class SqlRitualStorage:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def append(self, instance_id: str, events: Iterable[Event]) -> int:
        now = utc_now()
        rows = [
            {"instance_id": instance_id, "ritual_data": event_to_json(e), "timestamp": now, "tick": e.tick,
             "kind": e.kind}
            for e in events
        ]  # fmt: skip
        if rows:
            with self._store.connect(f"storing traces of {instance_id}") as conn:
                self._store.fence(conn, instance_id)
                conn.execute(schema.ritual_logs.insert(), rows)
        return len(rows)

    def record(self, instance_id: str, *, tick: int, kind: str, data: dict[str, Any]) -> int:
        row = {"instance_id": instance_id, "ritual_data": data, "timestamp": utc_now(), "tick": tick, "kind": kind}
        with self._store.connect(f"storing a {kind} record of {instance_id}") as conn:
            self._store.fence(conn, instance_id)
            key = conn.execute(schema.ritual_logs.insert().values(**row)).inserted_primary_key
        if key is None:
            raise StorageError(f"the database returned no id for the {kind} record of {instance_id}")
        return int(key[0])

    def record_many(self, instance_id: str, rows: Sequence[dict[str, Any]]) -> int:
        if not rows:
            return 0
        now = utc_now()
        values = [
            {
                "instance_id": instance_id,
                "ritual_data": r["data"],
                "timestamp": now,
                "tick": r["tick"],
                "kind": r["kind"],
            }
            for r in rows
        ]
        with self._store.connect(f"storing {len(rows)} records of {instance_id}") as conn:
            self._store.fence(conn, instance_id)
            conn.execute(schema.ritual_logs.insert(), values)
        return len(values)

    def read(
        self, instance_id: str, *, from_tick: int = 0, to_tick: int | None = None, kinds: Sequence[str] = ()
    ) -> list[TraceRecord]:
        table = schema.ritual_logs
        query = sa.select(table).where(table.c.instance_id == instance_id, table.c.tick >= from_tick)
        if to_tick is not None:
            query = query.where(table.c.tick < to_tick)
        if kinds:
            query = query.where(table.c.kind.in_(list(kinds)))
        with self._store.connect(f"reading traces of {instance_id}") as conn:
            rows = conn.execute(query.order_by(table.c.id)).all()
        return [
            TraceRecord(id=r.id, tick=r.tick, kind=r.kind, data=dict(r.ritual_data), timestamp=aware(r.timestamp))
            for r in rows
        ]
