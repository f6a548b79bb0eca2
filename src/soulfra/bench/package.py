"""``soulfra bench package``: the puppet master's targets, each beside a peer measured in the same run.

Three parts, each runnable alone: one instance's ``.soulpkg`` (size, export and import speed) beside the same content
as gzip'd JSON; forks and clones by reference beside a fork that copies the state; many small instances ticking in
one process under the puppet master, which has no in-process peer (absolute figures against the target). That last
part also runs a sample of instances unthrottled until their in-memory buffers are full, for what they cost in memory
at steady state, which its window at 1 tick/s is far short of.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import psutil  # type: ignore[import-untyped]
import typer
from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from soulfra.bus import InMemoryBus
from soulfra.durable import DurabilitySettings, DurableWorld, state_at
from soulfra.errors import ConfigError, HistoryIntegrityError, OutputError, PlatformError
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.meta.keys import KeyRing, Signer
from soulfra.meta.lineage import fork_record
from soulfra.meta.package import InstanceBundle, read_package, write_package
from soulfra.meta.transfer import bundle_for, import_bundle
from soulfra.store import InstanceRecord, SqlStore
from soulfra.world import DEFAULT_WORLD, Whisper, decode_state
from soulfra.world.encoding import state_tree
from soulfra.world.model import WorldState

__all__ = ["PARTS", "package_command", "render", "run_package_bench"]

PARTS = ("all", "package", "fork", "instances")
SEED = 20261126
BUILTIN_AGENTS = len(DEFAULT_WORLD.agents)  # Cal Riven, Arty, Agent Zero
SNAPSHOT_EVERY = DurabilitySettings().snapshot_every  # periodic snapshots, as a durable world keeps them
WHISPER_EVERY = 5
GZIP_LEVEL = 6
REPEATS = 5  # package write, read and store; the median is kept
FORK_REPEATS = 20
MATERIALISE_REPEATS = 5
RATE = 1.0  # ticks per second of each of the many instances
LAG_PROBE_S = 0.1  # how often the event loop's lateness is probed during the window
SATURATION_INSTANCES = 100  # the sample run unthrottled until its surfaces' and mirrors' buffers are full
SATURATION_TICKS = 2000  # every buffer but the mirror's seeds (full at ~6,400 ticks) is full by ~1,000
SATURATION_CHECKPOINTS = (500, 1000)  # ticks at which the sample's memory is also read: the curve flattening
SATURATION_POLL_S = 0.1
FREEZE_AFTER_CREATE = True  # gc.freeze() once the instances exist, as PuppetMasterEngine.start() does at startup
MB = 1_000_000
KIB = 1024
HISTORY_TABLES = ("inputs", "snapshots", "ritual_logs")
RAW_MEANS = (
    "MB = 10^6 bytes of what the package carries uncompressed: the base and head states (encode_state bytes) and the "
    "inputs and traces (JSON lines), as the manifest's raw_size of each entry; config.json and the manifest left out"
)
TARGET_SIZE_RATIO = 1 / 3
TARGET_MB_S = 50.0
TARGET_FORK_MS = 10.0
TARGET_RSS_BYTES = 2 << 30
TARGET_TICK_RATE = 0.95  # the puppet master's target is 1,000 worlds at 1 tick/s; 5% slack for scheduling jitter

T = TypeVar("T")


class _Laps:
    """Named durations, one sample per repeat; the median is what is reported."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def measure(self, name: str, action: Callable[[], T]) -> T:
        begun = time.perf_counter()
        result = action()
        self.samples.setdefault(name, []).append(time.perf_counter() - begun)
        return result

    def add(self, name: str, *parts: str) -> None:
        """``name``'s samples: the sum of ``parts``' samples of the same repeat."""
        self.samples[name] = [sum(lap) for lap in zip(*(self.samples[part] for part in parts), strict=True)]

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _mb_s(raw_bytes: int, seconds: float) -> float:
    return round(raw_bytes / MB / seconds, 2) if seconds > 0 else 0.0


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    )  # fmt: skip


# -- the instance every package and fork measurement starts from ------------------------------------------------


@dataclass(slots=True)
class _Source:
    store: SqlStore
    path: Path
    instance_id: str
    build_s: float


