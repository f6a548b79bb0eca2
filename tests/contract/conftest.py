"""The storage backend matrix: every contract test runs once on SQLite and once on PostgreSQL.

SQLite is a file in the test's own ``tmp_path``; PostgreSQL is a schema of the test's own (``t_<hex>``, reached
through ``search_path``), dropped afterwards. An unreachable PostgreSQL skips its half locally and fails it when
``CI=true``.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from soulfra.store import SqlStore

POSTGRES_URL = os.environ.get("SOULFRA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CONNECT_TIMEOUT_S = 3


@functools.cache
def postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used (asked once per session), or None when it can."""
    try:
        engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    except ModuleNotFoundError as exc:
        return f"the psycopg driver is not installed ({exc})"
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as exc:
        return f"cannot connect to {POSTGRES_URL}: {str(exc.orig).strip().splitlines()[0]}"
    finally:
        engine.dispose()
    return None


def require_postgres() -> None:
    """Skip the test when PostgreSQL is unreachable; fail it instead when ``CI=true``."""
    reason = postgres_unreachable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required when CI=true, but {reason}")
    pytest.skip(f"PostgreSQL unreachable: {reason}")


@dataclass(slots=True)
class Backend:
    """One empty database of one test: its URL, and every ``SqlStore`` opened on it (closed at teardown)."""

    name: str
    url: str
    schema: str | None = None  # PostgreSQL: the test's own schema
    opened: list[SqlStore] = field(default_factory=list)

    def open(self) -> SqlStore:
        """A new ``SqlStore`` on this database, with caches of its own (as in another process)."""
        store = SqlStore.open(self.url)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()


@contextmanager
def new_database(name: str, tmp_path: Path) -> Iterator[Backend]:
    """An empty database of one test; a PostgreSQL one is a schema dropped on exit."""
    if name == "sqlite":
        sqlite = Backend(name="sqlite", url=f"sqlite:///{tmp_path}/s.db")
        try:
            yield sqlite
        finally:
            sqlite.close()
        return
    require_postgres()
    schema = f"t_{secrets.token_hex(8)}"
    admin = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    postgres = Backend(name="postgresql", url=f"{POSTGRES_URL}?options=-csearch_path%3D{schema}", schema=schema)
    try:
        yield postgres
    finally:
        postgres.close()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with new_database(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def postgres_database(tmp_path: Path) -> Iterator[Backend]:
    """For the PostgreSQL-only tests (schemas, JSONB): a schema of the test's own."""
    with new_database("postgresql", tmp_path) as database:
        yield database


@pytest.fixture
def postgres_store(postgres_database: Backend) -> SqlStore:
    return postgres_database.open()


@pytest.fixture
def postgres_schema(postgres_database: Backend) -> str:
    assert postgres_database.schema is not None
    return postgres_database.schema


@pytest.fixture
def store(backend: Backend) -> SqlStore:
    """A migrated, empty store on the backend."""
    return backend.open()


@pytest.fixture
def reopen(backend: Backend) -> Callable[[], SqlStore]:
    """Opens another ``SqlStore`` on the same database: fresh caches, as a new process would have."""
    return backend.open


@pytest.fixture
def database_url(backend: Backend) -> str:
    return backend.url
