"""Replaying a stretch of an instance's history and comparing the stored hashes on it: in this process, or several
stretches at once (``verify --workers``), the first in this process and each other in a process of its own that
reads the database itself.

A span runs from a start tick to an end tick. The first starts from the history's base; every other from the
stored snapshot at its start tick, read and checked against its hash there. A span compares the hash of every
stored snapshot after its start, up to and including its end: the snapshot the next span starts from is the last
one it checks, so together the spans check every stored hash against a replay. Once replayed, each span also reads
back the stored blobs of its stretch (each must hash to its stored hash), so that no process waits for one to read
them all.

A span's process is forked where the platform forks and this process runs no other Python thread: it starts in a
few milliseconds with everything already imported, and no lock another thread held can be inherited held. Anywhere
else it is spawned: a fresh interpreter, about half a second before it replays.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from soulfra.errors import CodecError, ConflictError, HistoryIntegrityError
from soulfra.world import World, schedule
from soulfra.world.encoding import state_hash
from soulfra.world.events import Event, LoopSealed
from soulfra.world.inputs import Input
from soulfra.world.model import WorldState

if TYPE_CHECKING:
    from soulfra.store.ports import Store

__all__ = [
    "PARALLEL_MIN_WORK", "START_WORK", "Blob", "Mismatch", "Span", "SpanResult", "available_cpus", "check_blobs",
    "replay_span", "replay_spans", "start_method",
]  # fmt: skip

# What a span's process costs to start, by how it starts, in agent-ticks of replay (1,000 agents replay about 280
# ticks a second on one core): spawned, about 0.5 s (an interpreter importing numpy, SQLAlchemy and the world);
# forked, about 30 ms (opening the database and reading the snapshot it starts from). The first span, replayed in
# this process while the others start, is given that much more of the history.
START_WORK = {"fork": 10_000, "spawn": 150_000}
# Agent-ticks of replay below which one process does it all: twice what starting another costs.
PARALLEL_MIN_WORK = {method: 2 * work for method, work in START_WORK.items()}
PROGRESS_EVERY_S = 0.2  # how often the spans' progress is summed for ``on_tick``
# What CPython 3.12 and later warn of when it forks a process with other threads; it counts the threads of native
# libraries too (OpenBLAS's pool, which numpy starts), which hold no Python lock and stop themselves at a fork.
FORK_WARNING = r"This process \(pid=\d+\) is multi-threaded"

Expected = Mapping[int, tuple[str, str]]  # tick -> (the stored state hash there, the snapshot's type)
Blob = tuple[int, int, str]  # a stored snapshot to read back: (its id, its tick, its stored state hash)


@dataclass(slots=True)
class Mismatch:
    tick: int
    stored: str
    replayed: str
    what: str


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    snapshot_id: int | None = None  # the stored snapshot it starts from; None: the history's base


@dataclass(slots=True)
class SpanResult:
    state_hash: str  # of the state the span ended at ("" if it could not start)
    checked: int  # stored hashes compared
    mismatches: list[Mismatch] = field(default_factory=list)
    unreadable: list[Mismatch] = field(default_factory=list)  # stored blobs of its stretch that do not read back


def available_cpus() -> int:
    """The CPUs this process may run on: ``verify``'s processes by default."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def start_method() -> str:
    """How a span's process starts here: ``"fork"`` where the platform forks and this process runs no other Python
    thread, else ``"spawn"``."""
    forks = "fork" in multiprocessing.get_all_start_methods()
    return "fork" if forks and threading.active_count() == 1 else "spawn"


def check_blobs(store: Store, blobs: Iterable[Blob]) -> list[Mismatch]:
    """Read back each stored snapshot of ``blobs``: one that is another state's bytes, or none at all, is a
    mismatch."""
    found = []
    for snapshot_id, tick, stored in blobs:
        try:
            store.snapshots.load_raw(snapshot_id)
        except (HistoryIntegrityError, ConflictError, CodecError) as exc:
            found.append(Mismatch(tick=tick, stored=stored, replayed="unreadable", what=exc.detail))
    return found


def replay_span(
    world: World,
    by_tick: Mapping[int, Any],
    end: int,
    expected: Expected,
    on_tick: Callable[[int], None] | None = None,
) -> SpanResult:
    """Run ``world`` to ``end`` on the inputs ``by_tick``, comparing its hash wherever ``expected`` holds one."""
    result = SpanResult(state_hash="", checked=0)
    hashed_at = -1
    while world.tick < end:
        events = world.step(by_tick.get(world.tick, ()))
        if on_tick is not None:
            on_tick(world.tick)
        stored = expected.get(world.tick)
        if stored is not None:
            result.checked += 1
            result.state_hash, hashed_at = _sealed_hash(events, world.tick) or state_hash(world.state), world.tick
            if result.state_hash != stored[0]:
                what = f"{stored[1]} snapshot"
                result.mismatches.append(
                    Mismatch(tick=world.tick, stored=stored[0], replayed=result.state_hash, what=what)
                )
    if hashed_at != world.tick:
        result.state_hash = state_hash(world.state)
    return result


