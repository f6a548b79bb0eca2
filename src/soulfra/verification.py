"""Checking a stored history against itself: ``verify`` replays an instance's whole input log from its base and
compares every stored snapshot's hash (and its lineage's recorded parent states), and ``replay`` runs a world from
its seed alone, for comparison. Deltas and caches never stand in for the replay: the input log is the truth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

from soulfra.durable import history_base, start_tick, state_at
from soulfra.errors import HistoryIntegrityError, NotFoundError
from soulfra.store.ports import InstanceRecord, SnapshotInfo, Store, parent_tick
from soulfra.verification_spans import (
    PARALLEL_MIN_WORK,
    START_WORK,
    Mismatch,
    Span,
    check_blobs,
    replay_span,
    replay_spans,
    start_method,
)
from soulfra.world import World, WorldSpec, schedule
from soulfra.world.encoding import state_hash
from soulfra.world.inputs import Input
from soulfra.world.model import WorldState

__all__ = ["Mismatch", "VerifyReport", "lineage_mismatches", "replay", "verify"]


@dataclass(slots=True)
class VerifyReport:
    instance_id: str
    ticks: int
    inputs: int
    snapshots_checked: int
    state_hash: str
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance_id,
            "ok": self.ok,
            "ticks": self.ticks,
            "inputs": self.inputs,
            "snapshots_checked": self.snapshots_checked,
            "state_hash": self.state_hash,
            "mismatches": [
                {"tick": m.tick, "what": m.what, "stored": m.stored, "replayed": m.replayed} for m in self.mismatches
            ],
        }


def verify(
    store: Store, instance_id: str, *, on_tick: Callable[[int], None] | None = None, workers: int = 1
) -> VerifyReport:
    """Replay the whole input log from genesis (a fork: from its parent's state at the fork) and compare the state
    hash at every stored snapshot; and check the lineage (``lineage_mismatches``): each parent point the instance
    names is on that parent's history, with the state the instance was made from.

    With ``workers`` above 1, a long history in a database (a store with a ``url``) is replayed in that many
    processes at once, in spans cut at stored snapshots: each span but the first starts from the stored snapshot
    the span before it ends at, which that span checks. Every stored hash is still compared with a replay from
    inputs, so the report says ok exactly when a replay in one piece would; only a history that differs somewhere
    reports less of what follows (a span starts again from what is stored, where one replay would carry the
    difference on). ``on_tick`` is told the ticks replayed so far, counted from the start of the history."""
    record = store.instances.get(instance_id)
    snapshots = store.snapshots.list_snapshots(instance_id)
    mismatches, parent_state = _lineage_check(store, record)
    start = start_tick(record)
    if parent_state is not None and parent_state.tick == start and not (snapshots and snapshots[0].tick == start):
        genesis = parent_state  # a fork's base: its parent's state at the fork, already checked against its genesis
    else:
        try:
            genesis = history_base(store, record, snapshots)
        except (NotFoundError, HistoryIntegrityError):
            if not mismatches:
                raise
            # the parent does not hold the point named (reported): there is no base to replay from
            return VerifyReport(
                instance_id=instance_id, ticks=record.head_tick, inputs=store.inputs.count(instance_id),
                snapshots_checked=0, state_hash="", mismatches=mismatches,
            )  # fmt: skip
        if record.genesis_hash and state_hash(genesis) != record.genesis_hash:
            mismatches.append(
                Mismatch(tick=genesis.tick, stored=record.genesis_hash, replayed=state_hash(genesis), what="genesis")
            )
    expected = {info.tick: (info.state_hash, info.type) for info in snapshots}
    blobs = [(info.id, info.tick, info.state_hash) for info in snapshots]  # each must also read back intact
    method = start_method()
    spans = _spans(snapshots, genesis, record.head_tick, workers, method)
    url = getattr(store, "url", None)
    if len(spans) > 1 and isinstance(url, str):  # each other span's process reads its own inputs
        first = store.inputs.read(instance_id, from_tick=spans[0].start, to_tick=spans[0].end)
        found = replay_spans(
            store, url, instance_id, genesis, spans, expected, (s.input for s in first), blobs=blobs, method=method,
            on_tick=on_tick,
        )  # fmt: skip
        inputs = store.inputs.count(instance_id)
    else:
        logged = store.inputs.read(instance_id)
        found = [replay_span(World(genesis), schedule(s.input for s in logged), record.head_tick, expected, on_tick)]
        found[0].unreadable = check_blobs(store, blobs)
        inputs = len(logged)
    for span in found:
        mismatches.extend(span.mismatches)
    for span in found:  # in the order of their ticks, after every replayed difference
        mismatches.extend(span.unreadable)
    return VerifyReport(
        instance_id=instance_id,
        ticks=record.head_tick,
        inputs=inputs,
        snapshots_checked=1 + sum(span.checked for span in found),
        state_hash=found[-1].state_hash,
        mismatches=mismatches,
    )


def _spans(
    snapshots: list[SnapshotInfo], genesis: WorldState, head: int, workers: int, method: str = "spawn"
) -> list[Span]:
    """The history from ``genesis`` to ``head`` cut at stored snapshots into up to ``workers`` spans that end at
    about the same time: the first, replayed here, starts at once and is longer by what a process started by
    ``method`` takes to start (``START_WORK``); one span unless the whole is worth the start of several processes
    (``PARALLEL_MIN_WORK``)."""
    length = head - genesis.tick
    if workers <= 1 or length * max(1, genesis.size) < PARALLEL_MIN_WORK[method]:
        return [Span(start=genesis.tick, end=head)]
    inside = [info for info in snapshots if genesis.tick < info.tick < head]
    head_start = START_WORK[method] // max(1, genesis.size)  # in ticks
    share = max(0, length - head_start) // workers  # each other span's
    cuts: list[SnapshotInfo] = []
    for part in range(1, workers):
        aim = head - share * (workers - part)
        nearest = min(inside, key=lambda info: (abs(info.tick - aim), info.tick), default=None)
        if nearest is not None and (not cuts or nearest.tick > cuts[-1].tick):
            cuts.append(nearest)
    starts = [Span(start=genesis.tick, end=head), *(Span(start=c.tick, end=head, snapshot_id=c.id) for c in cuts)]
    return [replace(span, end=after.start) for span, after in pairwise(starts)] + [starts[-1]]


def lineage_mismatches(store: Store, instance_id: str) -> list[Mismatch]:
    """Where the lineage ``instance_id`` names is impossible: each parent (and merge parent) must hold the tick the
    instance was made from in its own history (``start_tick <= tick <= head_tick``), and its state there must hash
    to what the instance was made from, where that was recorded: a fork's or clone's genesis hash, a merge's
    ``parent_hashes``. A child made before a revert of its parent, from a tick after the revert tick, moves with the
    abandoned branch, so it names the branch and still passes."""
    return _lineage_check(store, store.instances.get(instance_id))[0]


def _lineage_check(store: Store, record: InstanceRecord) -> tuple[list[Mismatch], WorldState | None]:
    """``lineage_mismatches``, and for a fork or clone, its parent's state at the tick it names (compared with its
    genesis hash here), if its parent holds that tick."""
    mismatches: list[Mismatch] = []
    if record.fork_tick is None:
        return mismatches, None
    recorded = record.world.get("parent_hashes")
    merged = record.merge_parent_id is not None or record.world.get("origin") == "merge"
    fork_state: WorldState | None = None
    for role, parent_id in (("parent", record.parent_id), ("merge_parent", record.merge_parent_id)):
        if parent_id is None:
            continue
        tick = parent_tick(record, role)
        # a merge made before merges kept their parents' hashes can only be checked for its ticks
        made_from = recorded.get(role) if isinstance(recorded, dict) else None if merged else record.genesis_hash
        expected = made_from if isinstance(made_from, str) else ""
        try:
            parent = store.instances.get(parent_id)
        except NotFoundError:
            what = f"lineage: its {role} {parent_id} is not in this database"
            mismatches.append(Mismatch(tick=tick, stored=expected, replayed="none", what=what))
            continue
        first = start_tick(parent)
        if not first <= tick <= parent.head_tick:
            what = f"lineage: its {role} {parent_id} holds ticks {first} to {parent.head_tick}, not {tick}"
            mismatches.append(Mismatch(tick=tick, stored=expected, replayed="none", what=what))
            continue
        if not expected:
            continue
        state = state_at(store, parent_id, tick)
        if state_hash(state) != expected:
            what = f"lineage: its {role} {parent_id} at tick {tick} is not the state it was made from"
            mismatches.append(Mismatch(tick=tick, stored=expected, replayed=state_hash(state), what=what))
        if role == "parent" and not merged:
            fork_state = state
    return mismatches, fork_state


def replay(seed: int, spec: WorldSpec, agents: int, inputs: Iterable[Input], ticks: int) -> str:
    """The state hash of a clean in-memory run: what a durable instance must reproduce."""
    world = World.create(seed, spec, agents=agents)
    world.run_to(ticks, inputs)
    return state_hash(world.state)
