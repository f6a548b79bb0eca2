"""The SQL adapter's ``Store``: one SQLAlchemy engine, per-thread transactions that nested ones join, the writer fence,
and the ports built over them. Only what every port shares lives here; it runs no query of a port's own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from soulfra.codec import CompressionEngine
from soulfra.store.database import make_engine, translate_errors, upgrade
from soulfra.store.lease import SqlLeases
from soulfra.store.sql.audit import SqlAuditLog
from soulfra.store.sql.inputs import SqlInputLog
from soulfra.store.sql.instances import SqlInstanceCatalog
from soulfra.store.sql.rituals import SqlRitualStorage
from soulfra.store.sql.sessions import SqlSessionStore
from soulfra.store.sql.snapshots import SqlSnapshotStorage
from soulfra.store.sql.tokens import SqlTokenStore
from soulfra.store.sql.vault import SqlVaultManager


class SqlStore:
    """The ``Store`` port on one SQLAlchemy engine. Transactions are per thread; nested ones join the outer."""

    def __init__(self, engine: sa.Engine, *, compression: CompressionEngine | None = None) -> None:
        self.engine = engine
        self._local = threading.local()
        self.instances = SqlInstanceCatalog(self)
        self.inputs = SqlInputLog(self)
        self.snapshots = SqlSnapshotStorage(self, compression or CompressionEngine())
        self.rituals = SqlRitualStorage(self)
        self.vault = SqlVaultManager(self)
        self.audit = SqlAuditLog(self)
        self.leases = SqlLeases(self)
        self.tokens = SqlTokenStore(self)
        self.sessions = SqlSessionStore(self)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, compression: CompressionEngine | None = None) -> SqlStore:
        """Open the database at ``url``, migrating it to the newest schema first unless ``migrate`` is False."""
        engine = make_engine(url)
        if migrate:
            upgrade(engine)
        return cls(engine, compression=compression)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def url(self) -> str:
        """The database's URL, password included: what another process opens the same database with."""
        return self.engine.url.render_as_string(hide_password=False)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if getattr(self._local, "connection", None) is not None:
            yield
            return
        with translate_errors("writing to the database"), self.engine.begin() as connection:
            self._local.connection = connection
            self._local.fenced = set()
            try:
                yield
            finally:
                self._local.connection = None
                self._local.fenced = None

    @contextmanager
    def connect(self, what: str) -> Iterator[sa.Connection]:
        """The current transaction's connection, or a new transaction that commits on exit."""
        current: sa.Connection | None = getattr(self._local, "connection", None)
        with translate_errors(what):
            if current is not None:
                yield current
            else:
                with self.engine.begin() as connection:
                    yield connection

    def fence(self, conn: sa.Connection, instance_id: str) -> None:
        """Before a write to ``instance_id``: if this store holds its lease, check it still does (``LeaseLostError``
        otherwise), once per transaction."""
        self.leases.fence(conn, instance_id, getattr(self._local, "fenced", None))

    def insert(self, table: sa.Table) -> Any:
        """An INSERT that supports ``on_conflict_do_*`` on both dialects."""
        return postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table)

    def close(self) -> None:
        try:
            self.leases.close()
        finally:
            self.engine.dispose()
