"""Lineage: instances form a graph (fork and clone have one parent, merge two) and history is never destroyed.

Forks and clones are made here by reference: the child's record names its parent and the tick; its state is the
parent's there (``durable.state_at`` follows the reference) and no history is copied. A revert moves what came
after the revert tick to an abandoned branch, which stays listed. A child always names its parent at a tick the
parent holds when the child is written (``on_timeline``); ``verification.verify`` checks that it still does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from soulfra.durable import start_tick
from soulfra.errors import LineageError
from soulfra.store.ports import InstanceRecord, Store, parent_tick
from soulfra.world.inputs import Input, Mark

__all__ = [
    "MAX_LINEAGE_DEPTH",
    "AncestorPoint",
    "common_ancestor",
    "fork_record",
    "lineage",
    "on_timeline",
    "own_world",
    "record_json",
    "revert_record",
]

MAX_LINEAGE_DEPTH = 256  # ancestors followed before a lineage is called corrupt
# What a record's ``world`` says of how that record itself was made: a child never inherits it from its parent
# (a clone of a merge that kept the merge's ``parent_ticks`` would name its parent at the merge's parents' ticks).
_OWN_LINEAGE = ("origin", "parent_ticks", "parent_hashes")


@dataclass(frozen=True, slots=True)
class AncestorPoint:
    """A point of history: ``instance`` up to and including ``tick``."""

    instance: str
    tick: int


def record_json(record: InstanceRecord) -> dict[str, Any]:
    return {
        "id": record.id, "name": record.name, "seed": record.seed, "status": record.status,
        "head_tick": record.head_tick, "genesis_hash": record.genesis_hash, "world": record.world,
        "parent_id": record.parent_id, "fork_tick": record.fork_tick, "merge_parent_id": record.merge_parent_id,
        "created_at": None if record.created_at is None else record.created_at.isoformat(),
    }  # fmt: skip


def lineage(store: Store, instance_id: str) -> list[AncestorPoint]:
    """Every point of history ``instance_id`` descends from, nearest first: itself up to its head, then each parent
    (and merge parent) up to the tick the child was made at, and so on."""
    points: list[AncestorPoint] = []
    record = store.instances.get(instance_id)
    queue: list[tuple[InstanceRecord, int]] = [(record, record.head_tick)]
    seen: dict[str, int] = {}
    while queue:
        current, limit = queue.pop(0)
        if seen.get(current.id, -1) >= limit:
            continue
        seen[current.id] = limit
        points.append(AncestorPoint(current.id, limit))
        if len(points) > MAX_LINEAGE_DEPTH:
            raise LineageError(f"the lineage of {instance_id} is deeper than {MAX_LINEAGE_DEPTH}; is it cyclic?")
        if current.fork_tick is None:
            continue
        for parent, role in ((current.parent_id, "parent"), (current.merge_parent_id, "merge_parent")):
            if parent is not None:
                queue.append((store.instances.get(parent), min(parent_tick(current, role), limit)))
    return points


def common_ancestor(store: Store, a: str, b: str) -> AncestorPoint:
    """The latest point of history both ``a`` and ``b`` descend from (the base of a three-way merge)."""
    ours = lineage(store, a)
    theirs: dict[str, int] = {}
    for point in lineage(store, b):
        theirs[point.instance] = max(theirs.get(point.instance, -1), point.tick)
    best: AncestorPoint | None = None
    for point in ours:
        if point.instance in theirs:
            candidate = AncestorPoint(point.instance, min(point.tick, theirs[point.instance]))
            if best is None or candidate.tick > best.tick:
                best = candidate
    if best is None:
        raise LineageError(f"{a} and {b} share no ancestor; only instances of one lineage can be merged")
    return best


def own_world(parent_world: Mapping[str, Any], origin: str, **lineage_keys: Any) -> dict[str, Any]:
    """A child's ``world``: its parent's description without what it says of the parent's own making, with the
    child's ``origin`` and lineage keys (a merge's ``parent_ticks`` and ``parent_hashes``)."""
    kept = {key: value for key, value in parent_world.items() if key not in _OWN_LINEAGE}
    return {**kept, "origin": origin, **lineage_keys}


def on_timeline(store: Store, instance_id: str, tick: int, *, doing: str) -> InstanceRecord:
    """The record of ``instance_id`` as stored now, if its own history holds ``tick``; else ``LineageError`` (for
    instance, a revert has moved the head back before it). A fork, clone or merge names its parent only at such a
    tick, checked when the child is written."""
    record = store.instances.get(instance_id)
    start = start_tick(record)
    if not start <= tick <= record.head_tick:
        raise LineageError(
            f"{instance_id} holds ticks {start} to {record.head_tick} durably; cannot {doing} it at tick {tick}"
        )
    return record


def fork_record(
    store: Store,
    parent: InstanceRecord,
    *,
    tick: int,
    child_id: str,
    kind: str,
    inputs: Sequence[Input] = (),
    genesis_hash: str | None = None,
    name: str | None = None,
) -> InstanceRecord:
    """Make a fork or clone of ``parent`` at ``tick``: one record and the child's modifications (as inputs at the
    fork tick). The parent's state there is referenced, not copied. ``LineageError`` when the parent's history (as
    stored now, not as ``parent`` says) does not hold ``tick``."""
    on_timeline(store, parent.id, tick, doing=kind)
    if genesis_hash is None:
        nearest = store.snapshots.nearest(parent.id, tick)
        genesis_hash = nearest.state_hash if nearest is not None and nearest.tick == tick else ""
    record = InstanceRecord(
        id=child_id,
        name=name or parent.name,
        seed=parent.seed,
        genesis_hash=genesis_hash,
        world=own_world(parent.world, kind),
        parent_id=parent.id,
        fork_tick=tick,
        head_tick=tick,
    )
    with store.transaction():
        on_timeline(store, parent.id, tick, doing=kind)  # again where it is written: no revert crossed it
        created = store.instances.create(record)
        if inputs:
            store.inputs.append(created.id, [replace(item, tick=tick) for item in inputs])
    return created


def revert_record(store: Store, record: InstanceRecord, *, tick: int, branch_id: str) -> InstanceRecord:
    """Move ``record``'s head back to ``tick``; what came after becomes the abandoned branch ``branch_id``. The
    revert is marked in ``record``'s log at ``tick``, its note (JSON, as every mark's) naming the branch."""
    branch = InstanceRecord(
        id=branch_id,
        name=record.name,
        seed=record.seed,
        genesis_hash="",
        world=own_world(record.world, "abandoned-branch"),
        parent_id=record.id,
        fork_tick=tick,
        head_tick=record.head_tick,
        status="abandoned",
    )
    with store.transaction():
        created = store.instances.split_branch(record.id, tick, branch)
        note = json.dumps({"branch": branch_id}, separators=(",", ":"))
        store.inputs.append(record.id, [Mark(tick=tick, command="TIMELINE_REVERT", note=note)])
    return created