def _build(workdir: Path, agents: int, ticks: int, progress: Progress) -> _Source:
    """A durable instance of ``agents`` agents run for ``ticks`` ticks, whispered to every few ticks."""
    path = workdir / "source.db"
    store = SqlStore.open(f"sqlite:///{path}")
    task = progress.add_task(f"building {agents:,} agents x {ticks} ticks", total=ticks)
    begun = time.perf_counter()
    durable = DurableWorld.create(
        store, SEED, DEFAULT_WORLD, agents=agents - BUILTIN_AGENTS, instance_id="source",
        settings=DurabilitySettings(snapshot_every=SNAPSHOT_EVERY),
    )  # fmt: skip
    while durable.tick < ticks:
        if durable.tick % WHISPER_EVERY == 0:
            text = f"whisper {durable.tick}"
            durable.submit([Whisper(tick=durable.tick, target="arty", text=text, tone="gentle")])
        durable.step()
        progress.advance(task)
    durable.close()
    progress.remove_task(task)
    return _Source(store=store, path=path, instance_id=durable.instance_id, build_s=time.perf_counter() - begun)


# -- part 1: the package beside gzip'd JSON ---------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """A state tree as JSON values: arrays and tuples become lists, bytes hex, mapping keys strings."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes | bytearray):
        return value.hex()
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, set | frozenset):
        return [_jsonable(item) for item in sorted(value)]
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _peer_content(bundle: InstanceBundle, base: WorldState, head: WorldState) -> dict[str, Any]:
    """The package's content as one JSON document: the same instance record, states, inputs and traces."""
    return {
        "instance": bundle.instance,
        "base_state": _jsonable(state_tree(base)),
        "head_state": _jsonable(state_tree(head)),
        "inputs": bundle.inputs,
        "traces": bundle.traces,
    }


def _durable_write(path: Path, data: bytes) -> None:
    """Written and fsynced, as ``write_package`` writes a package."""
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _gzip_write(path: Path, content: dict[str, Any]) -> None:
    text = json.dumps(content, separators=(",", ":")).encode()
    _durable_write(path, gzip.compress(text, compresslevel=GZIP_LEVEL, mtime=0))


def _gzip_read(path: Path) -> Any:
    return json.loads(gzip.decompress(path.read_bytes()))


def _package_part(source: _Source, workdir: Path, progress: Progress) -> dict[str, Any]:
    store, instance_id = source.store, source.instance_id
    signer = Signer.generate()
    keyring = KeyRing(workdir / "home", extra_trusted=[signer.public_key])
    package_path, peer_path = workdir / "source.soulpkg", workdir / "source.json.gz"
    compact_path = workdir / "compact.soulpkg"
    task = progress.add_task("package: export, import, gzip'd JSON", total=REPEATS * 3)
    laps = _Laps()

    def round_trip(prefix: str, path: Path, n: int, *, compact: bool) -> dict[str, Any]:
        """Write the package, read it and store it in a fresh database; the manifest written."""
        written = laps.measure(f"{prefix}write", partial(write_package, path, [bundle], signer, compact=compact))
        target = SqlStore.open(f"sqlite:///{workdir / f'import-{prefix}{n}.db'}")
        try:
            package = laps.measure(f"{prefix}read", partial(read_package, path, keyring))
            imported = laps.measure(f"{prefix}store", partial(import_bundle, target, package.bundles[0]))
        finally:
            target.close()
        if imported["state_hash"] != bundle.instance["head_hash"]:
            raise HistoryIntegrityError(
                f"the imported instance has state {imported['state_hash']}, not the exported one"
            )
        progress.advance(task)
        return written

    for n in range(REPEATS):
        bundle = laps.measure("bundle", partial(bundle_for, store, instance_id))
        manifest = round_trip("", package_path, n, compact=False)
    for n in range(REPEATS):  # compact: the importer rebuilds the states (genesis recipe, replay of the history)
        compact = round_trip("compact_", compact_path, n, compact=True)
    base, head = decode_state(bundle.base_state), decode_state(bundle.head_state)
    for _ in range(REPEATS):
        content = laps.measure("peer_build", partial(_peer_content, bundle, base, head))
        laps.measure("peer_write", partial(_gzip_write, peer_path, content))
        loaded = laps.measure("peer_read", partial(_gzip_read, peer_path))
        if loaded != content:
            raise HistoryIntegrityError("the gzip'd JSON peer did not read back what it wrote")
        progress.advance(task)
    progress.remove_task(task)

    entries = manifest["entries"]
    raw = {name: int(entry["raw_size"]) for name, entry in sorted(entries.items())}
    carried = sum(size for name, size in raw.items() if name.endswith(".zst"))
    package_bytes = package_path.stat().st_size
    gzip_bytes = peer_path.stat().st_size
    laps.add("import", "read", "store")
    laps.add("compact_import", "compact_read", "compact_store")
    compact_bytes = compact_path.stat().st_size
    laps.add("export", "bundle", "write")
    write, read, imports = laps.median("write"), laps.median("read"), laps.median("import")
    peer_write, peer_read = laps.median("peer_write"), laps.median("peer_read")
    return {
        "agents": head.size,
        "ticks": head.tick,
        "inputs": len(bundle.inputs),
        "traces": len(bundle.traces),
        "raw_bytes": carried,
        "raw_bytes_by_entry": raw,
        "raw_bytes_means": RAW_MEANS,
        "package_bytes": package_bytes,
        "package_entry_bytes": {name: int(entry["size"]) for name, entry in sorted(entries.items())},
        "gzip_json_bytes": gzip_bytes,
        "json_bytes": len(json.dumps(content, separators=(",", ":")).encode()),
        "size_ratio": round(package_bytes / gzip_bytes, 4),
        "bundle_ms": _ms(laps.median("bundle")),
        "write_ms": _ms(write),
        "read_ms": _ms(read),
        "store_ms": _ms(laps.median("store")),
        "import_ms": _ms(imports),
        "export_mb_s": _mb_s(carried, write),
        "export_with_bundle_mb_s": _mb_s(carried, laps.median("export")),
        "import_mb_s": _mb_s(carried, imports),
        "read_mb_s": _mb_s(carried, read),
        "peer_build_ms": _ms(laps.median("peer_build")),
        "peer_write_ms": _ms(peer_write),
        "peer_read_ms": _ms(peer_read),
        "peer_write_mb_s": _mb_s(carried, peer_write),
        "peer_read_mb_s": _mb_s(carried, peer_read),
        "write_speed_vs_peer": round(peer_write / write, 2),
        "read_speed_vs_peer": round(peer_read / read, 2),
        "import_speed_vs_peer_read": round(peer_read / imports, 2),
        "compact_entries": sorted(compact["entries"]),
        "compact_package_bytes": compact_bytes,
        "compact_size_ratio": round(compact_bytes / gzip_bytes, 4),
        "compact_write_ms": _ms(laps.median("compact_write")),
        "compact_read_ms": _ms(laps.median("compact_read")),
        "compact_import_ms": _ms(laps.median("compact_import")),
        "compact_export_mb_s": _mb_s(carried, laps.median("compact_write")),
        "compact_import_mb_s": _mb_s(carried, laps.median("compact_import")),
        "repeats": REPEATS,
        "samples_ms": {name: [_ms(s) for s in samples] for name, samples in laps.samples.items()},
    }


