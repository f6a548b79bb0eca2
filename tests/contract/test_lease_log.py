"""The lease log on every backend: each epoch of a writer lease is kept, who held it and from when, and how it ended
(released by its holder, or taken over by the next epoch once its holder was gone) with its world's last committed
tick; a history of one writer at a time has no overlap.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from soulfra.durable import DurableWorld
from soulfra.errors import LeaseHeldError, LeaseLostError
from soulfra.store import make_engine
from soulfra.store.lease_log import RELEASED, TAKEN_OVER, overlaps
from soulfra.store.lease_rules import PUPPET_MASTER_LEASE
from soulfra.world import DEFAULT_WORLD

from .conftest import Backend, SqlBackend


def test_every_epoch_is_logged_with_how_it_ended(backend: Backend) -> None:
    first = backend.open()
    durable = DurableWorld.create(first, 5, DEFAULT_WORLD, instance_id="w")
    for _ in range(3):
        durable.step()
    durable.flush()
    first.leases.release("w")
    second = backend.open()
    resumed = DurableWorld.open(second, "w")
    for _ in range(2):
        resumed.step()
    resumed.flush()
    backend.lose_liveness(second)  # its holder is gone without a word
    third = backend.open()
    taken = third.leases.acquire("w")
    third.leases.acquire(PUPPET_MASTER_LEASE)

    log = third.leases.history("w")
    assert [(e.epoch, e.ended, e.last_tick) for e in log] == [(1, RELEASED, 3), (2, TAKEN_OVER, 5), (3, None, None)]
    assert {(e.pid, e.host) for e in log} == {(os.getpid(), socket.gethostname())}
    assert len({e.owner for e in log}) == 3  # three stores, each named by its own token
    assert log[1].ended_at == log[2].acquired_at == taken.since  # taken over in the transaction that began epoch 3
    assert log[0].ended_at is not None
    assert log[0].acquired_at <= log[0].ended_at <= log[1].acquired_at
    assert overlaps(log) == []
    everything = first.leases.history()  # every key, by key then epoch, as every store of the database reads it
    assert [(e.key, e.epoch) for e in everything] == [(PUPPET_MASTER_LEASE, 1), ("w", 1), ("w", 2), ("w", 3)]
    assert everything[0].last_tick is None
    assert first.leases.history("never") == []


def test_a_holder_that_takes_its_own_lease_again_after_letting_go_is_logged_once_per_epoch(backend: Backend) -> None:
    store = backend.open()
    store.leases.acquire("w")
    store.leases.release("w")
    store.leases.acquire("w")
    store.close()  # closing releases it too
    log = backend.open().leases.history("w")
    assert [(e.epoch, e.ended) for e in log] == [(1, RELEASED), (2, RELEASED)]
    assert log[0].owner == log[1].owner
    assert overlaps(log) == []


def test_a_refused_writer_a_fenced_one_and_a_repeated_acquire_add_nothing(backend: Backend) -> None:
    holder, other = backend.open(), backend.open()
    DurableWorld.create(holder, 5, DEFAULT_WORLD, instance_id="w")
    with pytest.raises(LeaseHeldError):
        other.leases.acquire("w")
    holder.leases.acquire("w")  # idempotent: no new epoch
    assert [(e.epoch, e.ended) for e in other.leases.history("w")] == [(1, None)]
    backend.lose_liveness(holder)
    taker = backend.open()
    taker.leases.acquire("w")
    with pytest.raises(LeaseLostError):
        holder.instances.set_head("w", 10)
    holder.leases.release("w")  # it no longer holds epoch 1: the log keeps how that epoch really ended
    log = taker.leases.history("w")
    assert [(e.epoch, e.ended, e.last_tick) for e in log] == [(1, TAKEN_OVER, 0), (2, None, None)]


def test_the_migration_logs_the_leases_held_then_and_a_takeover_ends_them(sql_backend: SqlBackend) -> None:
    from alembic import command  # noqa: PLC0415

    from soulfra.store.database import _alembic_config  # noqa: PLC0415

    engine = make_engine(sql_backend.url)
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "0005")
            conn.execute(
                sa.text("INSERT INTO instance_leases (key, epoch, owner, pid, host, acquired_at) "
                        "VALUES ('held', 3, 'gone', 7, 'old', :at), ('let-go', 2, NULL, 8, 'old', :at)"),
                {"at": datetime(2026, 1, 2, tzinfo=UTC)},
            )  # fmt: skip
    finally:
        engine.dispose()
    store = sql_backend.open()  # migrated to the newest schema
    assert [(e.key, e.epoch, e.pid, e.ended) for e in store.leases.history()] == [("held", 3, 7, None)]
    store.leases.acquire("held")  # its holder's lock is long gone
    store.leases.acquire("let-go")
    log = store.leases.history()
    assert [(e.key, e.epoch, e.ended) for e in log] == [("held", 3, TAKEN_OVER), ("held", 4, None), ("let-go", 3, None)]
    assert log[0].last_tick is None  # no such instance
    assert overlaps(log) == []
