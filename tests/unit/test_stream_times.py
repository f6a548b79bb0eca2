"""Each stream item carries ``at_ms``, the wall-clock time its tick was done, from the runtime's tick message to the
surface's stream (so a browser can measure tick-to-screen latency); the world's own events are untouched by it, and
a tick message without one (an older runtime) gives items without it."""

from __future__ import annotations

import asyncio
import time

import pytest

from soulfra.bus import InMemoryBus
from soulfra.platforms.base import encode, events_subject
from soulfra.platforms.surface import SurfacePlatform

INSTANCE = "timed"
pytestmark = pytest.mark.anyio


async def test_stream_items_carry_the_tick_s_at_ms(anyio_backend: str) -> None:
    bus = InMemoryBus()
    surface = SurfacePlatform(INSTANCE, bus)
    await surface.start()
    try:
        for tick, at_ms in ((0, 1_700_000_000_123), (1, None)):
            event = {"kind": "post_made", "tick": tick, "agent": "arty", "topic": "trust"}
            message = {"tick": tick, "after": tick + 1, "events": [event], "vibe": None}
            if at_ms is not None:
                message["at_ms"] = at_ms
            await bus.publish(events_subject(INSTANCE), encode(message))
        before = time.time_ns() // 1_000_000
        await bus.publish(events_subject(INSTANCE) + ".mirror", encode({"kind": "anomaly_detected", "tick": 2}))
        reply = await asyncio.wait_for(surface.read_stream({"after": 0, "wait_ms": 0}), 10)
        while len(reply["items"]) < 3:
            reply = await asyncio.wait_for(surface.read_stream({"after": 0, "wait_ms": 1000}), 10)
        first, second, platform = reply["items"]
        assert first["at_ms"] == 1_700_000_000_123
        assert "at_ms" not in first["data"]  # the world's event is as the world made it
        assert "at_ms" not in second
        assert before <= platform["at_ms"] <= time.time_ns() // 1_000_000  # a platform's own: when it arrived
    finally:
        await surface.stop()