# -- part 2: fork and clone by reference beside a copying fork --------------------------------------------------


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


# -- part 3: many instances in one process ----------------------------------------------------------------------


class _RssSampler:
    """The process's resident memory every ``interval`` seconds, sampled on its own thread (the loop may lag)."""

    def __init__(self, interval: float = 1.0) -> None:
        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.samples: list[tuple[float, int]] = []  # (perf_counter, bytes)

    def sample(self) -> int:
        rss = int(self._process.memory_info().rss)
        self.samples.append((time.perf_counter(), rss))
        return rss

    def growth(self, begun: float, ended: float) -> float:
        """Bytes per second the resident memory grew by between two moments (least squares over the samples)."""
        window = [(at - begun, rss) for at, rss in self.samples if begun <= at <= ended]
        if len(window) < 2:
            return 0.0
        return statistics.linear_regression([at for at, _ in window], [float(rss) for _, rss in window]).slope

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    @contextmanager
    def running(self) -> Iterator[_RssSampler]:
        self.sample()
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            self.sample()


def _ticks(engine: PuppetMasterEngine) -> dict[str, int]:
    return {key: inst.runtime.ticks_run for key, inst in engine.live.items() if inst.runtime is not None}


async def _lag_probe(lags: list[float], stop: asyncio.Event) -> None:
    """How late the event loop wakes a coroutine that asked to sleep ``LAG_PROBE_S``."""
    while not stop.is_set():
        begun = time.perf_counter()
        await asyncio.sleep(LAG_PROBE_S)
        lags.append(time.perf_counter() - begun - LAG_PROBE_S)


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


def _settled() -> None:
    """What the previous measurement left is collected (frozen objects too) before the next one starts."""
    gc.unfreeze()
    gc.collect()


