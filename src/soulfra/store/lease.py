"""Writer leases over SQL: one writer per instance, whichever process or machine it runs on.

A lease is a row of ``instance_leases`` (key, epoch, owner, pid, host, since) plus a liveness lock its owner holds
for as long as it lives: an exclusive ``flock`` on a file beside a SQLite database, or a session advisory lock on
PostgreSQL. Either dies with the process (or its connection), so a crashed holder's lease is taken over by the next
writer. A takeover raises the epoch, and every write of a holder checks its epoch inside the write's own
transaction (``fence``): a writer that lost its lease cannot commit. Readers take nothing and wait for nothing.
Each epoch is also a row of ``lease_log``, added and ended in the transactions that take, release or take over the
lease (``history``).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from soulfra.errors import (
    ConfigError,
    ConflictError,
    LeaseHeldError,
    LeaseLostError,
    SoulfraError,
    StorageUnavailableError,
)
from soulfra.store import schema
from soulfra.store.database import translate_errors
from soulfra.store.lease_rules import (
    PUPPET_MASTER_LEASE,
    check_key,
    describe_holder,
    held_message,
    lost_message,
    this_process,
)
from soulfra.store.ports import RELEASED, TAKEN_OVER, LeaseEpoch, LeaseInfo

if TYPE_CHECKING:
    from soulfra.store.sql import SqlStore

__all__ = ["PUPPET_MASTER_LEASE", "SqlLeases", "describe_holder"]

_ADVISORY_NAMESPACE = 0x50F7  # the first key of PostgreSQL's two-key advisory locks: Soulfra's liveness locks
_TAKE_ATTEMPTS = 5
DEAD_FOR_S = 2.0  # how long a holder whose liveness lock was found free is taken for gone without testing again
KEEP_EVERY_S = 2.0  # how often a PostgreSQL liveness connection is checked (and its lock taken again if lost)

log = logging.getLogger(__name__)


class _Liveness(Protocol):
    token: str

    def hold(self) -> None:
        """Take this store's own liveness lock (once); its token then names this store in lease rows."""

    def alive(self, token: str) -> bool:
        """Whether the store whose token this is still holds its liveness lock."""

    def close(self) -> None: ...


class _FileLiveness:
    """SQLite: an exclusive ``flock`` on ``<database>.leases/<token>.lock``. ``flock`` belongs to the open file, so
    it conflicts between two stores of one process too, and the kernel drops it when the process dies."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.token = ""
        self._fd: int | None = None

    def hold(self) -> None:
        if self._fd is not None:
            return
        try:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            while True:
                token = secrets.token_hex(8)
                try:
                    fd = os.open(self.directory / f"{token}.lock", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:  # pragma: no cover - 64 random bits
                    continue
                break
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise ConfigError(f"cannot create the lease lock in {self.directory}: {exc.strerror or exc}") from None
        self.token, self._fd = token, fd

    def alive(self, token: str) -> bool:
        if token == self.token:
            return self._fd is not None
        if not token.isalnum():
            return False
        path = self.directory / f"{token}.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot tell: assume the holder lives rather than take its world from under it
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            with contextlib.suppress(OSError):
                path.unlink()  # its holder is gone
            return False
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            (self.directory / f"{self.token}.lock").unlink()
        os.close(self._fd)
        self._fd = None


class _AdvisoryLiveness:
    """PostgreSQL: a session advisory lock held on a connection of its own; the server drops it when the process
    or its connection dies. Other stores test it with ``pg_try_advisory_lock`` (and let go at once).

    A connection can also die under a living process (a server restart, an idle-session kill): a keeper thread
    checks it every ``KEEP_EVERY_S`` seconds and takes the same lock again on a new connection. Should another
    writer take a lease over in between, fencing stops this one from writing."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self.token = ""
        self._conn: sa.Connection | None = None
        self._guard = threading.Lock()
        self._stop = threading.Event()

    def hold(self) -> None:
        if self._conn is not None:
            return
        with translate_errors("taking the lease lock"):
            while True:
                key = secrets.randbelow(2**31)
                conn = self._lock(key)
                if conn is not None:
                    break
        self.token, self._conn = str(key), conn
        threading.Thread(target=self._keep, name="soulfra-lease-keeper", daemon=True).start()

    def _lock(self, key: int) -> sa.Connection | None:
        """A new connection holding the advisory lock ``key``, or None if another session holds it."""
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            params = {"ns": _ADVISORY_NAMESPACE, "key": key}
            if conn.execute(sa.text("SELECT pg_try_advisory_lock(:ns, :key)"), params).scalar_one():
                return conn
        except BaseException:
            conn.close()
            raise
        conn.close()
        return None

    def _keep(self) -> None:
        while not self._stop.wait(KEEP_EVERY_S):
            with self._guard:
                if self._conn is None:
                    return
                try:
                    self._conn.execute(sa.text("SELECT 1"))
                    continue
                except sa.exc.SQLAlchemyError:
                    pass
                try:  # the session is gone, and its lock with it: take the same lock again
                    again = self._lock(int(self.token))
                except sa.exc.SQLAlchemyError as exc:
                    log.warning("the lease lock connection was lost and cannot be made again yet: %s", exc)
                    continue
                if again is None:  # probed at this moment, or taken over: try again next round
                    continue
                with contextlib.suppress(sa.exc.SQLAlchemyError):
                    self._conn.close()
                self._conn = again
                log.warning("the lease lock connection was lost; its lock is held again on a new connection")

    def alive(self, token: str) -> bool:
        if token == self.token:
            return self._conn is not None
        if not token.isdigit() or int(token) >= 2**31:
            return False
        params = {"ns": _ADVISORY_NAMESPACE, "key": int(token)}
        with translate_errors("checking a lease holder"), self._engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            if conn.execute(sa.text("SELECT pg_try_advisory_lock(:ns, :key)"), params).scalar_one():
                conn.execute(sa.text("SELECT pg_advisory_unlock(:ns, :key)"), params)
                return False
        return True

    def close(self) -> None:
        self._stop.set()
        with self._guard:
            if self._conn is None:
                return
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._conn.close()  # the session ends, and its advisory lock with it
            self._conn = None


