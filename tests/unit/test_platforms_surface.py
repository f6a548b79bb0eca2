"""The surface platform: it echoes a whisper after its tick, its stream is ordered and counts what was missed, and
echoes of an unknown agent are empty and not cached."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from soulfra.bus import InMemoryBus
from soulfra.platforms.base import encode, events_subject
from soulfra.platforms.surface import SurfacePlatform

from .platforms_support import Running, held
from .support import wait_until

DEADLINE_S = 10.0


@pytest.mark.anyio
async def test_the_surface_echoes_a_whisper_after_its_tick(make: Callable[..., Awaitable[Running]]) -> None:
    run = await make()
    ack = await run.bridge.send_whisper_to_runtime("the lanterns are lit", tick=2)
    await run.instance.start_autonomous_operations(ticks=5)

    async def echoed() -> bool:
        reply = await run.bridge.fetch_from_surface("echoes", {"agent": "*"})
        return any(e["kind"] == "whisper_heard" and e["text"] == "the lanterns are lit" for e in reply["echoes"])

    await wait_until("the surface echoes the whisper", echoed)
    reply = await run.bridge.fetch_from_surface("echoes", {"agent": "*"})
    heard = [e for e in reply["echoes"] if e["kind"] == "whisper_heard"]
    assert [e["tick"] for e in heard] == [ack.tick]


# -- the surface stream ------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_surface_stream_is_ordered_and_counts_what_was_missed(anyio_backend: str) -> None:
    bus = InMemoryBus()
    surface = SurfacePlatform("streamed", bus, stream=8)
    await surface.start()
    try:
        subject = events_subject("streamed")
        for tick in range(20):
            event = {"kind": "post_made", "tick": tick, "agent": "arty", "topic": "trust"}
            await bus.publish(subject, encode({"tick": tick, "after": tick + 1, "events": [event], "vibe": None}))
        await wait_until("the surface has projected 20 ticks", held(lambda: surface.tick == 20))

        whole = await surface.read_stream({"after": 0})
        assert whole["seq"] == 20
        assert whole["missed"] == 12
        assert [i["seq"] for i in whole["items"]] == list(range(13, 21))
        assert [i["tick"] for i in whole["items"]] == list(range(12, 20))
        assert {i["channel"] for i in whole["items"]} == {"agent:reflection"}
        tail = await surface.read_stream({"after": 17})
        assert (tail["missed"], [i["seq"] for i in tail["items"]]) == (0, [18, 19, 20])
        assert (await surface.read_stream({"after": 20}))["items"] == []

        waiting = asyncio.create_task(surface.read_stream({"after": 20, "wait_ms": 5000}))
        event = {"kind": "whisper_heard", "tick": 20, "agent": "*", "text": "late", "tone": "gentle"}
        await bus.publish(subject, encode({"tick": 20, "after": 21, "events": [event], "vibe": None}))
        woke = await asyncio.wait_for(waiting, DEADLINE_S)
        assert (woke["missed"], [i["kind"] for i in woke["items"]]) == (0, ["whisper_heard"])
    finally:
        await surface.stop()
        await bus.close()


@pytest.mark.anyio
async def test_the_surface_stream_of_a_running_instance_is_ordered(make: Callable[..., Awaitable[Running]]) -> None:
    run = await make()
    await run.instance.start_autonomous_operations(ticks=30)
    surface = run.instance.surface
    await wait_until("the surface caught up", held(lambda: surface.tick == 30))
    stream = await run.bridge.fetch_from_surface("stream", {"after": 0, "limit": 4096})
    seqs = [i["seq"] for i in stream["items"]]
    assert stream["missed"] == 0
    assert seqs == list(range(1, stream["seq"] + 1))
    ticks = [i["tick"] for i in stream["items"]]
    assert ticks == sorted(ticks)


@pytest.mark.anyio
async def test_echoes_of_an_unknown_agent_are_empty_and_not_cached(make: Callable[..., Awaitable[Running]]) -> None:
    run = await make()
    surface = run.instance.surface
    for n in range(50):
        reply = await run.bridge.fetch_from_surface("echoes", {"agent": f"nobody-{n}"})
        assert reply["echoes"] == []
    assert not any(isinstance(key[1], str) for key in surface._cache)
