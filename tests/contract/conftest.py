"""The storage backend matrix: every contract test runs on SQLite, on PostgreSQL and in memory, through the ``Store``
port (as eventsourcing's recorder suite runs on its POPO, SQLite and PostgreSQL recorders alike).

SQLite is a file in the test's own ``tmp_path``; PostgreSQL is a schema of the test's own (the root ``postgres_url``
fixture: unreachable, it skips locally and fails when ``CI=true``); memory is a ``MemoryDatabase`` of the test's own.
What a test must do behind the stores' backs (count rows, tamper with a blob, forge a lineage, kill a holder) each
backend does its own way, through ``Backend``. Tests of what only SQL has (migrations, schemas, JSONB, URLs, locks
across processes) take ``sql_backend`` or ``sql_store`` instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sized
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from soulfra.codec import CompressionEngine
from soulfra.store import InMemoryStore, MemoryDatabase, SqlStore, Store
from soulfra.store import schema as tables
from soulfra.store.ports import SessionRecord
from soulfra.store.sql.clock import aware

# The tables a test counts rows of, by their SQL names.
COUNTED = ("snapshots", "compression_dictionaries", "ritual_logs", "inputs", "agents")


class Backend(ABC):
    """One empty database of one test, the stores opened on it (closed at teardown), and what a test does to the
    database behind their backs."""

    name: str

    @abstractmethod
    def open(self, *, compression: CompressionEngine | None = None) -> Store:
        """A new store on this database, with caches of its own (as in another process)."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def rows(self, table: str, instance_id: str) -> int:
        """How many rows of ``table`` (one of ``COUNTED``) belong to ``instance_id``."""

    @abstractmethod
    def dictionary_ids(self) -> list[int]:
        """The ids of every stored trained dictionary, in the order they were stored."""

    @abstractmethod
    def blob(self, snapshot_id: int) -> bytes:
        """A snapshot's stored (compressed) bytes."""

    @abstractmethod
    def tamper(self, snapshot_id: int, data: bytes) -> None:
        """Overwrite a snapshot's stored bytes."""

    @abstractmethod
    def forge_parent(self, child: str, parent: str) -> None:
        """Point ``child``'s lineage at ``parent``, as a hand-edited database would."""

    @abstractmethod
    def delete_snapshots(self, instance_id: str) -> None:
        """Lose every snapshot of ``instance_id``."""

    @abstractmethod
    def lose_liveness(self, store: Store) -> None:
        """What a lease holder's death looks like from outside while the holder itself still runs."""

    @abstractmethod
    def sessions(self) -> list[SessionRecord]:
        """Every stored dashboard session, by token hash (the port lists none: it has no use for a list)."""


class SqlBackend(Backend):
    def __init__(self, name: str, url: str, schema: str | None = None) -> None:
        self.name, self.url = name, url
        self.schema = schema  # PostgreSQL: the test's own schema
        self.opened: list[SqlStore] = []
        self._admin: sa.Engine | None = None

    def open(self, *, compression: CompressionEngine | None = None) -> SqlStore:
        store = SqlStore.open(self.url, compression=compression)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()
        if self._admin is not None:
            self._admin.dispose()

    @property
    def admin(self) -> sa.Engine:
        if self._admin is None:
            self._admin = sa.create_engine(self.url)
        return self._admin

    def rows(self, table: str, instance_id: str) -> int:
        column = tables.metadata.tables[table].c.instance_id
        with self.admin.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(column == instance_id)).scalar_one())

    def dictionary_ids(self) -> list[int]:
        dicts = tables.compression_dictionaries
        with self.admin.connect() as conn:
            return list(conn.execute(sa.select(dicts.c.dict_id).order_by(dicts.c.id)).scalars())

    def blob(self, snapshot_id: int) -> bytes:
        snaps = tables.snapshots
        with self.admin.connect() as conn:
            return bytes(conn.execute(sa.select(snaps.c.data).where(snaps.c.id == snapshot_id)).scalar_one())

    def tamper(self, snapshot_id: int, data: bytes) -> None:
        snaps = tables.snapshots
        with self.admin.begin() as conn:
            conn.execute(snaps.update().where(snaps.c.id == snapshot_id).values(data=data))

    def forge_parent(self, child: str, parent: str) -> None:
        instances = tables.instances
        with self.admin.begin() as conn:
            changed = conn.execute(instances.update().where(instances.c.id == child).values(parent_id=parent))
        assert changed.rowcount == 1

    def delete_snapshots(self, instance_id: str) -> None:
        with self.admin.begin() as conn:
            conn.execute(tables.snapshots.delete().where(tables.snapshots.c.instance_id == instance_id))

    def lose_liveness(self, store: Store) -> None:
        """A killed lock connection on PostgreSQL; the lock file closed on SQLite."""
        assert isinstance(store, SqlStore)
        liveness = store.leases._liveness
        if self.name == "sqlite":
            liveness.close()
            return
        liveness._stop.set()  # type: ignore[attr-defined]  # its keeper would take the lock again
        self.terminate_lock_session(store)

    def sessions(self) -> list[SessionRecord]:
        with self.admin.connect() as conn:
            rows = conn.execute(sa.select(tables.sessions).order_by(tables.sessions.c.token_hash)).all()
        return [_session(row) for row in rows]

    def terminate_lock_session(self, store: SqlStore) -> None:
        """End the store's lock session, and wait until it has ended: until then it still holds the lock, and a
        test that looked at once would see the holder alive a moment longer (PostgreSQL 14 and later wait)."""
        conn = store.leases._liveness._conn  # type: ignore[attr-defined]
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with self.admin.connect() as admin:
            ended = admin.execute(sa.text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid}).scalar_one()
        assert ended, f"the lock session {pid} did not end within 10 s"


