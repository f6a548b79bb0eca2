"""The InstanceCatalog's lineage contract, run on every backend: an instance's status, its children (forks and
merges), a branch split off at a tick without copying, and symmetric links."""

from __future__ import annotations

from dataclasses import replace

import pytest

from soulfra.errors import InputError, LineageError, NotFoundError
from soulfra.store import Store
from soulfra.world import (
    Whisper,
)

from .support import _fill, make_record

# -- lineage: status, children, branches, links ------------------------------------------------------------------


def test_status_defaults_to_active_and_can_be_set(store: Store) -> None:
    store.instances.create(make_record("a"))
    assert store.instances.get("a").status == "active"
    store.instances.set_status("a", "frozen")
    assert store.instances.get("a").status == "frozen"
    with pytest.raises(InputError, match="unknown instance status"):
        store.instances.set_status("a", "asleep")
    with pytest.raises(NotFoundError):
        store.instances.set_status("nope", "active")


def test_children_are_forks_and_merges_oldest_first(store: Store) -> None:
    store.instances.create(make_record("p"))
    store.instances.create(make_record("q"))
    store.instances.create(replace(make_record("f"), parent_id="p", fork_tick=0))
    store.instances.create(replace(make_record("m"), parent_id="q", merge_parent_id="p", fork_tick=0))
    assert [r.id for r in store.instances.children("p")] == ["f", "m"]
    assert [r.id for r in store.instances.children("q")] == ["m"]
    assert store.instances.children("f") == []


@pytest.mark.parametrize("agents", [0, 997], ids=["dictionary", "deltas"])
def test_split_branch_moves_what_came_after_and_copies_nothing(store: Store, agents: int) -> None:
    _fill(store, "x", agents=agents)  # snapshots at ticks 0..19, traces, an input at tick 0
    store.inputs.append("x", [Whisper(tick=t, target="*", text=f"at {t}") for t in (5, 10, 15)])
    store.instances.set_head("x", 20)
    head = 20
    inputs_before = store.inputs.read("x")
    snaps_before = store.snapshots.list_snapshots("x")
    traces_before = store.rituals.read("x")
    cut = snaps_before[len(snaps_before) // 2].tick
    store.instances.create(replace(make_record("late-fork"), parent_id="x", fork_tick=cut + 1))
    store.instances.create(replace(make_record("early-fork"), parent_id="x", fork_tick=cut))
    branch = replace(make_record("x~1"), parent_id="x", fork_tick=cut, head_tick=head, status="abandoned")
    with store.transaction():
        created = store.instances.split_branch("x", cut, branch)
    assert created.status == "abandoned"
    assert store.instances.get("x").head_tick == cut
    kept, moved = store.snapshots.list_snapshots("x"), store.snapshots.list_snapshots("x~1")
    assert [s.tick for s in kept] == [s.tick for s in snaps_before if s.tick <= cut]
    assert [s.tick for s in moved] == [s.tick for s in snaps_before if s.tick > cut]
    assert len(kept) + len(moved) == len(snaps_before)
    for info in moved:  # every moved snapshot (delta or not) still reads back
        loaded, _ = store.snapshots.load(info.id)
        assert loaded.state_hash == info.state_hash
    assert [i.seq for i in store.inputs.read("x")] + [i.seq for i in store.inputs.read("x~1")] == [
        i.seq for i in inputs_before
    ]
    assert all(i.tick >= cut for i in store.inputs.read("x~1"))
    assert len(store.rituals.read("x")) + len(store.rituals.read("x~1")) == len(traces_before)
    assert store.instances.get("late-fork").parent_id == "x~1"
    assert store.instances.get("early-fork").parent_id == "x"


def test_split_branch_past_the_head_is_refused_and_changes_nothing(store: Store) -> None:
    _fill(store, "x", agents=0)
    store.instances.set_head("x", 20)
    head = 20
    with pytest.raises(LineageError, match="cannot revert"):
        store.instances.split_branch("x", head + 1, replace(make_record("x~1"), parent_id="x"))
    assert [r.id for r in store.instances.list_instances()] == ["x"]


def test_links_are_symmetric_idempotent_and_go_with_the_instance(store: Store) -> None:
    for name in ("a", "b", "c"):
        store.instances.create(make_record(name))
    store.instances.link("b", "a")
    store.instances.link("a", "b")
    store.instances.link("a", "c")
    assert store.instances.links("a") == ["b", "c"]
    assert store.instances.links("b") == ["a"]
    assert store.instances.unlink("a", "b") is True
    assert store.instances.unlink("a", "b") is False
    with pytest.raises(NotFoundError):
        store.instances.link("a", "nope")
    store.instances.delete("c")
    assert store.instances.links("a") == []
