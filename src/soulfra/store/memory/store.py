"""``InMemoryStore``: the ``Store`` port over a ``MemoryDatabase``, for tests of logic that needs no database and for
checking that the storage contract is the port's, not SQL's. Transactions are per thread, as in the SQL adapter:
the first write of one takes the database's write lock and a copy of its tables, and committing publishes the copy,
so other stores see nothing of it until then and nothing at all if it rolls back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from soulfra.codec import CompressionEngine
from soulfra.store.memory.instances import InMemoryInstanceCatalog
from soulfra.store.memory.leases import InMemoryLeases
from soulfra.store.memory.logs import InMemoryAuditLog, InMemoryInputLog, InMemoryRitualStorage, InMemoryVaultManager
from soulfra.store.memory.sessions import InMemorySessionStore
from soulfra.store.memory.snapshots import InMemorySnapshotStorage
from soulfra.store.memory.tables import MemoryDatabase, Tables
from soulfra.store.memory.tokens import InMemoryTokenStore


@dataclass(slots=True)
class _Transaction:
    tables: Tables | None = None  # the copy being written, once the transaction has written


class InMemoryStore:
    """The ``Store`` port in this process's memory. Stores made over one ``MemoryDatabase`` share it as SQL stores
    share a database file, each with caches and leases of its own (as another process would have)."""

    def __init__(self, database: MemoryDatabase | None = None, *, compression: CompressionEngine | None = None) -> None:
        self.database = database if database is not None else MemoryDatabase()
        self._local = threading.local()
        self.instances = InMemoryInstanceCatalog(self)
        self.inputs = InMemoryInputLog(self)
        self.snapshots = InMemorySnapshotStorage(self, compression or CompressionEngine())
        self.rituals = InMemoryRitualStorage(self)
        self.vault = InMemoryVaultManager(self)
        self.audit = InMemoryAuditLog(self)
        self.leases = InMemoryLeases(self)
        self.tokens = InMemoryTokenStore(self)
        self.sessions = InMemorySessionStore(self)

    def _current(self) -> _Transaction | None:
        current: _Transaction | None = getattr(self._local, "transaction", None)
        return current

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._current() is not None:
            yield
            return
        current = _Transaction()
        self._local.transaction = current
        try:
            yield
            if current.tables is not None:
                self.database.tables = current.tables
        finally:
            self._local.transaction = None
            if current.tables is not None:
                self.database.unlock()

    def view(self) -> Tables:
        """The tables as this thread sees them: its transaction's own writes, or what is committed."""
        current = self._current()
        if current is not None and current.tables is not None:
            return current.tables
        return self.database.tables

    @contextmanager
    def write(self, what: str) -> Iterator[Tables]:
        """Tables to write on: the current transaction's copy (taken, with the write lock, at its first write), or
        one of a transaction that commits as the block ends. A write checks everything before it changes anything,
        so one that raises leaves the tables as they were."""
        current = self._current()
        if current is None:  # a transaction of its own, which the reads and writes the block makes join
            with self.transaction(), self.write(what) as tables:
                yield tables
            return
        if current.tables is None:
            self.database.lock(what)
            current.tables = self.database.tables.fork()
        yield current.tables

    def fence(self, tables: Tables, instance_id: str) -> None:
        """Before a write to ``instance_id``: if this store holds its lease, check it still does (``LeaseLostError``
        otherwise)."""
        self.leases.fence(tables, instance_id)

    def close(self) -> None:
        self.leases.close()
