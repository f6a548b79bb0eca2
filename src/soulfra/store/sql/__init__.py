"""The storage ports over SQLAlchemy Core: one adapter for SQLite and PostgreSQL, differing only where the dialects
do (JSONB, upserts). Driver errors leave this package as ``StorageError``s. ``SqlStore`` (``store``) holds the engine
and the transactions; each port has its own module, and none of them imports another port's.
"""

from __future__ import annotations

from soulfra.store.ports import STATUSES
from soulfra.store.snapshot_policy import DICTIONARY_MAX_RAW, DICTIONARY_SAMPLES, KEYFRAME_EVERY
from soulfra.store.sql.audit import SqlAuditLog
from soulfra.store.sql.inputs import SqlInputLog
from soulfra.store.sql.instances import SqlInstanceCatalog
from soulfra.store.sql.rituals import SqlRitualStorage
from soulfra.store.sql.sessions import SqlSessionStore
from soulfra.store.sql.snapshots import SqlSnapshotStorage, raw_hash
from soulfra.store.sql.store import SqlStore
from soulfra.store.sql.tokens import SqlTokenStore
from soulfra.store.sql.vault import SqlVaultManager

__all__ = [
    "DICTIONARY_MAX_RAW",
    "DICTIONARY_SAMPLES",
    "KEYFRAME_EVERY",
    "STATUSES",
    "SqlAuditLog",
    "SqlInputLog",
    "SqlInstanceCatalog",
    "SqlRitualStorage",
    "SqlSessionStore",
    "SqlSnapshotStorage",
    "SqlStore",
    "SqlTokenStore",
    "SqlVaultManager",
    "raw_hash",
]