async def _saturation(count: int, agents: int, ticks: int, workdir: Path, progress: Progress) -> dict[str, Any]:
    """``count`` instances of ``agents`` agents on a fresh engine and store, run unthrottled until every one of them
    has run ``ticks`` ticks: what an instance costs in memory once its surface's and mirror's buffers are full. Its
    memory is read after creation, at each of ``SATURATION_CHECKPOINTS`` below ``ticks``, and at ``ticks``."""
    marks = sorted({*(mark for mark in SATURATION_CHECKPOINTS if mark < ticks), ticks})
    store = SqlStore.open(f"sqlite:///{workdir / 'saturation.db'}")
    bus = InMemoryBus()
    engine = PuppetMasterEngine(store, bus, EngineSettings(rate=None))
    try:
        _settled()
        before = _rss()
        task = progress.add_task(f"saturation: creating {count:,} instances of {agents} agents", total=count)
        for i in range(count):
            await engine.create_instance(
                seed=i, spec=DEFAULT_WORLD, agents=agents - BUILTIN_AGENTS, instance_id=f"s{i}"
            )
            progress.advance(task)
        if FREEZE_AFTER_CREATE:
            gc.freeze()
        progress.remove_task(task)
        curve = [(0, _rss())]  # (every instance has run at least this many ticks, RSS)
        task = progress.add_task(f"saturation: {count:,} instances unthrottled to {ticks:,} ticks", total=ticks)
        first, started = sum(_ticks(engine).values()), time.perf_counter()
        while marks:
            await asyncio.sleep(SATURATION_POLL_S)
            stopped = [key for key, inst in engine.live.items() if inst.runtime is None or not inst.runtime.running]
            if stopped:
                raise PlatformError(f"{len(stopped)} saturation instances stopped ticking, {stopped[0]} first")
            ran = _ticks(engine)
            least = min(ran.values())
            while marks and least >= marks[0]:
                curve.append((marks.pop(0), _rss()))
            progress.update(task, completed=min(least, ticks))
        elapsed = time.perf_counter() - started
        ran = _ticks(engine)
        progress.remove_task(task)
        collecting = time.perf_counter()  # what a full collection costs once the buffers are full: a pause of the loop
        gc.collect()
        collect_s = time.perf_counter() - collecting
    finally:
        await engine.close()
        await bus.close()
        store.close()
    saturated = curve[-1][1]
    return {
        "instances": count,
        "agents_per_instance": agents,
        "ticks": ticks,
        "rate": "unthrottled (EngineSettings(rate=None))",
        "store": "a fresh SQLite file (WAL) and engine, closed before the main window",
        "gc_frozen_after_create": FREEZE_AFTER_CREATE,
        "ran_s": round(elapsed, 2),
        "ticks_per_s": round((sum(ran.values()) - first) / elapsed, 1) if elapsed else 0.0,  # all of them together
        "ticks_per_instance_max": max(ran.values()),
        "rss_before_bytes": before,
        "rss_after_create_bytes": curve[0][1],
        "rss_saturated_bytes": saturated,
        "bytes_per_instance": round((saturated - before) / count),
        "kib_per_instance": round((saturated - before) / count / KIB, 1),
        "kib_per_instance_by_ticks": [[at, round((rss - before) / count / KIB, 1)] for at, rss in curve],
        "gc_collect_ms": _ms(collect_s),  # one gc.collect() once saturated (frozen objects, if any, left out)
    }


