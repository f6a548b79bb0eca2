"""The content of an in-memory database, and the database itself: what several ``InMemoryStore``s of one process
open together, as processes open one SQL database.

Every value kept here is immutable (frozen rows, tuples, JSON text), so a writer works on a shallow copy of the
tables (``Tables.fork``) and readers keep reading the committed ones untouched; committing publishes the copy. One
writer at a time holds the database's write lock, as SQLite has one writer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from soulfra.errors import ConflictError, StorageUnavailableError
from soulfra.store.ports import (
    AuditEntry,
    InstanceRecord,
    LeaseEpoch,
    SessionRecord,
    SignedHead,
    SnapshotInfo,
    StoredInput,
    TokenRecord,
)

BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another one's transaction, as SQLite's busy timeout


def to_json(value: dict[str, Any]) -> str:
    """JSON as a database keeps it: what cannot round-trip fails here, and what is read back is a new object."""
    return json.dumps(value)


def from_json(text: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@dataclass(frozen=True, slots=True)
class InstanceRow:
    record: InstanceRecord  # its ``world`` is left empty: the JSON below is the stored one
    world: str


@dataclass(frozen=True, slots=True)
class TraceRow:
    id: int
    tick: int
    kind: str
    data: str
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class AgentRow:
    id: str
    agent_type: str
    personality: str
    state: str
    tick: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    info: SnapshotInfo
    data: bytes


@dataclass(frozen=True, slots=True)
class DictionaryRow:
    dict_id: int
    codec: str
    data: bytes


@dataclass(frozen=True, slots=True)
class AuditRow:
    entry: AuditEntry  # its ``detail`` is left empty: the JSON below is the stored one
    detail: str


@dataclass(frozen=True, slots=True)
class LeaseRow:
    epoch: int
    owner: str | None  # the holding store's token; None once released
    pid: int
    host: str
    acquired_at: datetime


@dataclass(slots=True)
class Tables:
    """One version of the database. Dicts are never shared between two versions; what they hold always is."""

    instances: dict[str, InstanceRow] = field(default_factory=dict)  # in the order they were created
    links: dict[tuple[str, str], datetime] = field(default_factory=dict)  # (a, b) with a < b
    inputs: dict[str, tuple[StoredInput, ...]] = field(default_factory=dict)  # by seq
    traces: dict[str, tuple[TraceRow, ...]] = field(default_factory=dict)  # by id
    agents: dict[str, tuple[AgentRow, ...]] = field(default_factory=dict)
    snapshots: dict[int, SnapshotRow] = field(default_factory=dict)
    ticks: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)  # (tick, snapshot id), by tick
    dictionaries: dict[str, tuple[DictionaryRow, ...]] = field(default_factory=dict)  # oldest first
    audit: tuple[AuditRow, ...] = ()  # the chain, in order: row n is audit[n - 1]
    audit_heads: tuple[SignedHead, ...] = ()
    tokens: dict[str, TokenRecord] = field(default_factory=dict)
    sessions: dict[str, SessionRecord] = field(default_factory=dict)  # by id hash
    rules: dict[str, str] = field(default_factory=dict)  # instance id -> its rules as JSON
    leases: dict[str, LeaseRow] = field(default_factory=dict)
    lease_log: dict[str, tuple[LeaseEpoch, ...]] = field(default_factory=dict)  # by key, each by epoch
    last_id: int = 0  # snapshots and traces are numbered from one sequence

    def fork(self) -> Tables:
        """A copy to write on: new dicts over the same immutable rows."""
        return Tables(
            instances=dict(self.instances), links=dict(self.links), inputs=dict(self.inputs),
            traces=dict(self.traces), agents=dict(self.agents), snapshots=dict(self.snapshots),
            ticks=dict(self.ticks), dictionaries=dict(self.dictionaries), audit=self.audit,
            audit_heads=self.audit_heads, tokens=dict(self.tokens), sessions=dict(self.sessions),
            rules=dict(self.rules), leases=dict(self.leases), lease_log=dict(self.lease_log),
            last_id=self.last_id,
        )  # fmt: skip

    def next_id(self) -> int:
        self.last_id += 1
        return self.last_id

    def require_instance(self, instance_id: str, what: str) -> None:
        """What a SQL foreign key does: rows of an instance that does not exist are refused as a conflict."""
        if instance_id not in self.instances:
            raise ConflictError(f"{what}: the database refused a conflicting write (no instance {instance_id!r})")


class MemoryDatabase:
    """One database held in this process's memory: the committed tables, the write lock, and which stores are alive
    (the liveness a writer lease rests on: a store is alive from its first lease until it closes)."""

    def __init__(self) -> None:
        self.tables = Tables()
        self.live: set[str] = set()
        self._write_lock = threading.Lock()

    def lock(self, what: str) -> None:
        """Become the one writer, waiting for another's transaction to end; ``StorageUnavailableError`` if it does
        not end in time (a deadlock, or a writer that hangs)."""
        if not self._write_lock.acquire(timeout=BUSY_TIMEOUT_S):
            raise StorageUnavailableError(f"{what}: the database is locked by another writer")

    def unlock(self) -> None:
        self._write_lock.release()

    @contextmanager
    def edit(self, what: str = "editing the database") -> Iterator[Tables]:
        """Change the committed tables in one step (committed if the block ends normally): how a store writes
        outside a transaction, and how a test tampers with a database behind its stores' backs."""
        self.lock(what)
        try:
            tables = self.tables.fork()
            yield tables
            self.tables = tables
        finally:
            self.unlock()
