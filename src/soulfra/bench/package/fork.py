"""Part 2 of ``soulfra bench package``: forks and clones by reference beside a fork that copies the state, timed
and weighed (bytes each adds to the history tables) in the same run. It measures and returns figures only."""

from __future__ import annotations

import sqlite3
import statistics
from contextlib import closing
from functools import partial
from typing import Any

from rich.progress import Progress

from soulfra.bench.package.common import _Laps, _ms, _percentile, _Source
from soulfra.durable import DurableWorld, state_at
from soulfra.errors import HistoryIntegrityError
from soulfra.meta.lineage import fork_record
from soulfra.store import InstanceRecord
from soulfra.world import Whisper

FORK_REPEATS = 20
MATERIALISE_REPEATS = 5
HISTORY_TABLES = ("inputs", "snapshots", "ritual_logs")


def _row_bytes(probe: sqlite3.Connection, table: str) -> str:
    """An SQL expression for the bytes of every value in a row of ``table`` (integers counted as decimal text)."""
    columns = [row[1] for row in probe.execute(f"PRAGMA table_info({table})")]
    return " + ".join(f'IFNULL(length(CAST("{column}" AS BLOB)), 0)' for column in columns)


def _table_bytes(probe: sqlite3.Connection, table: str) -> tuple[int, int]:
    """Rows, and the bytes of all their values."""
    query = f"SELECT count(*), IFNULL(SUM({_row_bytes(probe, table)}), 0) FROM {table}"  # noqa: S608 - our tables
    rows, size = probe.execute(query).fetchone()
    return int(rows), int(size)


def _own_input_bytes(probe: sqlite3.Connection, instance_id: str, limit: int) -> int:
    """The bytes of the first ``limit`` input rows of ``instance_id``: a clone's own modifications, not history."""
    query = (
        f"SELECT IFNULL(SUM(size), 0) FROM (SELECT {_row_bytes(probe, 'inputs')} AS size FROM inputs "  # noqa: S608
        "WHERE instance_id = ? ORDER BY seq LIMIT ?)"
    )
    return int(probe.execute(query, (instance_id, limit)).fetchone()[0])


def _history(probe: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    return {table: _table_bytes(probe, table) for table in (*HISTORY_TABLES, "instances")}


def _fork_part(source: _Source, progress: Progress) -> dict[str, Any]:
    store = source.store
    parent = store.instances.get(source.instance_id)
    at = max(s.tick for s in store.snapshots.list_snapshots(parent.id) if s.tick <= parent.head_tick)
    snapshot = store.snapshots.nearest(parent.id, at)
    if snapshot is None or snapshot.tick != at:
        raise HistoryIntegrityError(f"{parent.id} lost its snapshot at tick {at}")
    state = state_at(store, parent.id, at)  # what a copying fork copies, already in memory: the peer's best case
    change = Whisper(tick=at, target="arty", text="the clone's one change", tone="gentle")

    def make(kind: str, child: str) -> None:
        if kind != "copy":
            fork_record(store, parent, tick=at, child_id=child, kind=kind, inputs=[change] if kind == "clone" else ())
            return
        with store.transaction():  # the peer: a fork that copies the state, as a new instance with its snapshot
            store.instances.create(InstanceRecord(
                id=child, name=parent.name, seed=parent.seed, genesis_hash=snapshot.state_hash,
                world={**parent.world, "origin": "copy"}, fork_tick=at, head_tick=at,
            ))  # fmt: skip
            store.snapshots.save(child, state, "manual")

    laps = _Laps()
    kinds: dict[str, dict[str, Any]] = {}
    task = progress.add_task(f"fork, clone and copy at tick {at}", total=FORK_REPEATS * 3)
    with closing(sqlite3.connect(source.path)) as probe:
        for kind in ("fork", "clone", "copy"):
            copied, own, rows = [], [], []
            grown = dict.fromkeys((*HISTORY_TABLES, "instances"), 0)
            for n in range(FORK_REPEATS):
                before = _history(probe)
                laps.measure(kind, partial(make, kind, f"{kind}-{n}"))
                after = _history(probe)
                delta = {table: after[table][1] - before[table][1] for table in after}
                allowed = _own_input_bytes(probe, f"{kind}-{n}", 1) if kind == "clone" else 0
                for table, size in delta.items():
                    grown[table] += size
                own.append(allowed)
                copied.append(sum(delta[table] for table in HISTORY_TABLES) - allowed)
                rows.append(delta["instances"])
                progress.advance(task)
            kinds[kind] = {
                "repeats": FORK_REPEATS,
                "p50_ms": _ms(_percentile(laps.samples[kind], 0.5)),
                "max_ms": _ms(max(laps.samples[kind])),
                "samples_ms": [_ms(s) for s in laps.samples[kind]],
                "history_bytes_copied": sum(copied),
                "history_bytes_copied_max": max(copied),
                "own_modification_bytes": sum(own),
                "instance_row_bytes": round(statistics.mean(rows)),
                "bytes_grown_by_table": grown,
            }
    progress.remove_task(task)
    for n in range(MATERIALISE_REPEATS):
        world = laps.measure("open", partial(DurableWorld.open, store, f"fork-{n}"))
        if world.world.state_hash() != snapshot.state_hash:
            raise HistoryIntegrityError(f"fork-{n} opened to another state than its parent's at tick {at}")
        laps.measure("open_copy", partial(DurableWorld.open, store, f"copy-{n}"))
    return {
        "agents": state.size,
        "tick": at,
        "snapshot_raw_bytes": snapshot.raw_size,
        "snapshot_stored_bytes": snapshot.stored_size,
        "history_tables": list(HISTORY_TABLES),
        "bytes_counted_as": "length of every column value of every row (integers as decimal text), summed per table",
        "fork": kinds["fork"],
        "clone": kinds["clone"],
        "copy": kinds["copy"],
        "fork_vs_copy": round(kinds["copy"]["p50_ms"] / kinds["fork"]["p50_ms"], 1),
        "clone_vs_copy": round(kinds["copy"]["p50_ms"] / kinds["clone"]["p50_ms"], 1),
        "materialise": {
            "what": "DurableWorld.open of a fork: loads the parent's snapshot at the fork tick",
            "repeats": MATERIALISE_REPEATS,
            "p50_ms": _ms(_percentile(laps.samples["open"], 0.5)),
            "max_ms": _ms(max(laps.samples["open"])),
            "copy_p50_ms": _ms(_percentile(laps.samples["open_copy"], 0.5)),
        },
    }
