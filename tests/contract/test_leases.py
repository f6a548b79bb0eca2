"""Writer leases on every backend: one writer per instance, refused with the holder named, released on close or on
the holder's death, never blocking a reader, and fencing every write of a holder whose lease was taken over.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from soulfra.durable import DurableWorld, state_at
from soulfra.errors import HistoryIntegrityError, LeaseHeldError, LeaseLostError
from soulfra.store import SqlStore
from soulfra.store.lease import KEEP_EVERY_S
from soulfra.store.lease_rules import PUPPET_MASTER_LEASE
from soulfra.store.ports import Store
from soulfra.world import DEFAULT_WORLD, Whisper

from .conftest import Backend, SqlBackend

HOLD_TIMEOUT_S = 30


def test_a_lease_is_held_once_and_names_its_holder(backend: Backend) -> None:
    first, second = backend.open(), backend.open()
    info = first.leases.acquire("world-1")
    assert (info.pid, info.host, info.live) == (os.getpid(), socket.gethostname(), True)
    assert first.leases.acquire("world-1").epoch == info.epoch  # idempotent for its holder
    assert first.leases.held() == ["world-1"]
    with pytest.raises(LeaseHeldError) as refused:
        second.leases.acquire("world-1")
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in refused.value.detail
    assert "instance world-1" in refused.value.detail
    assert second.leases.held() == []
    held = second.leases.holder("world-1")
    assert held is not None
    assert held.live
    second.leases.acquire("world-2")  # another instance has a writer of its own


def test_release_and_close_hand_the_lease_on(backend: Backend) -> None:
    first, second = backend.open(), backend.open()
    taken = first.leases.acquire("world-1").epoch
    first.leases.release("world-1")
    assert not first.leases.held()
    released = second.leases.holder("world-1")
    assert released is not None
    assert not released.live
    assert second.leases.acquire("world-1").epoch == taken + 1
    second.close()
    assert first.leases.acquire("world-1").epoch == taken + 2


def test_the_server_lease_names_the_database(backend: Backend) -> None:
    backend.open().leases.acquire(PUPPET_MASTER_LEASE)
    with pytest.raises(LeaseHeldError, match="this server's database is already being run by pid"):
        backend.open().leases.acquire(PUPPET_MASTER_LEASE)


def test_a_second_writer_of_a_world_is_refused_and_a_reader_is_not(backend: Backend) -> None:
    writer = backend.open()
    durable = DurableWorld.create(writer, 3, DEFAULT_WORLD, instance_id="w")
    durable.submit([Whisper(tick=2, target="arty", text="kept")])
    for _ in range(5):
        durable.step()
    durable.flush()
    other = backend.open()
    with pytest.raises(LeaseHeldError):
        DurableWorld.open(other, "w")
    assert other.inputs.count("w") == 1  # the refused writer wrote nothing, and reads go on
    assert state_at(other, "w", 5).tick == 5
    writer.close()
    resumed = DurableWorld.open(other, "w")
    assert resumed.tick == 5


@contextlib.contextmanager
def _holder(backend: SqlBackend, keys: list[str]) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the leases of ``keys``, SIGKILLed when the block ends (its locks die with it)."""
    script = textwrap.dedent(
        f"""
        import time
        from soulfra.store import SqlStore
        store = SqlStore.open({backend.url!r})
        for key in {keys!r}:
            store.leases.acquire(key)
        print("held", flush=True)
        time.sleep({HOLD_TIMEOUT_S})
        """
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "held"
            yield holder
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=HOLD_TIMEOUT_S)


def test_a_crashed_holder_is_taken_over(sql_backend: SqlBackend) -> None:
    """SQL only: a holder in another process, whose lock dies with it (stores in memory share one process)."""
    with _holder(sql_backend, ["world-1"]) as holder:
        store = sql_backend.open()
        with pytest.raises(LeaseHeldError, match=f"pid {holder.pid} "):
            store.leases.acquire("world-1")
    # The lock dies with the process once the database notices it gone: at once when quiet, a moment later on a
    # loaded machine (PostgreSQL's backend must first read the closed socket).
    deadline = time.monotonic() + HOLD_TIMEOUT_S
    while True:
        try:
            info = store.leases.acquire("world-1")
            break
        except LeaseHeldError:
            assert time.monotonic() < deadline, "the dead holder's lock was never released"
            time.sleep(0.05)
    assert (info.pid, info.epoch) == (os.getpid(), 2)


def test_a_writer_whose_lease_was_taken_over_cannot_commit(backend: Backend) -> None:
    old = backend.open()
    durable = DurableWorld.create(old, 5, DEFAULT_WORLD, instance_id="w")
    for _ in range(3):
        durable.step()
    durable.flush()
    backend.lose_liveness(old)
    new = backend.open()
    assert new.leases.acquire("w").epoch == 2
    with pytest.raises(LeaseLostError, match=f"taken over by pid {os.getpid()}"):
        durable.submit([Whisper(tick=4, target="arty", text="never stored")])
    for _ in range(40):  # past a group commit and a snapshot
        durable.world.step(durable.inputs_due())
    with pytest.raises(LeaseLostError):
        durable.flush()
    with pytest.raises(LeaseLostError):
        durable.snapshot()
    assert new.inputs.count("w") == 0
    assert new.instances.get("w").head_tick == 3
    assert [s.tick for s in new.snapshots.list_snapshots("w")] == [0]
    successor = DurableWorld.open(new, "w")  # the new writer goes on from what was committed
    assert successor.tick == 3
    successor.submit([Whisper(tick=4, target="arty", text="stored")])
    assert new.inputs.count("w") == 1


