"""The ``InputLog`` port in SQL: an instance's inputs, numbered in the order they were accepted. A stored input that
no longer parses is a ``HistoryIntegrityError``, never skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from soulfra.errors import HistoryIntegrityError, InputError
from soulfra.store import schema
from soulfra.store.ports import StoredInput
from soulfra.store.sql.clock import aware, utc_now
from soulfra.world.inputs import Input, input_to_json, parse_input

if TYPE_CHECKING:
    from soulfra.store.sql.store import SqlStore


def _stored_inputs(instance_id: str, rows: Sequence[sa.Row[Any, Any, Any, Any]]) -> list[StoredInput]:
    out = []
    for row in rows:
        try:
            item = parse_input(row.body)
        except InputError as exc:
            raise HistoryIntegrityError(f"input {row.seq} of {instance_id} cannot be read back: {exc.detail}") from exc
        out.append(StoredInput(seq=row.seq, tick=row.tick, input=item, accepted_at=aware(row.accepted_at)))
    return out


class SqlInputLog:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def append(self, instance_id: str, items: Sequence[Input]) -> list[StoredInput]:
        if not items:
            return []
        table = schema.inputs
        now = utc_now()
        with self._store.connect(f"appending to the input log of {instance_id}") as conn:
            self._store.fence(conn, instance_id)
            last = conn.execute(sa.select(sa.func.max(table.c.seq)).where(table.c.instance_id == instance_id)).scalar()
            first = (last or 0) + 1
            rows = [
                {"instance_id": instance_id, "seq": first + i, "tick": item.tick, "type": item.type,
                 "body": input_to_json(item), "accepted_at": now}
                for i, item in enumerate(items)
            ]  # fmt: skip
            conn.execute(table.insert(), rows)
        return [StoredInput(seq=first + i, tick=item.tick, input=item, accepted_at=now) for i, item in enumerate(items)]

    def read(self, instance_id: str, *, from_tick: int = 0, to_tick: int | None = None) -> list[StoredInput]:
        table = schema.inputs
        query = sa.select(table.c.seq, table.c.tick, table.c.body, table.c.accepted_at).where(
            table.c.instance_id == instance_id, table.c.tick >= from_tick
        )
        if to_tick is not None:
            query = query.where(table.c.tick < to_tick)
        with self._store.connect(f"reading the input log of {instance_id}") as conn:
            rows = conn.execute(query.order_by(table.c.seq)).all()
        return _stored_inputs(instance_id, rows)

    def page(self, instance_id: str, *, after_seq: int = 0, limit: int = 100) -> list[StoredInput]:
        table = schema.inputs
        query = (
            sa.select(table.c.seq, table.c.tick, table.c.body, table.c.accepted_at)
            .where(table.c.instance_id == instance_id, table.c.seq > after_seq)
            .order_by(table.c.seq)
            .limit(limit)
        )
        with self._store.connect(f"reading the input log of {instance_id}") as conn:
            rows = conn.execute(query).all()
        return _stored_inputs(instance_id, rows)

    def latest(self, instance_id: str, *, limit: int) -> list[StoredInput]:
        table = schema.inputs
        query = (
            sa.select(table.c.seq, table.c.tick, table.c.body, table.c.accepted_at)
            .where(table.c.instance_id == instance_id)
            .order_by(table.c.seq.desc())
            .limit(max(limit, 0))
        )
        with self._store.connect(f"reading the input log of {instance_id}") as conn:
            rows = conn.execute(query).all()
        return _stored_inputs(instance_id, rows[::-1])

    def count(self, instance_id: str) -> int:
        table = schema.inputs
        with self._store.connect(f"counting inputs of {instance_id}") as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(table.c.instance_id == instance_id)).scalar() or 0)