class SqlLeases:
    """The ``WriterLeases`` port of a ``SqlStore``."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self._held: dict[str, int] = {}  # key -> the epoch this store took it at
        engine = store.engine  # the liveness lock is made (a file, a connection) only when a lease is first taken
        if engine.dialect.name == "sqlite":
            database = Path(engine.url.database or "").expanduser().resolve()
            self._liveness: _Liveness = _FileLiveness(database.with_name(database.name + ".leases"))
        else:
            self._liveness = _AdvisoryLiveness(engine)
        # One lock per key, so that the leases of many worlds are taken at once, each on its own connection (a
        # host taking over a lost node's worlds opens them side by side); ``_lock`` guards only the map of them and
        # the liveness lock's first taking.
        self._lock = threading.Lock()
        self._keys: dict[str, threading.Lock] = {}
        self._probes: dict[str, threading.Lock] = {}  # owner token -> held while its liveness lock is tested
        self._found_dead: dict[str, float] = {}  # owner token -> when its liveness lock was last found free
        self._pid, self._host = this_process()

    def _key_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._keys.setdefault(key, threading.Lock())

    def _alive(self, token: str) -> bool:
        """Whether the store of ``token`` still holds its liveness lock, tested by one thread of this store at a
        time: a test takes the lock for a moment (if it is free), and a second test meanwhile would find it held and
        take a dead holder for a live one. A lock found free stays taken for free for ``DEAD_FOR_S``: a host taking
        over hundreds of worlds of one lost holder tests its lock once, not once a world (its answer is as old as
        the moment it was given in any case; a holder that comes back is fenced)."""
        if token == self._liveness.token:
            return self._liveness.alive(token)
        with self._lock:
            probe = self._probes.setdefault(token, threading.Lock())
        with probe:
            found = self._found_dead.get(token)
            if found is not None and time.monotonic() - found < DEAD_FOR_S:
                return False
            if self._liveness.alive(token):
                self._found_dead.pop(token, None)
                return True
            self._found_dead[token] = time.monotonic()
            return False

    def acquire(self, key: str) -> LeaseInfo:
        check_key(key)
        with self._key_lock(key):
            if key in self._held:
                return self._info(key, self._held[key])
            liveness = self._liveness
            with self._lock:
                liveness.hold()
            for _ in range(_TAKE_ATTEMPTS):
                try:
                    taken = self._take(key, liveness)
                except LeaseHeldError:
                    raise
                except ConflictError:  # another store inserted the row first: look again
                    continue
                if taken is not None:
                    self._held[key] = taken.epoch
                    return taken
            raise LeaseHeldError(f"the writer lease of {key} is contended; try again")

    def _take(self, key: str, liveness: _Liveness) -> LeaseInfo | None:
        """One attempt: the lease as taken (the row as written, without reading it back), or None if the row changed
        under us."""
        table = schema.instance_leases
        now = datetime.now(UTC)
        mine = {"owner": liveness.token, "pid": self._pid, "host": self._host, "acquired_at": now}
        with self._store.connect(f"taking the writer lease of {key}") as conn:
            row = conn.execute(sa.select(table).where(table.c.key == key)).first()
            if row is None:
                conn.execute(table.insert().values(key=key, epoch=1, **mine))
                conn.execute(schema.lease_log.insert().values(key=key, epoch=1, **mine))
                return LeaseInfo(key=key, epoch=1, pid=self._pid, host=self._host, since=now, live=True)
            if row.owner is not None and row.owner != liveness.token and self._alive(row.owner):
                raise LeaseHeldError(held_message(key, _row_info(row, live=True)))
            result = conn.execute(
                table.update().where(table.c.key == key, table.c.epoch == row.epoch).values(epoch=row.epoch + 1, **mine)
            )
            if result.rowcount != 1:
                return None
            if row.owner is not None:  # its holder died (or, being this store, let go of it without a word)
                _end(conn, key, int(row.epoch), TAKEN_OVER if row.owner != liveness.token else RELEASED, now)
            conn.execute(schema.lease_log.insert().values(key=key, epoch=row.epoch + 1, **mine))
            epoch = int(row.epoch) + 1
        return LeaseInfo(key=key, epoch=epoch, pid=self._pid, host=self._host, since=now, live=True)

    def _info(self, key: str, epoch: int) -> LeaseInfo:
        found = self.holder(key)
        if found is None or found.epoch != epoch:  # pragma: no cover - taken over between two statements
            raise LeaseLostError(f"the writer lease of {key} was taken over as it was acquired")
        return found

    def release(self, key: str) -> None:
        with self._key_lock(key):
            epoch = self._held.pop(key, None)
            if epoch is None:
                return
            table = schema.instance_leases
            with self._store.connect(f"releasing the writer lease of {key}") as conn:
                result = conn.execute(
                    table.update()
                    .where(table.c.key == key, table.c.epoch == epoch, table.c.owner == self._liveness.token)
                    .values(owner=None)
                )
                if result.rowcount == 1:
                    _end(conn, key, epoch, RELEASED, datetime.now(UTC))

    def holder(self, key: str) -> LeaseInfo | None:
        table = schema.instance_leases
        with self._store.connect(f"reading the writer lease of {key}") as conn:
            row = conn.execute(sa.select(table).where(table.c.key == key)).first()
        if row is None:
            return None
        live = row.owner is not None and self._alive(row.owner)
        return _row_info(row, live=live)

    def held(self) -> list[str]:
        return sorted(self._held.copy())  # a copy, made at once: other threads take and let go of leases meanwhile

    def history(self, key: str | None = None) -> list[LeaseEpoch]:
        log_table = schema.lease_log
        query = sa.select(log_table).order_by(log_table.c.key, log_table.c.epoch)
        if key is not None:
            query = query.where(log_table.c.key == key)
        with self._store.connect("reading the lease log") as conn:
            rows = conn.execute(query).all()
        return [_epoch(row) for row in rows]

    def fence(self, conn: sa.Connection, key: str, fenced: set[str] | None) -> None:
        """Inside a write transaction on ``key``: check this store still holds its lease (a no-op for keys it does
        not hold). The check is an UPDATE of the lease row, so on PostgreSQL it also keeps a takeover waiting until
        this transaction ends. ``fenced`` remembers what the current transaction has checked already."""
        epoch = self._held.get(key)
        if epoch is None or (fenced is not None and key in fenced):
            return
        table = schema.instance_leases
        result = conn.execute(
            table.update()
            .where(table.c.key == key, table.c.epoch == epoch, table.c.owner == self._liveness.token)
            .values(epoch=epoch)
        )
        if result.rowcount != 1:
            row = conn.execute(sa.select(table).where(table.c.key == key)).first()
            raise LeaseLostError(lost_message(key, _row_info(row, live=True) if row is not None else None))
        if fenced is not None:
            fenced.add(key)

    def close(self) -> None:
        """Release every lease (as far as the database can be reached) and drop the liveness lock."""
        for key in self.held():
            try:
                self.release(key)
            except StorageUnavailableError:  # the database is away: the liveness lock goes with the process anyway
                break
            except SoulfraError as exc:
                log.warning("releasing the writer lease of %s failed: %s", key, exc.detail)
        self._held.clear()
        self._liveness.close()


def _end(conn: sa.Connection, key: str, epoch: int, how: str, now: datetime) -> None:
    """End ``epoch`` of ``key`` in the lease log, in the transaction that released it or took it over, with the
    instance's last committed tick (its holder can commit nothing more: the epoch has moved on or let go)."""
    instances, log_table = schema.instances, schema.lease_log
    head = sa.select(instances.c.head_tick).where(instances.c.id == key).scalar_subquery()  # NULL: no such instance
    conn.execute(
        log_table.update()
        .where(log_table.c.key == key, log_table.c.epoch == epoch, log_table.c.ended.is_(None))
        .values(ended=how, ended_at=now, last_tick=head)
    )


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # SQLite's are naive


def _epoch(row: Any) -> LeaseEpoch:
    return LeaseEpoch(
        key=row.key, epoch=int(row.epoch), owner=row.owner, pid=int(row.pid), host=row.host,
        acquired_at=_utc(row.acquired_at), ended=row.ended,
        ended_at=None if row.ended_at is None else _utc(row.ended_at),
        last_tick=None if row.last_tick is None else int(row.last_tick),
    )  # fmt: skip


def _row_info(row: Any, *, live: bool) -> LeaseInfo:
    since = _utc(row.acquired_at)
    return LeaseInfo(key=row.key, epoch=int(row.epoch), pid=int(row.pid), host=row.host, since=since, live=live)
