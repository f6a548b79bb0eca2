"""What the in-memory store owes beyond the contract suite (``tests/contract`` runs that on it like on SQL): it imports
no SQL, writers in two threads are serialised without losing either's writes, a writer kept waiting too long is told
the database is unavailable, and a write refused inside a transaction changes nothing of it.
"""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest

import soulfra.store.memory
from soulfra.errors import ConflictError, StorageUnavailableError
from soulfra.store import InMemoryStore, InstanceRecord, MemoryDatabase
from soulfra.store.memory import tables
from soulfra.world import Whisper

SQL_MODULES = ("sqlalchemy", "alembic", "soulfra.store.sql", "soulfra.store.lease", "soulfra.store.database",
               "soulfra.store.schema")  # fmt: skip
JOIN_TIMEOUT_S = 30


def record(instance_id: str) -> InstanceRecord:
    return InstanceRecord(id=instance_id, name="default", seed=1, genesis_hash="b2:genesis")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    return names


def test_the_memory_store_imports_no_sql() -> None:
    files = sorted(Path(soulfra.store.memory.__file__).parent.glob("*.py"))
    assert len(files) > 5
    offenders = [
        f"{path.name}: {name}"
        for path in files
        for name in sorted(_imports(path))
        if any(name == banned or name.startswith(banned + ".") for banned in SQL_MODULES)
    ]
    assert offenders == []


def test_writers_in_two_threads_are_serialised_and_neither_write_is_lost() -> None:
    store = InMemoryStore()
    written, release = threading.Event(), threading.Event()
    second_done = threading.Event()

    def first() -> None:
        with store.transaction():
            store.instances.create(record("a"))
            written.set()
            release.wait(JOIN_TIMEOUT_S)

    def second() -> None:
        written.wait(JOIN_TIMEOUT_S)
        store.instances.create(record("b"))  # waits for the first transaction: one writer at a time
        second_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    written.wait(JOIN_TIMEOUT_S)
    assert not second_done.is_set()  # it cannot have written while the first transaction is open
    assert store.instances.list_instances() == []  # and the open transaction is not seen from here
    release.set()
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)
    assert [r.id for r in store.instances.list_instances()] == ["a", "b"]


def test_a_writer_kept_waiting_past_the_busy_timeout_is_told_the_database_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tables, "BUSY_TIMEOUT_S", 0.01)
    database = MemoryDatabase()
    holder, other = InMemoryStore(database), InMemoryStore(database)
    with holder.transaction():
        holder.instances.create(record("a"))
        with pytest.raises(StorageUnavailableError, match="locked by another writer"):
            other.instances.create(record("b"))
    other.instances.create(record("b"))
    assert [r.id for r in other.instances.list_instances()] == ["a", "b"]


def test_a_write_refused_inside_a_transaction_changes_nothing_and_the_rest_commits() -> None:
    store = InMemoryStore()
    store.instances.create(record("a"))
    with store.transaction():
        store.inputs.append("a", [Whisper(tick=0, target="*", text="kept")])
        with pytest.raises(ConflictError):
            store.instances.create(record("a"))
        with pytest.raises(ConflictError, match="no instance 'nobody'"):
            store.inputs.append("nobody", [Whisper(tick=0, target="*", text="refused")])
    assert [s.input for s in store.inputs.read("a")] == [Whisper(tick=0, target="*", text="kept")]
    assert store.inputs.count("nobody") == 0
    assert [r.id for r in InMemoryStore(store.database).instances.list_instances()] == ["a"]
