"""The appended ports in memory: the input log (numbered by ``seq``), ritual traces, the agent vault (an upsert per
agent) and the audit log. Rows are kept in the order they read back in; JSON is kept as text, as a database keeps it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from soulfra.errors import NotFoundError
from soulfra.projection import agent_state_json, personality_json
from soulfra.store.audit_chain import GENESIS, canonical_detail, row_hash
from soulfra.store.memory.tables import AgentRow, AuditRow, TraceRow, from_json, to_json
from soulfra.store.ports import AgentRecord, AuditEntry, SignedHead, StoredInput, TraceRecord
from soulfra.world.events import Event, event_to_json
from soulfra.world.inputs import Input
from soulfra.world.model import WorldState

if TYPE_CHECKING:
    from soulfra.store.memory.store import InMemoryStore


class InMemoryInputLog:
    def __init__(self, store: InMemoryStore) -> None:
        self._store = store

    def append(self, instance_id: str, items: Sequence[Input]) -> list[StoredInput]:
        if not items:
            return []
        now = datetime.now(UTC)
        what = f"appending to the input log of {instance_id}"
        with self._store.write(what) as tables:
            self._store.fence(tables, instance_id)
            tables.require_instance(instance_id, what)
            stored = tables.inputs.get(instance_id, ())
            first = (stored[-1].seq if stored else 0) + 1
            added = [
                StoredInput(seq=first + i, tick=item.tick, input=item, accepted_at=now) for i, item in enumerate(items)
            ]
            tables.inputs[instance_id] = stored + tuple(added)
        return added

    def read(self, instance_id: str, *, from_tick: int = 0, to_tick: int | None = None) -> list[StoredInput]:
        return [
            s
            for s in self._store.view().inputs.get(instance_id, ())
            if from_tick <= s.tick and (to_tick is None or s.tick < to_tick)
        ]

    def page(self, instance_id: str, *, after_seq: int = 0, limit: int = 100) -> list[StoredInput]:
        after = [s for s in self._store.view().inputs.get(instance_id, ()) if s.seq > after_seq]
        return after[: max(limit, 0)]

    def latest(self, instance_id: str, *, limit: int) -> list[StoredInput]:
        stored = list(self._store.view().inputs.get(instance_id, ()))
        return stored[len(stored) - max(limit, 0) :]

    def count(self, instance_id: str) -> int:
        return len(self._store.view().inputs.get(instance_id, ()))


class InMemoryRitualStorage:
    def __init__(self, store: InMemoryStore) -> None:
        self._store = store

    def append(self, instance_id: str, events: Iterable[Event]) -> int:
        rows = [{"tick": e.tick, "kind": e.kind, "data": event_to_json(e)} for e in events]
        return self._store_rows(instance_id, rows, f"storing traces of {instance_id}")[1] if rows else 0

    def record(self, instance_id: str, *, tick: int, kind: str, data: dict[str, Any]) -> int:
        row = {"tick": tick, "kind": kind, "data": data}
        return self._store_rows(instance_id, [row], f"storing a {kind} record of {instance_id}")[0]

    def record_many(self, instance_id: str, rows: Sequence[dict[str, Any]]) -> int:
        if not rows:
            return 0
        return self._store_rows(instance_id, rows, f"storing {len(rows)} records of {instance_id}")[1]

    def _store_rows(self, instance_id: str, rows: Sequence[dict[str, Any]], what: str) -> tuple[int, int]:
        """Append ``rows`` (``{"tick", "kind", "data"}``); the id of the first and how many."""
        now = datetime.now(UTC)
        encoded = [(int(r["tick"]), str(r["kind"]), to_json(r["data"])) for r in rows]
        with self._store.write(what) as tables:
            self._store.fence(tables, instance_id)
            tables.require_instance(instance_id, what)
            added = tuple(
                TraceRow(id=tables.next_id(), tick=tick, kind=kind, data=data, timestamp=now)
                for tick, kind, data in encoded
            )
            tables.traces[instance_id] = tables.traces.get(instance_id, ()) + added
        return added[0].id, len(added)

    def read(
        self, instance_id: str, *, from_tick: int = 0, to_tick: int | None = None, kinds: Sequence[str] = ()
    ) -> list[TraceRecord]:
        wanted = set(kinds)
        return [
            TraceRecord(id=r.id, tick=r.tick, kind=r.kind, data=from_json(r.data), timestamp=r.timestamp)
            for r in self._store.view().traces.get(instance_id, ())
            if from_tick <= r.tick and (to_tick is None or r.tick < to_tick) and (not wanted or r.kind in wanted)
        ]


class InMemoryVaultManager:
    def __init__(self, store: InMemoryStore) -> None:
        self._store = store

    def save_agents(self, instance_id: str, state: WorldState) -> int:
        now = datetime.now(UTC)
        what = f"saving agents of {instance_id}"
        saved = [
            AgentRow(id=spec.id, agent_type=spec.mind, personality=to_json(personality_json(state, i)),
                     state=to_json(agent_state_json(state, i)), tick=state.tick, created_at=now)
            for i, spec in enumerate(state.specs)
        ]  # fmt: skip
        with self._store.write(what) as tables:
            self._store.fence(tables, instance_id)
            tables.require_instance(instance_id, what)
            rows = {row.id: row for row in tables.agents.get(instance_id, ())}
            for row in saved:
                known = rows.get(row.id)  # an upsert keeps when the agent was first stored
                rows[row.id] = row if known is None else AgentRow(
                    id=row.id, agent_type=row.agent_type, personality=row.personality, state=row.state,
                    tick=row.tick, created_at=known.created_at,
                )  # fmt: skip
            tables.agents[instance_id] = tuple(rows.values())
        return len(saved)

    def load_agent(self, instance_id: str, agent_id: str) -> AgentRecord:
        for row in self._store.view().agents.get(instance_id, ()):
            if row.id == agent_id:
                return _agent(instance_id, row)
        raise NotFoundError(f"instance {instance_id!r} has no agent {agent_id!r}")

    def list_agents(self, instance_id: str) -> list[AgentRecord]:
        records = [_agent(instance_id, row) for row in self._store.view().agents.get(instance_id, ())]
        return sorted(records, key=lambda r: r.state.get("index", 0))


def _agent(instance_id: str, row: AgentRow) -> AgentRecord:
    return AgentRecord(
        id=row.id, instance_id=instance_id, agent_type=row.agent_type, personality=from_json(row.personality),
        state=from_json(row.state), tick=row.tick, created_at=row.created_at,
    )  # fmt: skip


class InMemoryAuditLog:
    """The audit chain in memory: appends hold the database's write lock, as SQL appends hold the chain's row."""

    def __init__(self, store: InMemoryStore) -> None:
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
        stored = canonical_detail(detail)
        with self._store.write(f"auditing {action}") as tables:
            previous = tables.audit[-1].entry.row_hash if tables.audit else GENESIS
            entry = AuditEntry(
                id=len(tables.audit) + 1, timestamp=datetime.now(UTC), actor=actor, action=action,
                instance_id=instance_id, detail=stored, role=role, source=source, request_id=request_id,
                outcome=outcome, instances=tuple(sorted(set(instances))), prev_hash=previous,
            )  # fmt: skip
            entry = replace(entry, row_hash=row_hash(**entry.hash_fields()))
            tables.audit = (*tables.audit, AuditRow(entry=replace(entry, detail={}), detail=to_json(stored)))
        return entry

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
        found: list[AuditEntry] = []
        for row in self._store.view().audit:
            e = row.entry
            if e.id <= after_id or (actor is not None and e.actor != actor):
                continue
            if outcome is not None and e.outcome != outcome:
                continue
            if action is not None and not (e.action.startswith(action) if action.endswith(".") else e.action == action):
                continue
            if instance_id is not None and instance_id != e.instance_id and instance_id not in e.instances:
                continue
            found.append(replace(e, detail=from_json(row.detail)))
            if limit is not None and len(found) >= limit:
                break
        return found

    def head(self) -> tuple[int, str]:
        audit = self._store.view().audit
        return (audit[-1].entry.id, audit[-1].entry.row_hash) if audit else (0, GENESIS)

    def save_head(self, head: SignedHead) -> None:
        with self._store.write("keeping the audit chain's signed head") as tables:
            tables.audit_heads = (*tables.audit_heads, head)

    def signed_heads(self) -> list[SignedHead]:
        return list(self._store.view().audit_heads)
