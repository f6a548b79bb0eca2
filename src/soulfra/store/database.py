"""Opening a database by URL, migrating it, and translating driver errors into Soulfra's tree.

The only module that creates SQLAlchemy engines. SQLite gets WAL, a busy timeout and foreign keys on every
connection; PostgreSQL is used as it comes. Nothing here knows about worlds.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from soulfra.errors import ConfigError, ConflictError, StorageError, StorageUnavailableError

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_S = 10
POSTGRES_CONNECT_ARGS = {
    "connect_timeout": CONNECT_TIMEOUT_S,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
# Connections a PostgreSQL engine keeps open: one for each worker thread of the event loop's executor (which runs
# every store call, ``soulfra.offload``; asyncio sizes it min(32, CPUs + 4)), the lease lock's session, held for
# good, and the second one a lease take uses to check the old holder's lock. SQLAlchemy's default (5) made a host
# close and open connections (each a server process) again and again as its threads wrote side by side.
POSTGRES_POOL_SIZE = min(32, (os.cpu_count() or 1) + 4) + 2
MIGRATION_LOCK_NAMESPACE = 0x50F8  # PostgreSQL advisory lock (first key) held while the schema is migrated


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn SQLAlchemy and driver errors into ``StorageError``s that name ``what`` was being done."""
    try:
        yield
    except sa.exc.IntegrityError as exc:
        raise ConflictError(f"{what}: the database refused a conflicting write ({_reason(exc)})") from exc
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        if _cannot_write(exc):  # reached, but it cannot take the write: a full disk, a read-only file
            raise StorageError(f"{what}: {_reason(exc)}") from exc
        raise StorageUnavailableError(f"{what}: {_reason(exc)}") from exc
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"{what}: {_reason(exc)}") from exc


# SQLite result codes of a database that was opened but cannot take a write: SQLITE_READONLY, SQLITE_IOERR,
# SQLITE_CORRUPT, SQLITE_FULL, SQLITE_NOTADB. PostgreSQL's SQLSTATE class 53 is "insufficient resources" (disk full,
# out of memory), 58 "system error" (an I/O error).
_SQLITE_CANNOT_WRITE = frozenset({8, 10, 11, 13, 26})
_POSTGRES_CANNOT_WRITE = ("53", "58")


def _cannot_write(exc: sa.exc.SQLAlchemyError) -> bool:
    original = getattr(exc, "orig", None)
    code = getattr(original, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _SQLITE_CANNOT_WRITE  # the primary code is the low byte of an extended one
    state = getattr(original, "sqlstate", None)
    return isinstance(state, str) and state.startswith(_POSTGRES_CANNOT_WRITE)


_MISSING_DATABASE = re.compile(r'database "([^"]+)" does not exist')


def _reason(exc: sa.exc.SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    missing = _MISSING_DATABASE.search(line)
    if missing is not None:  # a PostgreSQL server without that database: say how to make it
        line += f"; create it first: createdb {missing.group(1)} (or psql -c 'CREATE DATABASE \"{missing.group(1)}\"')"
    return line


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    del connection_record
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # with WAL: a commit survives a process crash
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _create_private(path: Path) -> None:
    """Create a new SQLite file readable by its owner alone (SQLite gives its -wal and -shm files the same mode)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise StorageUnavailableError(f"cannot create the database {path}: {exc.strerror or exc}") from None


def make_engine(url: str) -> sa.Engine:
    """An engine for ``url`` (``sqlite:///path.db``, ``postgresql://...`` or ``postgresql+psycopg://...``). A URL
    that is none of these is a ConfigError (a bad value, exit 2); a database that cannot be reached is a
    StorageUnavailableError."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        hint = f"sqlite:///{url}" if url.endswith((".db", ".sqlite", ".sqlite3")) else "sqlite:///soulfra.db"
        raise ConfigError(f"not a database URL: {url!r} (try {hint} or postgresql://user@host/db)") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise ConfigError("an in-memory SQLite database keeps nothing; give a file: sqlite:///PATH")
        path = Path(database).expanduser().resolve()
        if not path.parent.is_dir():
            raise StorageUnavailableError(f"cannot open {url}: directory {path.parent} does not exist")
        engine = sa.create_engine(parsed)

        def create_private(*_: Any) -> None:  # as the first connection is made: an engine alone creates nothing
            _create_private(path)

        sa.event.listen(engine, "do_connect", create_private)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            # a server that stops answering fails a connection attempt in bounded time instead of hanging a writer,
            # and TCP keepalives notice a connection (such as a lease's lock session) whose server is gone
            return sa.create_engine(
                parsed, pool_pre_ping=True, connect_args=POSTGRES_CONNECT_ARGS, pool_size=POSTGRES_POOL_SIZE
            )
        except ModuleNotFoundError as exc:
            raise StorageUnavailableError(
                f"PostgreSQL needs the psycopg driver: pip install 'soulfra[postgres]' ({exc})"
            ) from None
    raise ConfigError(f"unsupported database {backend!r} in {url!r}; Soulfra stores to SQLite or PostgreSQL")


def _alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def current_revision(engine: sa.Engine) -> str | None:
    with translate_errors("reading the schema version"), engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    if head is None:  # pragma: no cover - the package ships its migrations
        raise StorageError("no migrations found in the installed package")
    return head


def upgrade(engine: sa.Engine) -> tuple[str | None, str]:
    """Migrate to the newest schema; returns (revision before, revision after). Safe to repeat."""
    before = current_revision(engine)
    if before == head_revision():
        return before, before  # the usual case: nothing to migrate, and nothing to wait for
    with _migration_lock(engine), translate_errors(f"migrating {_safe(engine)}"), engine.begin() as connection:
        if engine.dialect.name == "postgresql":  # held to the end of this transaction: one migration at a time
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:ns, 0)"), {"ns": MIGRATION_LOCK_NAMESPACE})
        command.upgrade(_alembic_config(connection), "head")  # reads the revision again, under the lock
    return before, head_revision()


@contextmanager
def _migration_lock(engine: sa.Engine) -> Iterator[None]:
    """SQLite: an exclusive ``flock`` on ``<database>.migrate.lock`` around a migration, so two processes opening a
    new database at once do not both create its tables (SQLite runs DDL outside transactions). PostgreSQL takes an
    advisory lock inside the migration's own transaction instead."""
    if engine.dialect.name != "sqlite":
        yield
        return
    path = Path(engine.url.database or "").expanduser().resolve()
    try:
        fd = os.open(path.with_name(path.name + ".migrate.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StorageUnavailableError(f"cannot lock {path} for its migration: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # and the lock with it


def _safe(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=True)