def replay_spans(
    store: Store,
    url: str,
    instance_id: str,
    base: WorldState,
    spans: list[Span],
    expected: Expected,
    first_inputs: Iterable[Input],
    *,
    blobs: Iterable[Blob] = (),
    method: str = "spawn",
    on_tick: Callable[[int], None] | None = None,
) -> list[SpanResult]:
    """The first span replayed in this process (from ``base`` on ``first_inputs``, its share of the input log), each
    other in a process of its own started by ``method`` (``start_method``), all at once; their results in the order
    of the spans. Each span reads back the ``blobs`` of its stretch (this one through ``store``, the others through
    ``url``): the first those up to its end, each other those after its start up to its end, the last all after its
    start."""
    context = multiprocessing.get_context(method)
    done = context.Array("q", len(spans), lock=False)  # ticks each span has replayed
    shares: list[list[Blob]] = [[] for _ in spans]
    for blob in blobs:
        shares[sum(1 for span in spans[1:] if span.start < blob[1])].append(blob)
    with ProcessPoolExecutor(
        max_workers=max(1, len(spans) - 1), mp_context=context, initializer=_share_progress, initargs=(done,)
    ) as pool:
        with _starting(method):
            futures = [
                pool.submit(_replay_stored_span, url, instance_id, at, span, expected, shares[at])
                for at, span in enumerate(spans[1:], start=1)
            ]
        first, origin = spans[0], base.tick  # the world replayed here advances ``base`` itself

        def progress(tick: int) -> None:
            done[0] = tick - first.start
            if on_tick is not None:
                on_tick(origin + sum(done))

        try:
            here = replay_span(World(base), schedule(first_inputs), first.end, expected, progress)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        here.unreadable = check_blobs(store, shares[0])
        _wait_reporting(futures, lambda: origin + sum(done), on_tick)
        return [here, *(future.result() for future in futures)]


@contextlib.contextmanager
def _starting(method: str) -> Iterator[None]:
    """Where the span processes start (the pool starts them as its work is submitted): a fork, chosen only with no
    other Python thread here (``start_method``), without CPython's warning of native threads (``FORK_WARNING``)."""
    with warnings.catch_warnings():
        if method == "fork":
            warnings.filterwarnings("ignore", message=FORK_WARNING, category=DeprecationWarning)
        yield


def _wait_reporting(futures: list[Future[SpanResult]], reached: Callable[[], int], on_tick: Any) -> None:
    pending = set(futures)
    while pending:
        finished, pending = wait(pending, timeout=PROGRESS_EVERY_S, return_when=FIRST_EXCEPTION)
        if any(future.exception() is not None for future in finished):
            return  # the caller's ``result()`` raises it
        if on_tick is not None:
            on_tick(reached())


_progress: Any = None  # in a span's process: the shared array of ticks replayed per span


def _share_progress(done: Any) -> None:
    global _progress  # noqa: PLW0603 - set once per process, by the pool's initializer
    _progress = done


def _replay_stored_span(
    url: str, instance_id: str, at: int, span: Span, expected: Expected, blobs: list[Blob]
) -> SpanResult:
    """One span, in a process of its own: the stored snapshot it starts from, its inputs, read from the database at
    ``url``, the replay, and the read back of its ``blobs``."""
    from soulfra.store import SqlStore  # noqa: PLC0415 - the world layer's processes import what they use

    store = SqlStore.open(url, migrate=False)
    try:
        try:
            if span.snapshot_id is None:
                raise HistoryIntegrityError("a span after the first starts from a stored snapshot, and this has none")
            state = store.snapshots.load(span.snapshot_id)[1]
        except (HistoryIntegrityError, ConflictError, CodecError) as exc:
            unread = Mismatch(tick=span.start, stored="", replayed="unreadable", what=f"cannot start here: {exc}")
            return SpanResult(state_hash="", checked=0, mismatches=[unread], unreadable=check_blobs(store, blobs))
        inputs = store.inputs.read(instance_id, from_tick=span.start, to_tick=span.end)

        def progress(tick: int) -> None:
            _progress[at] = tick - span.start

        result = replay_span(World(state), schedule(s.input for s in inputs), span.end, expected, progress)
        result.unreadable = check_blobs(store, blobs)
        return result
    finally:
        store.close()


def _sealed_hash(events: list[Event], tick: int) -> str:
    """The state hash a step that ended a loop recorded in its ``LoopSealed`` event (sealing is the last thing a step
    does, so it is the hash of the state the step left at ``tick``), or "" if the step sealed no loop."""
    for event in reversed(events):
        if isinstance(event, LoopSealed) and event.tick == tick - 1:
            return event.state_hash
    return ""
