"""Writer leases among the stores of one ``MemoryDatabase``: the rules of the SQL leases within one process. A lease
row names its holder by the store's token; a store is alive (its leases hold) from its first lease until it closes.
A takeover raises the epoch, and every write of a holder checks its epoch first: a writer that lost its lease
cannot commit.
"""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from soulfra.errors import LeaseHeldError, LeaseLostError
from soulfra.store.lease_rules import check_key, held_message, lost_message, this_process
from soulfra.store.memory.tables import LeaseRow, Tables
from soulfra.store.ports import LeaseInfo

if TYPE_CHECKING:
    from soulfra.store.memory.store import InMemoryStore


class InMemoryLeases:
    """The ``WriterLeases`` port of an ``InMemoryStore``."""

    def __init__(self, store: InMemoryStore) -> None:
        self._store = store
        self.token = secrets.token_hex(8)  # names this store in lease rows
        self._pid, self._host = this_process()
        self._held: dict[str, int] = {}  # key -> the epoch this store took it at
        self._lock = threading.Lock()

    def acquire(self, key: str) -> LeaseInfo:
        check_key(key)
        with self._lock:
            if key in self._held:
                return self._info(self._store.view(), key)
            self._store.database.live.add(self.token)
            with self._store.write(f"taking the writer lease of {key}") as tables:
                row = tables.leases.get(key)
                if row is not None and row.owner not in (None, self.token) and self._alive(row.owner):
                    raise LeaseHeldError(held_message(key, _info(key, row, live=True)))
                epoch = 1 if row is None else row.epoch + 1
                tables.leases[key] = LeaseRow(
                    epoch=epoch, owner=self.token, pid=self._pid, host=self._host, acquired_at=datetime.now(UTC)
                )
                self._held[key] = epoch
                return self._info(tables, key)

    def _alive(self, token: str | None) -> bool:
        return token is not None and token in self._store.database.live

    def _info(self, tables: Tables, key: str) -> LeaseInfo:
        row = tables.leases[key]
        return _info(key, row, live=self._alive(row.owner))

    def release(self, key: str) -> None:
        with self._lock:
            epoch = self._held.pop(key, None)
            if epoch is None:
                return
            with self._store.write(f"releasing the writer lease of {key}") as tables:
                row = tables.leases.get(key)
                if row is not None and row.epoch == epoch and row.owner == self.token:
                    tables.leases[key] = LeaseRow(
                        epoch=row.epoch, owner=None, pid=row.pid, host=row.host, acquired_at=row.acquired_at
                    )

    def holder(self, key: str) -> LeaseInfo | None:
        tables = self._store.view()
        return self._info(tables, key) if key in tables.leases else None

    def held(self) -> list[str]:
        return sorted(self._held)

    def fence(self, tables: Tables, key: str) -> None:
        """Inside a write on ``key``: check this store still holds its lease (a no-op for keys it does not hold)."""
        epoch = self._held.get(key)
        if epoch is None:
            return
        row = tables.leases.get(key)
        if row is None or row.epoch != epoch or row.owner != self.token:
            raise LeaseLostError(lost_message(key, None if row is None else _info(key, row, live=True)))

    def close(self) -> None:
        """Release every lease and stop being alive."""
        for key in self.held():
            self.release(key)
        self._store.database.live.discard(self.token)


def _info(key: str, row: LeaseRow, *, live: bool) -> LeaseInfo:
    return LeaseInfo(key=key, epoch=row.epoch, pid=row.pid, host=row.host, since=row.acquired_at, live=live)
