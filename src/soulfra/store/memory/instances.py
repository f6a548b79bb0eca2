"""The ``InstanceCatalog`` port in memory: instances, their lineage and their links, with the SQL adapter's rules
(its foreign keys included: an instance another one descends from cannot be deleted). Other ports' rows it touches
only to delete an instance or to move a reverted part of its history to a branch.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from soulfra.errors import ConflictError, InputError, NotFoundError
from soulfra.store.memory.tables import DictionaryRow, InstanceRow, Tables, from_json, to_json
from soulfra.store.ports import STATUSES, InstanceRecord, check_revert, moved_to_branch

if TYPE_CHECKING:
    from soulfra.store.memory.store import InMemoryStore


def _row(tables: Tables, instance_id: str) -> InstanceRow:
    found = tables.instances.get(instance_id)
    if found is None:
        raise NotFoundError(f"no instance {instance_id!r} in this database")
    return found


def _record(row: InstanceRow) -> InstanceRecord:
    return replace(row.record, world=from_json(row.world))


class InMemoryInstanceCatalog:
    def __init__(self, store: InMemoryStore) -> None:
        self._store = store

    def create(self, record: InstanceRecord) -> InstanceRecord:
        now = datetime.now(UTC)
        with self._store.write(f"creating instance {record.id}") as tables:
            if record.id in tables.instances:
                raise ConflictError(f"instance {record.id!r} already exists")
            for parent in (record.parent_id, record.merge_parent_id):
                if parent is not None:
                    tables.require_instance(parent, f"creating instance {record.id}")
            stored = replace(record, world={}, created_at=now, updated_at=now)
            tables.instances[record.id] = InstanceRow(record=stored, world=to_json(record.world))
        self._store.snapshots.forget(record.id)  # the id may have been deleted by another store
        return self.get(record.id)

    def get(self, instance_id: str) -> InstanceRecord:
        return _record(_row(self._store.view(), instance_id))

    def list_instances(self, ids: Collection[str] | None = None) -> list[InstanceRecord]:
        rows = self._store.view().instances
        return [_record(row) for key, row in rows.items() if ids is None or key in ids]

    def find(self, seed: int) -> list[InstanceRecord]:
        rows = self._store.view().instances.values()
        return [_record(row) for row in reversed(rows) if row.record.seed == seed]

    def set_head(self, instance_id: str, tick: int) -> None:
        self._update(instance_id, f"advancing instance {instance_id}", head_tick=tick)

    def delete(self, instance_id: str) -> None:
        with self._store.write(f"deleting instance {instance_id}") as tables:
            self._store.fence(tables, instance_id)
            _row(tables, instance_id)
            heirs = [
                row.record.id
                for row in tables.instances.values()
                if instance_id in (row.record.parent_id, row.record.merge_parent_id)
            ]
            if heirs:
                raise ConflictError(
                    f"deleting instance {instance_id}: the database refused a conflicting write "
                    f"({', '.join(heirs)} descend from it)"
                )
            for snapshot_id in (snapshot_id for _, snapshot_id in tables.ticks.pop(instance_id, ())):
                del tables.snapshots[snapshot_id]
            for per_instance in (tables.dictionaries, tables.traces, tables.inputs, tables.agents, tables.rules):
                per_instance.pop(instance_id, None)
            for pair in [pair for pair in tables.links if instance_id in pair]:
                del tables.links[pair]
            del tables.instances[instance_id]
        self._store.snapshots.forget(instance_id)

    def set_status(self, instance_id: str, status: str) -> None:
        if status not in STATUSES:
            raise InputError(f"unknown instance status {status!r}; expected one of {', '.join(STATUSES)}")
        self._update(instance_id, f"setting the status of {instance_id}", status=status)

    def _update(self, instance_id: str, what: str, **changes: Any) -> None:
        """Change the instance's record (a fenced write), stamping ``updated_at``."""
        with self._store.write(what) as tables:
            self._store.fence(tables, instance_id)
            _set(tables, instance_id, **changes)

    def children(self, instance_id: str) -> list[InstanceRecord]:
        return [
            _record(row)
            for row in self._store.view().instances.values()
            if instance_id in (row.record.parent_id, row.record.merge_parent_id)
        ]

    def split_branch(self, instance_id: str, tick: int, branch: InstanceRecord) -> InstanceRecord:
        check_revert(self.get(instance_id), tick)
        created = self.create(branch)
        with self._store.write(f"reverting {instance_id} to tick {tick}") as tables:
            self._store.fence(tables, instance_id)
            _move_history(tables, instance_id, created.id, tick)
            for child in self.children(instance_id):  # made from the abandoned part: they descend from the branch
                columns = [] if child.id == created.id else moved_to_branch(child, instance_id, tick)
                if columns:
                    _set(tables, child.id, **dict.fromkeys(columns, created.id))
            _set(tables, instance_id, head_tick=tick)
        return created

    def link(self, a: str, b: str) -> None:
        first, second = sorted((a, b))
        with self._store.write(f"linking {a} and {b}") as tables:
            self._store.fence(tables, a)
            self._store.fence(tables, b)
            _row(tables, first)
            _row(tables, second)
            tables.links.setdefault((first, second), datetime.now(UTC))

    def unlink(self, a: str, b: str) -> bool:
        first, second = sorted((a, b))
        with self._store.write(f"unlinking {a} and {b}") as tables:
            self._store.fence(tables, a)
            self._store.fence(tables, b)
            return tables.links.pop((first, second), None) is not None

    def links(self, instance_id: str) -> list[str]:
        pairs = self._store.view().links
        return sorted(b if a == instance_id else a for a, b in pairs if instance_id in (a, b))

    def rules(self, instance_id: str) -> dict[str, Any] | None:
        view = self._store.view()
        _row(view, instance_id)
        found = view.rules.get(instance_id)
        return None if found is None else from_json(found)

    def set_rules(self, instance_id: str, rules: dict[str, Any]) -> None:
        with self._store.write(f"setting the rules of {instance_id}") as tables:
            _row(tables, instance_id)
            tables.rules[instance_id] = to_json(rules)


