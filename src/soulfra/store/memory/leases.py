"""Writer leases among the stores of one ``MemoryDatabase``: the rules of the SQL leases within one process. A lease
row names its holder by the store's token; a store is alive (its leases hold) from its first lease until it closes.
A takeover raises the epoch, and every write of a holder checks its epoch first: a writer that lost its lease
cannot commit. Each epoch is logged as it is taken and ended as it is released or taken over (``history``).
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from soulfra.errors import LeaseHeldError, LeaseLostError
from soulfra.store.lease_rules import check_key, held_message, lost_message, this_process
from soulfra.store.memory.tables import LeaseRow, Tables
from soulfra.store.ports import RELEASED, TAKEN_OVER, LeaseEpoch, LeaseInfo

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
                now = datetime.now(UTC)
                if row is not None and row.owner is not None:  # its holder died, or is this store that let go
                    _end(tables, key, row.epoch, TAKEN_OVER if row.owner != self.token else RELEASED, now)
                tables.leases[key] = LeaseRow(
                    epoch=epoch, owner=self.token, pid=self._pid, host=self._host, acquired_at=now
                )
                logged = LeaseEpoch(
                    key=key, epoch=epoch, owner=self.token, pid=self._pid, host=self._host, acquired_at=now,
                    ended=None, ended_at=None, last_tick=None,
                )  # fmt: skip
                tables.lease_log[key] = (*tables.lease_log.get(key, ()), logged)
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
                    _end(tables, key, epoch, RELEASED, datetime.now(UTC))

    def holder(self, key: str) -> LeaseInfo | None:
        tables = self._store.view()
        return self._info(tables, key) if key in tables.leases else None

    def held(self) -> list[str]:
        return sorted(self._held)

    def history(self, key: str | None = None) -> list[LeaseEpoch]:
        log = self._store.view().lease_log
        keys = sorted(log) if key is None else [key]
        return [entry for k in keys for entry in log.get(k, ())]

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


def _end(tables: Tables, key: str, epoch: int, how: str, now: datetime) -> None:
    """End ``epoch`` of ``key`` in the lease log, with the instance's last committed tick."""
    instance = tables.instances.get(key)
    last_tick = None if instance is None else instance.record.head_tick
    tables.lease_log[key] = tuple(
        replace(entry, ended=how, ended_at=now, last_tick=last_tick)
        if entry.epoch == epoch and entry.ended is None
        else entry
        for entry in tables.lease_log.get(key, ())
    )


def _info(key: str, row: LeaseRow, *, live: bool) -> LeaseInfo:
    return LeaseInfo(key=key, epoch=row.epoch, pid=row.pid, host=row.host, since=row.acquired_at, live=live)
