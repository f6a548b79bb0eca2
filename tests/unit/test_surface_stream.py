"""The surface's stream waits under cancellation: stream clients come and go at any moment, and a reader cancelled
while it waits (repeatedly, as anyio's cancel scopes do) must leave the surface projecting and serving."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from soulfra.bus import InMemoryBus
from soulfra.platforms.base import encode, events_subject
from soulfra.platforms.surface import Changed, SurfacePlatform

DEADLINE_S = 10.0
INSTANCE = "cancelled"


async def publish_tick(bus: InMemoryBus, tick: int) -> None:
    event = {"kind": "post_made", "tick": tick, "agent": "arty", "topic": "trust"}
    await bus.publish(
        events_subject(INSTANCE), encode({"tick": tick, "after": tick + 1, "events": [event], "vibe": None})
    )


async def cancel_until_done(task: asyncio.Task[Any], turns: int) -> None:
    """After ``turns`` turns of the loop, cancel ``task`` again on every turn until it ends, as an anyio cancel scope
    (a stream response whose client went away) delivers its cancellation."""
    for _ in range(turns):
        await asyncio.sleep(0)
    while not task.done():
        task.cancel()
        await asyncio.sleep(0)


# (readers, turns of the loop before the tick, turns before the cancellations): moments at which readers are woken
# by a tick and cancelled while they wake. On asyncio.Condition with wait_for, (4, 3, 1) and (8, 2, 2) left a reader
# with "Lock is not acquired" and the lock held for good, so the surface stopped projecting.
MOMENTS = [(readers, before, cancel) for readers in (4, 8) for before in range(4) for cancel in range(3)]


@pytest.mark.anyio
@pytest.mark.parametrize(("readers", "before", "cancel"), MOMENTS)
async def test_readers_cancelled_while_they_wake_leave_the_surface_working(
    anyio_backend: str, readers: int, before: int, cancel: int
) -> None:
    bus = InMemoryBus()
    surface = SurfacePlatform(INSTANCE, bus)
    await surface.start()
    try:
        waiting = [asyncio.create_task(surface.read_stream({"after": 0, "wait_ms": 30_000})) for _ in range(readers)]
        for _ in range(before):
            await asyncio.sleep(0)
        await publish_tick(bus, 0)
        await asyncio.gather(*(cancel_until_done(task, cancel) for task in waiting[::2]))
        done, pending = await asyncio.wait(waiting, timeout=DEADLINE_S)
        assert not pending, "a reader never finished"
        for task in done:
            if not task.cancelled():
                assert task.exception() is None, repr(task.exception())
                assert [item["seq"] for item in task.result()["items"]] == [1]

        # The surface still projects ticks, and wakes a reader that waits for the next one.
        reader = asyncio.create_task(surface.read_stream({"after": 1, "wait_ms": 30_000}))
        await publish_tick(bus, 1)
        woke = await asyncio.wait_for(reader, DEADLINE_S)
        assert [item["seq"] for item in woke["items"]] == [2]
        view = await asyncio.wait_for(surface.view({"tick": 2, "wait_ms": 30_000}), DEADLINE_S)
        assert view["tick"] == 2
    finally:
        await asyncio.wait_for(surface.stop(), DEADLINE_S)
        await bus.close()


@pytest.mark.anyio
async def test_a_wait_times_out_is_cancelled_or_is_woken(anyio_backend: str) -> None:
    changed = Changed()
    state = {"value": 0}
    assert await changed.wait_until(lambda: state["value"] > 0, 0.01) is False

    waiter = asyncio.create_task(changed.wait_until(lambda: state["value"] > 0, DEADLINE_S))
    cancelled = asyncio.create_task(changed.wait_until(lambda: state["value"] > 0, DEADLINE_S))
    await asyncio.sleep(0)
    cancelled.cancel()
    state["value"] = 1
    changed.notify()
    assert await asyncio.wait_for(waiter, DEADLINE_S) is True
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    # A notify with nobody waiting is not remembered as a wake-up for a later, unmet condition.
    changed.notify()
    assert await changed.wait_until(lambda: state["value"] > 1, 0.01) is False


def test_the_readme_names_every_channel_and_the_kinds_each_one_carries() -> None:
    from pathlib import Path  # noqa: PLC0415

    from soulfra.platforms.surface import CHANNELS  # noqa: PLC0415

    text = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    for kind, channel in CHANNELS.items():
        assert f"`{channel}`" in text and f"`{kind}`" in text, (kind, channel)
    assert "`world:event` for every other kind" in text