def _set(tables: Tables, instance_id: str, **changes: Any) -> None:
    row = _row(tables, instance_id)
    record = replace(row.record, **changes, updated_at=datetime.now(UTC))
    tables.instances[instance_id] = InstanceRow(record=record, world=row.world)


def _move_history(tables: Tables, source: str, branch: str, tick: int) -> None:
    """Move ``source``'s snapshots after ``tick`` and its inputs and traces at ``tick`` or later to ``branch``, with
    a copy of the trained dictionaries the moved snapshots need."""
    moving = [(t, i) for t, i in tables.ticks.get(source, ()) if t > tick]
    used = {tables.snapshots[i].info.dictionary_id for _, i in moving} - {None}
    copied = tuple(d for d in tables.dictionaries.get(source, ()) if d.dict_id in used)
    if copied:  # a trained dictionary is a few KiB of codec state, not history
        tables.dictionaries[branch] = tables.dictionaries.get(branch, ()) + tuple(
            DictionaryRow(dict_id=d.dict_id, codec=d.codec, data=d.data) for d in copied
        )
    for _, snapshot_id in moving:
        row = tables.snapshots[snapshot_id]
        tables.snapshots[snapshot_id] = replace(row, info=replace(row.info, instance_id=branch))
    tables.ticks[source] = tuple((t, i) for t, i in tables.ticks.get(source, ()) if t <= tick)
    tables.ticks[branch] = tuple(sorted(tables.ticks.get(branch, ()) + tuple(moving)))
    kept_inputs = tuple(s for s in tables.inputs.get(source, ()) if s.tick < tick)
    moved_inputs = tuple(s for s in tables.inputs.get(source, ()) if s.tick >= tick)
    tables.inputs[source] = kept_inputs
    tables.inputs[branch] = tuple(sorted(tables.inputs.get(branch, ()) + moved_inputs, key=lambda s: s.seq))
    kept_traces = tuple(r for r in tables.traces.get(source, ()) if r.tick < tick)
    moved_traces = tuple(r for r in tables.traces.get(source, ()) if r.tick >= tick)
    tables.traces[source] = kept_traces
    tables.traces[branch] = tuple(sorted(tables.traces.get(branch, ()) + moved_traces, key=lambda r: r.id))