def test_a_fenced_write_rolls_back_its_whole_transaction(backend: Backend) -> None:
    old = backend.open()
    DurableWorld.create(old, 5, DEFAULT_WORLD, instance_id="w")
    backend.lose_liveness(old)
    backend.open().leases.acquire("w")

    def audited_then_fenced() -> None:
        with old.transaction():
            old.audit.append(actor="test", action="before", instance_id="w", detail={})
            old.instances.set_head("w", 10)

    with pytest.raises(LeaseLostError):
        audited_then_fenced()
    assert old.audit.read(instance_id="w") == []  # the row of the rolled-back transaction is not there


def test_a_world_that_cannot_be_opened_keeps_no_lease(backend: Backend) -> None:
    first = backend.open()
    DurableWorld.create(first, 5, DEFAULT_WORLD, instance_id="w")
    first.close()
    backend.delete_snapshots("w")  # its history is gone: it cannot be rebuilt
    store = backend.open()
    with pytest.raises(HistoryIntegrityError, match="no snapshot"):
        DurableWorld.open(store, "w")
    assert store.leases.held() == []
    held = store.leases.holder("w")
    assert held is not None
    assert not held.live


def test_a_lost_lock_connection_is_made_again_and_the_lease_still_refuses_others(
    postgres_database: SqlBackend,
) -> None:
    """PostgreSQL only: a liveness lock is a session of its own there, which the server can end under a live
    holder."""
    holder, other = postgres_database.open(), postgres_database.open()
    durable = DurableWorld.create(holder, 5, DEFAULT_WORLD, instance_id="w")
    postgres_database.terminate_lock_session(holder)  # a server restart or an idle-session kill
    deadline = time.monotonic() + 10 * KEEP_EVERY_S
    while True:  # the keeper takes the same lock again within a round or two
        with contextlib.suppress(LeaseHeldError):
            info = other.leases.holder("w")
            if info is not None and info.live:
                break
        assert time.monotonic() < deadline, "the holder's lock was not taken again"
        time.sleep(0.05)
    with pytest.raises(LeaseHeldError):
        other.leases.acquire("w")
    durable.submit([Whisper(tick=1, target="arty", text="still its writer")])  # its writes pass the fence
    assert other.inputs.count("w") == 1


def test_leases_taken_from_many_threads_at_once_have_one_writer_each(backend: Backend) -> None:
    """As a host opens many worlds side by side: two stores, from eight threads, each ask twice for each of twenty
    worlds. Every world ends with one holder, that took it once (one epoch in its lease log)."""
    stores = [backend.open(), backend.open()]
    keys = [f"world-{n}" for n in range(20)]

    def take(job: tuple[Store, str]) -> None:
        store, key = job
        with contextlib.suppress(LeaseHeldError):
            store.leases.acquire(key)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(take, [(store, key) for key in keys for store in stores for _ in range(2)]))
    first, second = (set(store.leases.held()) for store in stores)
    assert first | second == set(keys)
    assert not first & second
    assert [[epoch.epoch for epoch in stores[0].leases.history(key)] for key in keys] == [[1]] * len(keys)


def test_the_leases_of_a_crashed_holder_are_all_taken_over_from_many_threads_at_once(
    sql_backend: SqlBackend,
) -> None:
    """SQL only: as a host takes over a lost node's worlds side by side. Testing whether the holder lives takes its
    liveness lock for a moment; two such tests at once must not take each other for the holder."""
    keys = [f"world-{n}" for n in range(24)]
    with _holder(sql_backend, keys):
        pass
    store = sql_backend.open()
    with ThreadPoolExecutor(8) as pool:
        taken = list(pool.map(store.leases.acquire, keys))
    assert [(info.key, info.epoch) for info in taken] == [(key, 2) for key in keys]
    assert store.leases.held() == sorted(keys)


def test_opening_a_world_takes_its_lease_and_reads_it_in_one_transaction(sql_backend: SqlBackend) -> None:
    """A host taking over hundreds of worlds waits on each commit: an open makes one (the liveness lock's own
    session, taken once a store, is not counted), and what it opens continues from the stored head."""
    first = sql_backend.open()
    made = DurableWorld.create(first, 5, DEFAULT_WORLD, agents=3, instance_id="w")
    for _ in range(7):
        made.step()
    made.close()
    expected = made.world.state_hash()
    first.close()
    store = sql_backend.open()
    store.leases.acquire("another")  # the liveness lock taken first: this store's one session of its own
    assert isinstance(store, SqlStore)
    commits: list[object] = []
    sa.event.listen(store.engine, "commit", commits.append)
    opened = DurableWorld.open(store, "w")
    assert len(commits) == 1
    assert (opened.tick, opened.world.state_hash()) == (7, expected)
    assert "w" in store.leases.held()
