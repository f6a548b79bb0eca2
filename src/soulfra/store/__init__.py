"""soulfra.store: where worlds are kept. Ports (``ports``), the SQL adapter for SQLite and PostgreSQL (``sql``, one
module a port), the in-memory adapter (``memory``) that passes the same contract suite, the snapshot keyframe and
dictionary rules (``snapshot_policy``), the schema and its migrations. ``SqlStore.open(url)`` is the way in;
``InMemoryStore()`` is a database of this process's own, for tests.
"""

from __future__ import annotations

from soulfra.store.database import head_revision, make_engine, upgrade
from soulfra.store.memory import InMemoryStore, MemoryDatabase
from soulfra.store.ports import (
    AgentRecord,
    AuditEntry,
    AuditLog,
    InputLog,
    InstanceCatalog,
    InstanceRecord,
    RitualStorage,
    SnapshotInfo,
    SnapshotStorage,
    StateFrame,
    Store,
    StoredInput,
    TraceRecord,
    VaultManager,
)
from soulfra.store.sql import SqlStore

__all__ = [
    "AgentRecord",
    "AuditEntry",
    "AuditLog",
    "InMemoryStore",
    "InputLog",
    "InstanceCatalog",
    "InstanceRecord",
    "MemoryDatabase",
    "RitualStorage",
    "SnapshotInfo",
    "SnapshotStorage",
    "SqlStore",
    "StateFrame",
    "Store",
    "StoredInput",
    "TraceRecord",
    "VaultManager",
    "head_revision",
    "make_engine",
    "upgrade",
]