async def _many(count: int, agents: int, window: float, workdir: Path, progress: Progress) -> dict[str, Any]:
    store = SqlStore.open(f"sqlite:///{workdir / 'instances.db'}")
    bus = InMemoryBus()
    engine = PuppetMasterEngine(store, bus, EngineSettings(rate=RATE))
    sampler = _RssSampler()
    lags: list[float] = []
    stop = asyncio.Event()
    try:
        with sampler.running():
            baseline = sampler.samples[0][1]
            task = progress.add_task(f"creating {count:,} instances of {agents} agents", total=count)
            begun = time.perf_counter()
            for i in range(count):
                await engine.create_instance(
                    seed=i, spec=DEFAULT_WORLD, agents=agents - BUILTIN_AGENTS, instance_id=f"w{i}"
                )
                progress.advance(task)
            created_s = time.perf_counter() - begun
            if FREEZE_AFTER_CREATE:
                gc.freeze()
            after_create = sampler.sample()
            progress.remove_task(task)
            task = progress.add_task(f"{count:,} instances ticking at {RATE:g}/s", total=round(window))
            probe = asyncio.get_running_loop().create_task(_lag_probe(lags, stop))
            first, started = _ticks(engine), time.perf_counter()
            while (elapsed := time.perf_counter() - started) < window:
                await asyncio.sleep(min(1.0, window - elapsed))
                progress.update(task, completed=min(round(window), round(time.perf_counter() - started)))
            last, ended = _ticks(engine), time.perf_counter()
            elapsed = ended - started
            stop.set()
            await probe
            progress.remove_task(task)
            failed = sum(1 for inst in engine.live.values() if inst.runtime is None or inst.runtime.failure)
            closing_begun = time.perf_counter()
            await engine.close()
            closed_s = time.perf_counter() - closing_begun
    finally:
        stop.set()
        await engine.close()  # a no-op once closed; after a failure it stops whatever was started
        await bus.close()
        store.close()
    per_instance = [last[key] - first.get(key, 0) for key in last]
    achieved = sum(per_instance)
    expected = count * RATE * elapsed
    return {
        "instances": count,
        "agents_per_instance": agents,
        "rate": RATE,
        "store": "SQLite file (WAL), one for all instances",
        "bus": "InMemoryBus",
        "gc_frozen_after_create": FREEZE_AFTER_CREATE,
        "created_s": round(created_s, 2),
        "create_ms_per_instance": _ms(created_s / count),
        "window_s": round(elapsed, 2),
        "ticks_achieved": achieved,
        "ticks_expected": round(expected, 1),
        "tick_rate_kept": round(achieved / expected, 4) if expected else 0.0,
        "ticks_per_instance_min": min(per_instance),
        "ticks_per_instance_max": max(per_instance),
        "failed_instances": failed,
        "loop_lag_p50_ms": _ms(_percentile(lags, 0.5)),
        "loop_lag_p99_ms": _ms(_percentile(lags, 0.99)),
        "loop_lag_max_ms": _ms(max(lags, default=0.0)),
        "rss_before_bytes": baseline,
        "rss_after_create_bytes": after_create,
        "peak_rss_bytes": max(rss for _, rss in sampler.samples),
        "rss_growth_mib_per_s": round(sampler.growth(started, ended) / (1 << 20), 2),
        "rss_series_mib": [round(rss / (1 << 20), 1) for _, rss in sampler.samples],  # one a second, from the start
        "close_s": round(closed_s, 2),
        "peer": "none in-process: absolute figures against the target",
    }


async def _instances_part(
    count: int, agents: int, window: float, saturation: tuple[int, int], workdir: Path, progress: Progress
) -> dict[str, Any]:
    """The saturation sample first, on a clean process (were it after, its instances would fill what the allocator
    kept of the many and grow RSS by less than they take); then the many at ``RATE`` over the window. Whatever the
    sample leaves to the allocator is in the main part's RSS before, so in the projection too: it errs high."""
    saturated = await _saturation(saturation[0], agents, saturation[1], workdir, progress)
    _settled()
    many = await _many(count, agents, window, workdir, progress)
    _settled()
    projected = many["rss_before_bytes"] + count * saturated["bytes_per_instance"]
    return {
        **many,
        "saturation": saturated,
        "rss_kept_from_saturation_bytes": many["rss_before_bytes"] - saturated["rss_before_bytes"],
        "projected_steady_rss_bytes": projected,
        "projected_from": "RSS before the instances were created + instances x bytes per instance at saturation",
        "steady_rss_bytes": max(many["peak_rss_bytes"], projected),
        "projected_steady_gc_collect_ms": round(saturated["gc_collect_ms"] * count / saturated["instances"], 1),
    }


# -- the benchmark ----------------------------------------------------------------------------------------------


def _targets(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    package, fork, many = results.get("package"), results.get("fork"), results.get("instances")
    if package is not None:
        out["package_size_ratio"] = {
            "target": "<= 1/3 of gzip'd JSON",
            "measured": package["size_ratio"],
            "pass": package["size_ratio"] <= TARGET_SIZE_RATIO,
        }
        out["compact_package_size_ratio"] = {
            "target": "<= 1/3 of gzip'd JSON",
            "measured": package["compact_size_ratio"],
            "pass": package["compact_size_ratio"] <= TARGET_SIZE_RATIO,
        }
        for key in ("export_mb_s", "import_mb_s", "compact_export_mb_s", "compact_import_mb_s"):
            out[key] = {"target": f">= {TARGET_MB_S:g} MB/s", "measured": package[key],
                        "pass": package[key] >= TARGET_MB_S}  # fmt: skip
    if fork is not None:
        for kind in ("fork", "clone"):
            worst = fork[kind]["max_ms"]
            out[f"{kind}_ms"] = {"target": f"max <= {TARGET_FORK_MS:g} ms",
                                 "measured": worst, "pass": worst <= TARGET_FORK_MS}  # fmt: skip
        copied = fork["fork"]["history_bytes_copied"] + fork["clone"]["history_bytes_copied"]
        out["history_bytes_copied"] = {"target": "== 0", "measured": copied, "pass": copied == 0}
    if many is not None:
        peak, projected = many["peak_rss_bytes"], many["projected_steady_rss_bytes"]
        worst = max(peak, projected)
        out["rss_bytes"] = {
            "target": "max(peak, projected) < 2 GiB", "measured": worst, "peak": peak, "projected": projected,
            "basis": "projected" if projected >= peak else "peak", "pass": worst < TARGET_RSS_BYTES,
        }  # fmt: skip
        kept = many["tick_rate_kept"]
        out["tick_rate_kept"] = {"target": f">= {TARGET_TICK_RATE}", "measured": kept,
                                 "pass": kept >= TARGET_TICK_RATE}  # fmt: skip
    return out


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.machine()}",
        "sqlite": sqlite3.sqlite_version,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),  # other work on the machine skews every figure
    }


