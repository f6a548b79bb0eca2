"""The Store's transactions, run on every backend: everything written in one commits together, an exception or a
conflict rolls all of it back, and a nested transaction joins the outer one."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from soulfra.errors import ConflictError, NotFoundError
from soulfra.store import Store
from soulfra.world import (
    Whisper,
    World,
)

from .support import _run, make_record

# -- transactions ----------------------------------------------------------------------------------------------


class AbortError(Exception):
    """Raised inside a transaction to abandon it."""


def _write_everything(store: Store, instance_id: str) -> None:
    world = World.create(9)
    store.instances.create(make_record(instance_id, seed=9, genesis_hash=world.state_hash()))
    store.inputs.append(instance_id, [Whisper(tick=0, target="*", text="inside")])
    store.snapshots.save(instance_id, world.state, "genesis")
    store.rituals.append(instance_id, _run(10))
    store.vault.save_agents(instance_id, world.state)
    store.instances.set_head(instance_id, 10)
    store.audit.append(actor="test", action="everything", instance_id=instance_id, detail={})


def _assert_nothing_stored(store: Store, instance_id: str) -> None:
    with pytest.raises(NotFoundError):
        store.instances.get(instance_id)
    assert store.instances.list_instances() == []
    assert store.inputs.count(instance_id) == 0
    assert store.snapshots.list_snapshots(instance_id) == []
    assert store.rituals.read(instance_id) == []
    assert store.vault.list_agents(instance_id) == []
    assert store.audit.read() == []


def test_a_transaction_commits_everything_together(store: Store, reopen: Callable[[], Store]) -> None:
    other = reopen()
    with store.transaction():
        _write_everything(store, "w")
        assert store.instances.get("w").head_tick == 10  # visible inside the transaction
        assert other.instances.list_instances() == []  # invisible outside until it commits
        assert other.audit.read() == []
    for reader in (store, other):
        assert reader.instances.get("w").head_tick == 10
        assert reader.inputs.count("w") == 1
        assert len(reader.snapshots.list_snapshots("w")) == 1
        assert len(reader.rituals.read("w")) > 0
        assert len(reader.vault.list_agents("w")) == 3
        assert [e.action for e in reader.audit.read()] == ["everything"]


def test_an_exception_rolls_back_the_whole_transaction(store: Store, reopen: Callable[[], Store]) -> None:
    def attempt() -> None:
        with store.transaction():
            _write_everything(store, "w")
            raise AbortError

    with pytest.raises(AbortError):
        attempt()
    _assert_nothing_stored(store, "w")
    _assert_nothing_stored(reopen(), "w")


def test_instance_and_inputs_roll_back_together(store: Store) -> None:
    def attempt() -> None:
        with store.transaction():
            store.instances.create(make_record("w"))
            store.inputs.append("w", [Whisper(tick=0, target="*", text="lost")])
            raise AbortError

    with pytest.raises(AbortError):
        attempt()
    _assert_nothing_stored(store, "w")
    store.instances.create(make_record("w"))  # the id was never taken
    assert [s.seq for s in store.inputs.append("w", [Whisper(tick=0, target="*", text="kept")])] == [1]


def test_a_conflict_inside_a_transaction_rolls_back_its_earlier_writes(store: Store) -> None:
    store.instances.create(make_record("w"))

    def attempt() -> None:
        with store.transaction():
            store.inputs.append("w", [Whisper(tick=0, target="*", text="lost")])
            store.instances.create(make_record("w"))

    with pytest.raises(ConflictError, match="already exists"):
        attempt()
    assert store.inputs.count("w") == 0
    assert [s.seq for s in store.inputs.append("w", [Whisper(tick=0, target="*", text="kept")])] == [1]


def test_a_nested_transaction_joins_the_outer_one(store: Store, reopen: Callable[[], Store]) -> None:
    other = reopen()
    with store.transaction():
        store.instances.create(make_record("w"))
        with store.transaction():
            store.inputs.append("w", [Whisper(tick=0, target="*", text="inner")])
        assert other.instances.list_instances() == []  # the inner block did not commit on its own
        assert other.inputs.count("w") == 0
    assert other.inputs.count("w") == 1

    def attempt() -> None:
        with store.transaction():
            store.instances.create(make_record("v"))
            with store.transaction():
                store.inputs.append("v", [Whisper(tick=0, target="*", text="inner")])
            raise AbortError

    with pytest.raises(AbortError):
        attempt()
    assert [r.id for r in other.instances.list_instances()] == ["w"]
    assert other.inputs.count("v") == 0
