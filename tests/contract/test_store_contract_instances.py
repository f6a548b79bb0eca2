"""The InstanceCatalog's contract, run on every backend: instances are created, read back, listed, found by
seed, given a head, and deleted with everything stored for them (not while a fork descends from them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from soulfra.errors import ConflictError, NotFoundError
from soulfra.store import Store

from .conftest import Backend
from .support import _fill, _is_utc, make_record

# -- InstanceCatalog -------------------------------------------------------------------------------------------


def test_create_returns_the_stored_record_and_get_reads_it_back(store: Store) -> None:
    wanted = make_record(
        "w-1", seed=2**64 - 1, world={"name": "default", "loop_length": 100, "agents": 3, "nested": {"a": [1, 2]}}
    )
    created = store.instances.create(wanted)
    assert (created.id, created.name, created.seed, created.genesis_hash) == ("w-1", "default", 2**64 - 1, "b2:genesis")
    assert created.world == wanted.world
    assert (created.parent_id, created.fork_tick, created.merge_parent_id, created.head_tick) == (None, None, None, 0)
    assert _is_utc(created.created_at)
    assert _is_utc(created.updated_at)
    assert store.instances.get("w-1") == created


def test_lineage_fields_round_trip(store: Store) -> None:
    store.instances.create(make_record("parent"))
    store.instances.create(make_record("other"))
    child = store.instances.create(
        replace(make_record("child"), parent_id="parent", fork_tick=40, merge_parent_id="other", head_tick=40)
    )
    assert (child.parent_id, child.fork_tick, child.merge_parent_id, child.head_tick) == ("parent", 40, "other", 40)
    assert store.instances.get("child") == child


def test_create_with_a_taken_id_is_a_conflict_and_keeps_the_first(store: Store) -> None:
    first = store.instances.create(make_record("w-1", seed=1))
    with pytest.raises(ConflictError, match="w-1"):
        store.instances.create(make_record("w-1", seed=2))
    assert store.instances.get("w-1") == first
    assert [r.id for r in store.instances.list_instances()] == ["w-1"]


def test_missing_instances_are_not_found(store: Store) -> None:
    store.instances.create(make_record("present"))
    with pytest.raises(NotFoundError, match="absent"):
        store.instances.get("absent")
    with pytest.raises(NotFoundError, match="absent"):
        store.instances.set_head("absent", 5)
    with pytest.raises(NotFoundError, match="absent"):
        store.instances.delete("absent")
    assert store.instances.get("present").head_tick == 0


def test_list_instances_is_oldest_first(store: Store) -> None:
    assert store.instances.list_instances() == []
    for name in ("zeta", "alpha", "mid"):
        store.instances.create(make_record(name))
    assert [r.id for r in store.instances.list_instances()] == ["zeta", "alpha", "mid"]


def test_list_instances_of_some_ids_is_oldest_first_and_skips_the_absent(store: Store) -> None:
    for name in ("zeta", "alpha", "mid", "other"):
        store.instances.create(make_record(name))
    assert [r.id for r in store.instances.list_instances(ids={"mid", "zeta", "absent"})] == ["zeta", "mid"]
    assert store.instances.list_instances(ids=[]) == []
    assert len(store.instances.list_instances(ids=None)) == 4


def test_find_returns_only_that_seed_newest_first(store: Store) -> None:
    for name, seed in (("a", 5), ("b", 6), ("c", 5), ("d", 5)):
        store.instances.create(make_record(name, seed=seed))
    assert [r.id for r in store.instances.find(5)] == ["d", "c", "a"]
    assert [r.id for r in store.instances.find(6)] == ["b"]
    assert store.instances.find(99) == []


def test_set_head_records_the_durable_tick(store: Store) -> None:
    store.instances.create(make_record("w"))
    store.instances.create(make_record("untouched"))
    store.instances.set_head("w", 128)
    assert store.instances.get("w").head_tick == 128
    store.instances.set_head("w", 129)
    assert store.instances.get("w").head_tick == 129
    assert store.instances.get("untouched").head_tick == 0


def test_delete_removes_everything_stored_for_the_instance_and_nothing_else(
    store: Store, reopen: Callable[[], Store], backend: Backend
) -> None:
    _fill(store, "big", agents=997)  # over 64 KiB: keyframes and deltas
    _fill(store, "small", agents=0)  # 3 agents: a trained dictionary
    _fill(store, "kept", agents=0)
    assert any(s.base_id is not None for s in store.snapshots.list_snapshots("big"))
    assert backend.rows("compression_dictionaries", "small") == 1

    store.instances.delete("big")
    store.instances.delete("small")

    for gone in ("big", "small"):
        with pytest.raises(NotFoundError):
            store.instances.get(gone)
        assert store.inputs.count(gone) == 0
        assert store.snapshots.list_snapshots(gone) == []
        assert store.rituals.read(gone) == []
        assert store.vault.list_agents(gone) == []
        for table in ("snapshots", "compression_dictionaries", "ritual_logs", "inputs", "agents"):
            assert backend.rows(table, gone) == 0
    assert [r.id for r in store.instances.list_instances()] == ["kept"]
    assert store.inputs.count("kept") == 1
    assert len(store.snapshots.list_snapshots("kept")) == 20
    assert len(store.vault.list_agents("kept")) == 3
    for info in store.snapshots.list_snapshots("kept"):
        assert reopen().snapshots.load(info.id)[0] == info

    # the id is free again, and what is stored under it now reads back in another process
    _fill(store, "small", agents=0)
    fresh = reopen()
    for info in store.snapshots.list_snapshots("small"):
        loaded, _ = fresh.snapshots.load(info.id)
        assert loaded.state_hash == info.state_hash


def test_deleting_an_instance_that_was_forked_is_a_conflict_and_removes_nothing(store: Store) -> None:
    _fill(store, "parent", agents=0)
    store.instances.create(replace(make_record("fork"), parent_id="parent", fork_tick=10))
    with pytest.raises(ConflictError, match="parent"):
        store.instances.delete("parent")  # the fork's lineage would point nowhere
    assert [r.id for r in store.instances.list_instances()] == ["parent", "fork"]
    assert store.inputs.count("parent") == 1
    assert len(store.snapshots.list_snapshots("parent")) == 20
    assert len(store.rituals.read("parent")) > 0
    assert len(store.vault.list_agents("parent")) == 3
    store.instances.delete("fork")
    store.instances.delete("parent")
    assert store.instances.list_instances() == []