def run_package_bench(
    *,
    agents: int,
    ticks: int,
    instances: int,
    instance_agents: int,
    window: float,
    out: Path,
    console: Console,
    part: str = "all",
    show: bool = True,
    saturation_instances: int = SATURATION_INSTANCES,
    saturation_ticks: int = SATURATION_TICKS,
) -> dict[str, Any]:
    """Run the chosen part (or all three), write every figure to ``out`` as JSON and, with ``show``, print the
    tables on ``console`` (progress goes there too); returns the results."""
    if part not in PARTS:
        raise ConfigError(f"--part must be one of {', '.join(PARTS)}, not {part!r}")
    if min(agents, instance_agents) < BUILTIN_AGENTS:
        raise ConfigError(f"a world here has at least the {BUILTIN_AGENTS} agents of the default world")
    if min(ticks, instances, saturation_instances, saturation_ticks) < 1 or window <= 0:
        raise ConfigError("ticks, instances, the saturation sample and ticks, and the window must be positive")
    load_before = round(os.getloadavg()[0], 2)
    results: dict[str, Any] = {
        "benchmark": "package",
        "settings": {
            "part": part,
            "agents": agents,
            "ticks": ticks,
            "instances": instances,
            "instance_agents": instance_agents,
            "window_s": window,
            "seed": SEED,
            "snapshot_every": SNAPSHOT_EVERY,
            "whisper_every": WHISPER_EVERY,
            "gzip_level": GZIP_LEVEL,
            "repeats": REPEATS,
            "fork_repeats": FORK_REPEATS,
            "materialise_repeats": MATERIALISE_REPEATS,
            "rate": RATE,
            "saturation_instances": saturation_instances,
            "saturation_ticks": saturation_ticks,
            "saturation_checkpoints": [mark for mark in SATURATION_CHECKPOINTS if mark < saturation_ticks],
            "gc_frozen_after_create": FREEZE_AFTER_CREATE,
        },
    }
    with tempfile.TemporaryDirectory(prefix="soulfra-bench-package-") as tmp, _progress(console) as progress:
        workdir = Path(tmp)
        # The many instances go first: after the 10,000-agent parts the allocator holds freed memory that the
        # instances would fill without growing RSS, which would understate what each instance costs.
        if part in ("all", "instances"):
            saturation = (saturation_instances, saturation_ticks)
            results["instances"] = asyncio.run(
                _instances_part(instances, instance_agents, window, saturation, workdir, progress)
            )
        if part in ("all", "package", "fork"):
            source = _build(workdir, agents, ticks, progress)
            results["build_s"] = round(source.build_s, 2)
            try:
                if part in ("all", "package"):
                    results["package"] = _package_part(source, workdir, progress)
                if part in ("all", "fork"):
                    results["fork"] = _fork_part(source, progress)
            finally:
                source.store.close()
            del source
    results["targets"] = _targets(results)
    results["machine"] = {**_machine(), "load_average_1m_at_start": load_before}
    results["versions"] = {"soulfra": _version(), "sqlalchemy": metadata.version("sqlalchemy")}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    if show:
        console.print(render(results))
    return results


def _version() -> str:
    try:
        return metadata.version("soulfra")
    except metadata.PackageNotFoundError:
        return "dev"


# -- the tables -------------------------------------------------------------------------------------------------


def _mib(size: int) -> str:
    return f"{size / (1 << 20):,.1f} MiB"


