"""Replaying a stretch of an instance's history and comparing the stored hashes on it: in this process, or several
stretches at once (``verify --workers``), the first in this process and each other in a process of its own that
reads the database itself.

A span runs from a start tick to an end tick. The first starts from the history's base; every other from the
stored snapshot at its start tick, read and checked against its hash there. A span compares the hash of every
stored snapshot after its start, up to and including its end: the snapshot the next span starts from is the last
one it checks, so together the spans check every stored hash against a replay.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from soulfra.errors import CodecError, ConflictError, HistoryIntegrityError
from soulfra.world import World, schedule
from soulfra.world.encoding import state_hash
from soulfra.world.events import Event, LoopSealed
from soulfra.world.inputs import Input
from soulfra.world.model import WorldState

__all__ = [
    "PARALLEL_MIN_WORK", "START_WORK", "Mismatch", "Span", "SpanResult", "available_cpus", "replay_span",
    "replay_spans",
]  # fmt: skip

# Agent-ticks of replay below which one process does it all: a process of its own takes about a second to start
# (1,000 agents replay about 200 ticks a second on one core).
PARALLEL_MIN_WORK = 300_000
# What a span's process costs to start (about 0.75 s), in agent-ticks of replay: the first span, replayed in this
# process while the others start, is given that much more of the history.
START_WORK = 150_000
PROGRESS_EVERY_S = 0.2  # how often the spans' progress is summed for ``on_tick``

Expected = Mapping[int, tuple[str, str]]  # tick -> (the stored state hash there, the snapshot's type)


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


def available_cpus() -> int:
    """The CPUs this process may run on: ``verify``'s processes by default."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
    url: str,
    instance_id: str,
    base: WorldState,
    spans: list[Span],
    expected: Expected,
    first_inputs: Iterable[Input],
    *,
    on_tick: Callable[[int], None] | None = None,
) -> list[SpanResult]:
    """The first span replayed in this process (from ``base`` on ``first_inputs``, its share of the input log), each
    other in a process of its own, all at once; their results in the order of the spans."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or connections carried over
    done = context.Array("q", len(spans), lock=False)  # ticks each span has replayed
    with ProcessPoolExecutor(
        max_workers=max(1, len(spans) - 1), mp_context=context, initializer=_share_progress, initargs=(done,)
    ) as pool:
        futures = [
            pool.submit(_replay_stored_span, url, instance_id, at, span, expected)
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
        _wait_reporting(futures, lambda: origin + sum(done), on_tick)
        return [here, *(future.result() for future in futures)]


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


def _replay_stored_span(url: str, instance_id: str, at: int, span: Span, expected: Expected) -> SpanResult:
    """One span, in a process of its own: the stored snapshot it starts from, its inputs, read from the database at
    ``url``, and the replay."""
    from soulfra.store import SqlStore  # noqa: PLC0415 - the world layer's processes import what they use

    store = SqlStore.open(url, migrate=False)
    try:
        try:
            if span.snapshot_id is None:
                raise HistoryIntegrityError("a span after the first starts from a stored snapshot, and this has none")
            state = store.snapshots.load(span.snapshot_id)[1]
        except (HistoryIntegrityError, ConflictError, CodecError) as exc:
            unread = Mismatch(tick=span.start, stored="", replayed="unreadable", what=f"cannot start here: {exc}")
            return SpanResult(state_hash="", checked=0, mismatches=[unread])
        inputs = store.inputs.read(instance_id, from_tick=span.start, to_tick=span.end)
    finally:
        store.close()

    def progress(tick: int) -> None:
        _progress[at] = tick - span.start

    return replay_span(World(state), schedule(s.input for s in inputs), span.end, expected, progress)


def _sealed_hash(events: list[Event], tick: int) -> str:
    """The state hash a step that ended a loop recorded in its ``LoopSealed`` event (sealing is the last thing a step
    does, so it is the hash of the state the step left at ``tick``), or "" if the step sealed no loop."""
    for event in reversed(events):
        if isinstance(event, LoopSealed) and event.tick == tick - 1:
            return event.state_hash
    return ""