def _session(row: sa.Row[Any]) -> SessionRecord:
    return SessionRecord(
        id_hash=row.id_hash, token_hash=row.token_hash, created_at=aware(row.created_at),
        last_seen_at=aware(row.last_seen_at), expires_at=aware(row.expires_at),
    )  # fmt: skip


class MemoryBackend(Backend):
    name = "memory"

    def __init__(self) -> None:
        self.database = MemoryDatabase()
        self.opened: list[InMemoryStore] = []

    def open(self, *, compression: CompressionEngine | None = None) -> InMemoryStore:
        store = InMemoryStore(self.database, compression=compression)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()

    def rows(self, table: str, instance_id: str) -> int:
        content = self.database.tables
        kept: dict[str, Mapping[str, Sized]] = {
            "snapshots": content.ticks, "compression_dictionaries": content.dictionaries,
            "ritual_logs": content.traces, "inputs": content.inputs, "agents": content.agents,
        }  # fmt: skip
        return len(kept[table].get(instance_id, ()))

    def dictionary_ids(self) -> list[int]:
        return [d.dict_id for kept in self.database.tables.dictionaries.values() for d in kept]

    def blob(self, snapshot_id: int) -> bytes:
        return self.database.tables.snapshots[snapshot_id].data

    def tamper(self, snapshot_id: int, data: bytes) -> None:
        with self.database.edit() as content:
            content.snapshots[snapshot_id] = replace(content.snapshots[snapshot_id], data=data)

    def forge_parent(self, child: str, parent: str) -> None:
        with self.database.edit() as content:
            row = content.instances[child]
            content.instances[child] = replace(row, record=replace(row.record, parent_id=parent))

    def delete_snapshots(self, instance_id: str) -> None:
        with self.database.edit() as content:
            for _, snapshot_id in content.ticks.pop(instance_id, ()):
                del content.snapshots[snapshot_id]

    def lose_liveness(self, store: Store) -> None:
        """The store is no longer counted alive, as if its process had died."""
        assert isinstance(store, InMemoryStore)
        self.database.live.discard(store.leases.token)

    def sessions(self) -> list[SessionRecord]:
        return sorted(self.database.tables.sessions.values(), key=lambda r: r.token_hash)


@contextmanager
def new_sql_database(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlBackend]:
    """An empty SQL database of the test's own: a SQLite file, or a PostgreSQL schema."""
    if name == "sqlite":
        database = SqlBackend("sqlite", f"sqlite:///{tmp_path}/s.db")
    else:
        url: str = request.getfixturevalue("postgres_url")
        database = SqlBackend("postgresql", url, schema=request.getfixturevalue("postgres_schema"))
    try:
        yield database
    finally:
        database.close()


SQL = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=[*SQL, "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "memory":
        memory = MemoryBackend()
        try:
            yield memory
        finally:
            memory.close()
        return
    with new_sql_database(request.param, request, tmp_path) as database:
        yield database


@pytest.fixture(params=SQL)
def sql_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlBackend]:
    """For the tests of what only SQL has: SQLite and PostgreSQL."""
    with new_sql_database(request.param, request, tmp_path) as database:
        yield database


@pytest.fixture
def store(backend: Backend) -> Store:
    """An empty store on the backend."""
    return backend.open()


@pytest.fixture
def reopen(backend: Backend) -> Callable[[], Store]:
    """Opens another store on the same database: fresh caches, as a new process would have."""
    return backend.open


@pytest.fixture
def sql_store(sql_backend: SqlBackend) -> SqlStore:
    """A migrated, empty SQL store."""
    return sql_backend.open()


@pytest.fixture
def database_url(sql_backend: SqlBackend) -> str:
    return sql_backend.url


@pytest.fixture
def postgres_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlBackend]:
    """For the PostgreSQL-only tests (schemas, JSONB, lock sessions): a schema of the test's own."""
    with new_sql_database("postgresql", request, tmp_path) as database:
        yield database


@pytest.fixture
def postgres_store(postgres_database: SqlBackend) -> SqlStore:
    return postgres_database.open()