def _package_table(package: dict[str, Any]) -> Table:
    table = Table(
        title=f"package: {package['agents']:,} agents at tick {package['ticks']}, {package['inputs']} inputs, "
        f"{package['traces']:,} traces (median of {package['repeats']})",
        caption=f"MB/s over {package['raw_bytes'] / MB:.2f} MB carried raw: base + head state (encode_state) + inputs "
        f"+ traces (JSON lines). Also: bundle build {package['bundle_ms']:.0f} ms (export with it "
        f"{package['export_with_bundle_mb_s']:.1f} MB/s), store {package['store_ms']:.0f} ms, JSON build "
        f"{package['peer_build_ms']:.0f} ms. *read only: the peer stores nothing.",
    )
    for column in ("", "bytes", "write ms", "read ms", "read+store", "out MB/s", "in MB/s"):
        table.add_column(column, justify="right" if column else "left")
    table.add_row(
        ".soulpkg", f"{package['package_bytes']:,}", f"{package['write_ms']:.1f}", f"{package['read_ms']:.1f}",
        f"{package['import_ms']:.1f}", f"{package['export_mb_s']:.1f}", f"{package['import_mb_s']:.1f}",
    )  # fmt: skip
    table.add_row(
        ".soulpkg --compact", f"{package['compact_package_bytes']:,}", f"{package['compact_write_ms']:.1f}",
        f"{package['compact_read_ms']:.1f}", f"{package['compact_import_ms']:.1f}",
        f"{package['compact_export_mb_s']:.1f}", f"{package['compact_import_mb_s']:.1f}",
    )  # fmt: skip
    table.add_row(
        f"gzip JSON {GZIP_LEVEL}", f"{package['gzip_json_bytes']:,}", f"{package['peer_write_ms']:.1f}",
        f"{package['peer_read_ms']:.1f}", "-", f"{package['peer_write_mb_s']:.1f}", f"{package['peer_read_mb_s']:.1f}*",
    )  # fmt: skip
    table.add_row(
        "ratio (--compact)", f"{package['size_ratio']:.3f} ({package['compact_size_ratio']:.3f})",
        f"{package['write_speed_vs_peer']:.2f}x", f"{package['read_speed_vs_peer']:.2f}x", "", "", "",
    )  # fmt: skip
    return table


def _fork_table(fork: dict[str, Any]) -> Table:
    opened = fork["materialise"]
    clone = fork["clone"]
    table = Table(
        title=f"fork at tick {fork['tick']} of {fork['agents']:,} agents, {fork['fork']['repeats']} of each",
        caption="copied: what inputs, snapshots and ritual_logs grew by, less the clone's own input "
        f"({clone['own_modification_bytes'] // clone['repeats']:,} B). Opening a fork (DurableWorld.open, which loads "
        f"the parent's snapshot): p50 {opened['p50_ms']:.1f} ms, max {opened['max_ms']:.1f} ms; a copy: "
        f"{opened['copy_p50_ms']:.1f} ms.",
    )
    for column in ("", "p50 ms", "max ms", "copied B", "row B", "vs copy"):
        table.add_column(column, justify="right" if column else "left")
    names = {"fork": "fork", "clone": "clone (+1 input)", "copy": "copy (peer)"}
    speed = {"fork": f"{fork['fork_vs_copy']:.1f}x", "clone": f"{fork['clone_vs_copy']:.1f}x", "copy": ""}
    for kind, name in names.items():
        side = fork[kind]
        table.add_row(
            name, f"{side['p50_ms']:.2f}", f"{side['max_ms']:.2f}", f"{side['history_bytes_copied_max']:,}",
            f"{side['instance_row_bytes']:,}", speed[kind],
        )  # fmt: skip
    return table


