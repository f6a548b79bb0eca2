"""The ``InstanceCatalog`` port in SQL: instances, their lineage and their links. It owns the ``instances`` and
``instance_links`` tables; other ports' rows it touches only to delete an instance or to move a reverted part of its
history to a branch.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from soulfra.errors import ConflictError, InputError, NotFoundError
from soulfra.store import schema
from soulfra.store.ports import STATUSES, InstanceRecord, check_revert, moved_to_branch
from soulfra.store.sql.clock import aware, utc_now

if TYPE_CHECKING:
    from soulfra.store.sql.store import SqlStore


class SqlInstanceCatalog:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def create(self, record: InstanceRecord) -> InstanceRecord:
        now = utc_now()
        row = {
            "id": record.id, "name": record.name, "seed": str(record.seed), "genesis_hash": record.genesis_hash,
            "world": record.world, "parent_id": record.parent_id, "fork_tick": record.fork_tick,
            "merge_parent_id": record.merge_parent_id, "head_tick": record.head_tick, "status": record.status,
            "created_at": now, "updated_at": now,
        }  # fmt: skip
        with self._store.connect(f"creating instance {record.id}") as conn:
            exists = conn.execute(sa.select(schema.instances.c.id).where(schema.instances.c.id == record.id)).first()
            if exists is not None:
                raise ConflictError(f"instance {record.id!r} already exists")
            conn.execute(schema.instances.insert().values(**row))
        self._store.snapshots.forget(record.id)  # the id may have been deleted by another process
        return self.get(record.id)

    def get(self, instance_id: str) -> InstanceRecord:
        with self._store.connect(f"reading instance {instance_id}") as conn:
            row = conn.execute(sa.select(schema.instances).where(schema.instances.c.id == instance_id)).first()
        if row is None:
            raise NotFoundError(f"no instance {instance_id!r} in this database")
        return _instance(row)

    def list_instances(self, ids: Collection[str] | None = None) -> list[InstanceRecord]:
        query = sa.select(schema.instances).order_by(schema.instances.c.created_at, schema.instances.c.id)
        if ids is not None:
            if not ids:
                return []
            query = query.where(schema.instances.c.id.in_(sorted(ids)))
        with self._store.connect("listing instances") as conn:
            return [_instance(row) for row in conn.execute(query)]

    def find(self, seed: int) -> list[InstanceRecord]:
        table = schema.instances
        query = sa.select(table).where(table.c.seed == str(seed)).order_by(table.c.created_at.desc(), table.c.id)
        with self._store.connect(f"finding instances with seed {seed}") as conn:
            return [_instance(row) for row in conn.execute(query)]

    def set_head(self, instance_id: str, tick: int) -> None:
        self._update(instance_id, f"advancing instance {instance_id}", head_tick=tick)

    def delete(self, instance_id: str) -> None:
        with self._store.connect(f"deleting instance {instance_id}") as conn:
            self._store.fence(conn, instance_id)
            self.get(instance_id)
            snaps = schema.snapshots
            # deltas first: they reference their keyframes
            conn.execute(snaps.delete().where(snaps.c.instance_id == instance_id, snaps.c.base_id.is_not(None)))
            for table in (
                schema.snapshots, schema.compression_dictionaries, schema.ritual_logs, schema.inputs, schema.agents,
                schema.instance_rules,
            ):  # fmt: skip
                conn.execute(table.delete().where(table.c.instance_id == instance_id))
            links = schema.instance_links
            conn.execute(links.delete().where(sa.or_(links.c.a == instance_id, links.c.b == instance_id)))
            conn.execute(schema.instances.delete().where(schema.instances.c.id == instance_id))
        self._store.snapshots.forget(instance_id)

    def set_status(self, instance_id: str, status: str) -> None:
        if status not in STATUSES:
            raise InputError(f"unknown instance status {status!r}; expected one of {', '.join(STATUSES)}")
        self._update(instance_id, f"setting the status of {instance_id}", status=status)

    def _update(self, instance_id: str, what: str, **values: Any) -> None:
        """Change the instance's row (a fenced write), stamping ``updated_at``."""
        table = schema.instances
        with self._store.connect(what) as conn:
            self._store.fence(conn, instance_id)
            result = conn.execute(
                table.update().where(table.c.id == instance_id).values(**values, updated_at=utc_now())
            )
        if result.rowcount == 0:
            raise NotFoundError(f"no instance {instance_id!r} in this database")

    def children(self, instance_id: str) -> list[InstanceRecord]:
        table = schema.instances
        query = (
            sa.select(table)
            .where(sa.or_(table.c.parent_id == instance_id, table.c.merge_parent_id == instance_id))
            .order_by(table.c.created_at, table.c.id)
        )
        with self._store.connect(f"reading the children of {instance_id}") as conn:
            return [_instance(row) for row in conn.execute(query)]

    def split_branch(self, instance_id: str, tick: int, branch: InstanceRecord) -> InstanceRecord:
        check_revert(self.get(instance_id), tick)
        created = self.create(branch)
        snaps, dicts, table = schema.snapshots, schema.compression_dictionaries, schema.instances
        with self._store.connect(f"reverting {instance_id} to tick {tick}") as conn:
            self._store.fence(conn, instance_id)
            used = conn.execute(
                sa.select(snaps.c.dictionary_id)
                .where(snaps.c.instance_id == instance_id, snaps.c.tick > tick, snaps.c.dictionary_id.is_not(None))
                .distinct()
            ).scalars()
            for dict_id in list(used):  # a trained dictionary is a few KiB of codec state, not history
                row = conn.execute(
                    sa.select(dicts).where(dicts.c.instance_id == instance_id, dicts.c.dict_id == dict_id)
                ).one()
                conn.execute(dicts.insert().values(
                    instance_id=created.id, dict_id=dict_id, codec=row.codec, data=row.data, created_at=utc_now()
                ))  # fmt: skip
            conn.execute(snaps.update().where(snaps.c.instance_id == instance_id, snaps.c.tick > tick)
                         .values(instance_id=created.id))  # fmt: skip
            for moved in (schema.inputs, schema.ritual_logs):
                conn.execute(
                    moved.update()
                    .where(moved.c.instance_id == instance_id, moved.c.tick >= tick)
                    .values(instance_id=created.id)
                )
            for child in self.children(instance_id):  # made from the abandoned part: they descend from the branch
                columns = [] if child.id == created.id else moved_to_branch(child, instance_id, tick)
                if columns:
                    conn.execute(
                        table.update()
                        .where(table.c.id == child.id)
                        .values({**dict.fromkeys(columns, created.id), "updated_at": utc_now()})
                    )
            conn.execute(table.update().where(table.c.id == instance_id).values(head_tick=tick, updated_at=utc_now()))
        return created

    def link(self, a: str, b: str) -> None:
        first, second = sorted((a, b))
        with self._store.connect(f"linking {a} and {b}") as conn:
            self._store.fence(conn, a)
            self._store.fence(conn, b)
            self.get(first)
            self.get(second)
            stmt = self._store.insert(schema.instance_links).values(a=first, b=second, created_at=utc_now())
            conn.execute(stmt.on_conflict_do_nothing())

    def unlink(self, a: str, b: str) -> bool:
        first, second = sorted((a, b))
        links = schema.instance_links
        with self._store.connect(f"unlinking {a} and {b}") as conn:
            self._store.fence(conn, a)
            self._store.fence(conn, b)
            result = conn.execute(links.delete().where(links.c.a == first, links.c.b == second))
        return bool(result.rowcount)

    def links(self, instance_id: str) -> list[str]:
        links = schema.instance_links
        query = sa.select(links.c.a, links.c.b).where(sa.or_(links.c.a == instance_id, links.c.b == instance_id))
        with self._store.connect(f"reading the links of {instance_id}") as conn:
            return sorted(row.b if row.a == instance_id else row.a for row in conn.execute(query))

    def rules(self, instance_id: str) -> dict[str, Any] | None:
        table = schema.instance_rules
        with self._store.connect(f"reading the rules of {instance_id}") as conn:
            self.get(instance_id)
            row = conn.execute(sa.select(table.c.rules).where(table.c.instance_id == instance_id)).first()
        return None if row is None else dict(row.rules)

    def set_rules(self, instance_id: str, rules: dict[str, Any]) -> None:
        table = schema.instance_rules
        with self._store.connect(f"setting the rules of {instance_id}") as conn:
            self.get(instance_id)
            statement = self._store.insert(table).values(instance_id=instance_id, rules=rules, updated_at=utc_now())
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[table.c.instance_id], set_={"rules": rules, "updated_at": utc_now()}
                )
            )


def _instance(row: sa.Row[Any]) -> InstanceRecord:
    return InstanceRecord(
        id=row.id, name=row.name, seed=int(row.seed), genesis_hash=row.genesis_hash, world=dict(row.world),
        parent_id=row.parent_id, fork_tick=row.fork_tick, merge_parent_id=row.merge_parent_id,
        head_tick=row.head_tick, status=row.status, created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
    )  # fmt: skip
