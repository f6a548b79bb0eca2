"""The ``VaultManager`` port in SQL: each agent's latest personality and state as JSON (JSONB on PostgreSQL), upserted
at every save, and the two JSON projections of an agent it stores. The world's state stays the snapshots' to keep.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from soulfra.errors import NotFoundError
from soulfra.projection import agent_state_json, personality_json
from soulfra.store import schema
from soulfra.store.ports import AgentRecord
from soulfra.store.sql.clock import aware, utc_now
from soulfra.world.model import WorldState

if TYPE_CHECKING:
    from soulfra.store.sql.store import SqlStore


class SqlVaultManager:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def save_agents(self, instance_id: str, state: WorldState) -> int:
        table = schema.agents
        now = utc_now()
        rows = [
            {"id": spec.id, "instance_id": instance_id, "agent_type": spec.mind,
             "personality": personality_json(state, i), "state": agent_state_json(state, i), "tick": state.tick,
             "created_at": now}
            for i, spec in enumerate(state.specs)
        ]  # fmt: skip
        statement = self._store.insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.id, table.c.instance_id],
            set_={
                "agent_type": statement.excluded.agent_type,
                "personality": statement.excluded.personality,
                "state": statement.excluded.state,
                "tick": statement.excluded.tick,
            },
        )
        with self._store.connect(f"saving agents of {instance_id}") as conn:
            self._store.fence(conn, instance_id)
            conn.execute(statement, rows)
        return len(rows)

    def load_agent(self, instance_id: str, agent_id: str) -> AgentRecord:
        table = schema.agents
        with self._store.connect(f"reading agent {agent_id}") as conn:
            row = conn.execute(
                sa.select(table).where(table.c.instance_id == instance_id, table.c.id == agent_id)
            ).first()
        if row is None:
            raise NotFoundError(f"instance {instance_id!r} has no agent {agent_id!r}")
        return _agent(row)

    def list_agents(self, instance_id: str) -> list[AgentRecord]:
        table = schema.agents
        with self._store.connect(f"listing agents of {instance_id}") as conn:
            rows = conn.execute(sa.select(table).where(table.c.instance_id == instance_id)).all()
        records = [_agent(row) for row in rows]
        return sorted(records, key=lambda r: r.state.get("index", 0))


def _agent(row: sa.Row[Any]) -> AgentRecord:
    return AgentRecord(
        id=row.id, instance_id=row.instance_id, agent_type=row.agent_type, personality=dict(row.personality),
        state=dict(row.state), tick=row.tick, created_at=aware(row.created_at),
    )  # fmt: skip