def _instances_table(many: dict[str, Any]) -> Table:
    sample = many["saturation"]
    curve = ", ".join(f"{kib:,.0f} at {at:,}" for at, kib in sample["kib_per_instance_by_ticks"])
    table = Table(
        title=f"{many['instances']:,} instances of {many['agents_per_instance']} agents at {many['rate']:g} tick/s, "
        "one process",
        caption=f"Saturation: {sample['instances']:,} instances run unthrottled first, on their own engine and store, "
        f"until each had run {sample['ticks']:,} ticks ({sample['ran_s']:.0f} s, {sample['ticks_per_s']:,.0f} ticks/s "
        f"in all); KiB per instance by ticks run: {curve}. Projected: RSS before + {many['instances']:,} x that at "
        f"saturation. Peer: {many['peer']}.",
    )
    table.add_column("")
    table.add_column("measured", justify="right")
    rss = " / ".join(_mib(many[key]) for key in ("rss_before_bytes", "rss_after_create_bytes", "peak_rss_bytes"))
    for name, value in (
        ("created in", f"{many['created_s']:.1f} s ({many['create_ms_per_instance']:.1f} ms each)"),
        ("window", f"{many['window_s']:.1f} s"),
        ("ticks achieved / expected", f"{many['ticks_achieved']:,} / {many['ticks_expected']:,.0f}"),
        ("tick rate kept", f"{many['tick_rate_kept']:.3f}"),
        ("ticks per instance", f"{many['ticks_per_instance_min']} to {many['ticks_per_instance_max']}"),
        ("loop lag p50 / p99 / max", f"{many['loop_lag_p50_ms']:.0f} / {many['loop_lag_p99_ms']:.0f} / "
         f"{many['loop_lag_max_ms']:.0f} ms"),
        ("RSS before / created / peak", rss),
        ("RSS growth in the window", f"{many['rss_growth_mib_per_s']:.2f} MiB/s"),
        ("per instance at saturation", f"{sample['kib_per_instance']:,.0f} KiB ({sample['ticks']:,} ticks)"),
        ("RSS peak / projected steady", f"{_mib(many['peak_rss_bytes'])} / {_mib(many['projected_steady_rss_bytes'])}"),
        ("full collection at saturation", f"{sample['gc_collect_ms']:,.0f} ms for {sample['instances']:,} (projected "
         f"{many['projected_steady_gc_collect_ms']:,.0f} ms for {many['instances']:,})"),
        ("closed in", f"{many['close_s']:.1f} s"),
    ):  # fmt: skip
        table.add_row(name, value)
    return table


_SHOWN: dict[str, Callable[[Any], str]] = {
    "package_size_ratio": "{:.3f}".format, "export_mb_s": "{:,.1f} MB/s".format, "import_mb_s": "{:,.1f} MB/s".format,
    "compact_package_size_ratio": "{:.3f}".format, "compact_export_mb_s": "{:,.1f} MB/s".format,
    "compact_import_mb_s": "{:,.1f} MB/s".format,
    "fork_ms": "{:.2f} ms".format, "clone_ms": "{:.2f} ms".format, "history_bytes_copied": "{:,} B".format,
    "rss_bytes": lambda size: _mib(int(size)), "tick_rate_kept": "{:.3f}".format,
}  # fmt: skip


def render(results: dict[str, Any]) -> Group:
    """The results as tables: one per part that ran, then the targets."""
    tables: list[Table] = []
    for key, table in (("package", _package_table), ("fork", _fork_table), ("instances", _instances_table)):
        if key in results:
            tables.append(table(results[key]))
    targets = Table(title="targets")
    for column in ("target", "wanted", "measured", "verdict"):
        targets.add_column(column, justify="left" if column == "target" else "right")
    for key, target in results["targets"].items():
        measured = _SHOWN[key](target["measured"]) + (f" ({target['basis']})" if "basis" in target else "")
        targets.add_row(key, target["target"], measured, "pass" if target["pass"] else "FAIL")
    tables.append(targets)
    return Group(*tables)


def package_command(
    agents: Annotated[
        int, typer.Option(min=BUILTIN_AGENTS, help="Agents in the packaged and forked instance.")
    ] = 10_000,
    ticks: Annotated[int, typer.Option(min=1, help="Ticks of history of that instance.")] = 200,
    instances: Annotated[int, typer.Option(min=1, help="Instances ticking together in one process.")] = 1000,
    instance_agents: Annotated[
        int, typer.Option(min=BUILTIN_AGENTS, help="Agents in each of those instances (3: the default world).")
    ] = 10,
    window: Annotated[float, typer.Option(min=0.5, help="Seconds the many instances are measured for.")] = 30.0,
    saturation_instances: Annotated[
        int, typer.Option(min=1, help="Instances run unthrottled for memory at steady state (before the window).")
    ] = SATURATION_INSTANCES,
    saturation_ticks: Annotated[
        int, typer.Option(min=1, help="Ticks each of those runs (the mirror's seeds fill last, at about 6,400).")
    ] = SATURATION_TICKS,
    part: Annotated[str, typer.Option(help="Which part to run: all, package, fork or instances.")] = "all",
    out: Annotated[Path, typer.Option(help="Where to write the JSON results.")] = Path("benchmarks/package.json"),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Package size and speed beside gzip'd JSON, fork and clone beside a copying fork, many instances at once."""
    console = Console(stderr=as_json)
    results = run_package_bench(
        agents=agents, ticks=ticks, instances=instances, instance_agents=instance_agents, window=window, out=out,
        console=console, part=part, show=not as_json, saturation_instances=saturation_instances,
        saturation_ticks=saturation_ticks,
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(results))
