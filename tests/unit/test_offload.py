"""``soulfra.offload``: blocking calls leave the event loop one way only, a lane keeps a writer's calls in the order
they were asked for, and a cancelled caller does not let its lane go while its call still runs."""

from __future__ import annotations

import ast
import asyncio
import contextvars
import threading
from pathlib import Path

import pytest

import soulfra
from soulfra.offload import Lane, off_loop

SRC = Path(soulfra.__file__).parent
WAIT_S = 10.0  # a deadline for threads the test holds, never a sleep

_current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="none")


def test_only_the_offload_module_hands_work_to_threads() -> None:
    """``asyncio.to_thread``, ``run_in_executor`` and ``anyio.to_thread`` appear nowhere else in ``soulfra``."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "offload.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
            if name in {"to_thread", "run_in_executor", "run_sync"}:
                offenders.append(f"{path.relative_to(SRC)}:{getattr(node, 'lineno', 0)} {name}")
    assert not offenders, "use soulfra.offload.off_loop (or a Lane) instead:\n" + "\n".join(offenders)


@pytest.mark.anyio
async def test_off_loop_runs_in_another_thread_with_the_callers_context() -> None:
    _current.set("caller")
    loop_thread = threading.get_ident()

    def where(suffix: str, *, twice: bool) -> tuple[int, str]:
        return threading.get_ident(), _current.get() + suffix * (2 if twice else 1)

    thread, seen = await off_loop(where, "!", twice=True)
    assert thread != loop_thread
    assert seen == "caller!!"


@pytest.mark.anyio
async def test_off_loop_raises_what_the_call_raised() -> None:
    def fails() -> None:
        raise KeyError("nope")

    with pytest.raises(KeyError, match="nope"):
        await off_loop(fails)


@pytest.mark.anyio
async def test_a_lane_runs_its_calls_one_at_a_time_in_the_order_asked() -> None:
    lane = Lane()
    first_started, release_first = threading.Event(), threading.Event()
    order: list[str] = []

    def first() -> None:
        first_started.set()
        assert release_first.wait(WAIT_S)
        order.append("first")

    def later(name: str) -> None:
        order.append(name)

    running = asyncio.create_task(lane.run(first))
    assert await off_loop(first_started.wait, WAIT_S)
    queued = [asyncio.create_task(lane.run(later, name)) for name in ("second", "third")]
    await asyncio.sleep(0)  # let them queue behind the first call: none may start while it runs
    assert lane.busy
    assert order == []
    release_first.set()
    await asyncio.gather(running, *queued)
    assert order == ["first", "second", "third"]
    assert not lane.busy


@pytest.mark.anyio
async def test_a_turn_holds_the_lane_across_steps_on_and_off_the_loop() -> None:
    lane = Lane()
    order: list[str] = []
    async with lane.turn():
        waiting = asyncio.create_task(lane.run(order.append, "queued"))
        order.append("on the loop")
        await off_loop(order.append, "off the loop")
        await asyncio.sleep(0)
        assert order == ["on the loop", "off the loop"]
    await waiting
    assert order == ["on the loop", "off the loop", "queued"]


@pytest.mark.anyio
async def test_a_cancelled_caller_keeps_the_lane_until_its_call_has_ended() -> None:
    """A thread cannot be stopped: the write a cancelled caller started must end before the next one starts."""
    lane = Lane()
    started, release = threading.Event(), threading.Event()
    order: list[str] = []

    def slow_write() -> None:
        started.set()
        assert release.wait(WAIT_S)
        order.append("cancelled caller's write")

    caller = asyncio.create_task(lane.run(slow_write))
    assert await off_loop(started.wait, WAIT_S)
    caller.cancel()
    follower = asyncio.create_task(lane.run(order.append, "next write"))
    await asyncio.sleep(0)
    assert not caller.done()  # still waiting for its call to end
    assert order == []
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await follower
    assert order == ["cancelled caller's write", "next write"]
