"""Part 3 of ``soulfra bench package``: many small instances ticking in one process under the puppet master (tick
rate kept, loop lag, RSS), after a sample run unthrottled until its buffers are full (memory at steady state).
It has no in-process peer; it measures and returns figures only."""

from __future__ import annotations

import asyncio
import gc
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
from rich.progress import Progress

from soulfra.bench.package.common import BUILTIN_AGENTS, _ms, _percentile
from soulfra.bus import InMemoryBus
from soulfra.errors import PlatformError
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.platforms.instance import InstanceSettings
from soulfra.store import SqlStore
from soulfra.world import DEFAULT_WORLD

RATE = 1.0  # ticks per second of each of the many instances
LAG_PROBE_S = 0.1  # how often the event loop's lateness is probed during the window
SATURATION_INSTANCES = 100  # the sample run unthrottled until its surfaces' and mirrors' buffers are full
SATURATION_TICKS = 2000  # every buffer but the mirror's seeds (full at ~6,400 ticks) is full by ~1,000
SATURATION_CHECKPOINTS = (500, 1000)  # ticks at which the sample's memory is also read: the curve flattening
SATURATION_POLL_S = 0.1
FREEZE_AFTER_CREATE = True  # gc.freeze() once the instances exist, as PuppetMasterEngine.start() does at startup
KIB = 1024


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
    return {key: inst.runtime.ticks_run for key, inst in engine.live.items()}


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
    engine = PuppetMasterEngine(store, bus, EngineSettings(instance=InstanceSettings(rate=None)))
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
            stopped = [key for key, inst in engine.live.items() if not inst.runtime.running]
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
        "rate": "unthrottled (rate=None)",
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
    engine = PuppetMasterEngine(store, bus, EngineSettings(instance=InstanceSettings(rate=RATE)))
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
            failed = sum(1 for inst in engine.live.values() if inst.runtime.failure)
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
