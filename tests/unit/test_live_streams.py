"""The live stream's fan-out (one surface reader per process, clients behind the ring told what they missed, every
stream ended at close), where a stream starts (from now unless told, ``after=0`` replays what is kept, a resume goes
on after its id) and the stop guard that ends a stuck stop (a second signal, or a stop past its deadline)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from soulfra.api.gateway import Gateway
from soulfra.api.stream import LiveStreams
from soulfra.bus import InMemoryBus
from soulfra.platforms.base import encode, events_subject
from soulfra.platforms.surface import SurfacePlatform
from soulfra.serving import _StopGuard

DEADLINE_S = 10.0
INSTANCE = "streamed"


class Counted(InMemoryBus):
    """The in-memory bus, counting the surface stream reads it carries."""

    def __init__(self) -> None:
        super().__init__()
        self.stream_reads = 0

    async def request(self, subject: str, payload: bytes, *, timeout: float) -> bytes:
        if subject.endswith(".surface.stream"):
            self.stream_reads += 1
        return await super().request(subject, payload, timeout=timeout)


async def publish_ticks(bus: InMemoryBus, ticks: range) -> None:
    for tick in ticks:
        event = {"kind": "post_made", "tick": tick, "agent": "arty", "topic": "trust"}
        await bus.publish(
            events_subject(INSTANCE), encode({"tick": tick, "after": tick + 1, "events": [event], "vibe": None})
        )


def parse(chunk: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) of each event in ``chunk``; ``retry`` and comment lines are left out."""
    parsed = []
    for block in chunk.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "data" in fields:
            parsed.append((fields.get("event", "message"), json.loads(fields["data"])))
    return parsed


async def collect(stream: AsyncIterator[bytes], count: int) -> list[tuple[str, dict[str, Any]]]:
    """Events of ``stream`` until ``count`` numbered ones have come (``missed`` ones kept too)."""
    events: list[tuple[str, dict[str, Any]]] = []
    async with asyncio.timeout(DEADLINE_S):
        while sum(1 for kind, _ in events if kind != "missed") < count:
            events.extend(parse(await anext(stream)))
    return events


@pytest.fixture
async def world(anyio_backend: str) -> AsyncIterator[tuple[Counted, SurfacePlatform, LiveStreams]]:
    bus = Counted()
    surface = SurfacePlatform(INSTANCE, bus, stream=64)
    await surface.start()
    streams = LiveStreams(Gateway(bus, INSTANCE))
    try:
        yield bus, surface, streams
    finally:
        streams.close()
        await surface.stop()
        await bus.close()


@pytest.mark.anyio
async def test_many_clients_share_one_reader_of_the_surface(
    world: tuple[Counted, SurfacePlatform, LiveStreams],
) -> None:
    bus, _surface, streams = world
    clients = [streams.events(INSTANCE, 0) for _ in range(50)]
    for client in clients:
        assert await anext(client) == b"retry: 1000\n\n"
    await publish_ticks(bus, range(10))
    received = await asyncio.gather(*(collect(client, 10) for client in clients))
    for events in received:
        assert [data["seq"] for _, data in events] == list(range(1, 11))
        assert all(kind == "agent:reflection" for kind, _ in events)
    # One long poll of the surface per batch for all 50 clients, not one per client.
    assert bus.stream_reads < 50
    for client in clients:
        await client.aclose()


@pytest.mark.anyio
async def test_a_client_behind_the_ring_is_told_what_it_missed(
    world: tuple[Counted, SurfacePlatform, LiveStreams],
) -> None:
    bus, surface, streams = world
    await publish_ticks(bus, range(200))  # the surface keeps the last 64
    async with asyncio.timeout(DEADLINE_S):
        while surface.tick < 200:
            await asyncio.sleep(0.001)
    client = streams.events(INSTANCE, 3)
    await anext(client)
    events = await collect(client, 64)
    assert events[0] == ("missed", {"count": 200 - 64 - 3})
    assert [data["seq"] for kind, data in events[1:]] == list(range(137, 201))
    await client.aclose()


@pytest.mark.anyio
async def test_a_surface_that_starts_its_numbers_again_takes_its_clients_back_to_the_start(
    world: tuple[Counted, SurfacePlatform, LiveStreams],
) -> None:
    bus, surface, streams = world
    client = streams.events(INSTANCE, 0)
    await anext(client)
    await publish_ticks(bus, range(30))
    assert [data["seq"] for _, data in await collect(client, 30)][-1] == 30
    await surface.stop()  # a revert relaunches the instance: its new surface numbers from 1 again
    again = SurfacePlatform(INSTANCE, bus, stream=64)
    await again.start()
    try:
        await publish_ticks(bus, range(30, 35))
        events = await collect(client, 6)
        assert events[0][0] == "restarted"
        assert [data["seq"] for kind, data in events[1:]] == [1, 2, 3, 4, 5]
        await client.aclose()
        async with asyncio.timeout(DEADLINE_S):  # nobody follows it now: its ring is let go
            while streams._feeds:
                await asyncio.sleep(0.01)
    finally:
        await again.stop()


async def projected(surface: SurfacePlatform, ticks: int) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while surface.tick < ticks:
            await asyncio.sleep(0.001)


async def opening(stream: AsyncIterator[bytes]) -> int:
    """The position a stream that starts from now goes on after: its bare ``id:`` line, which comes before any
    event."""
    assert await anext(stream) == b"retry: 1000\n\n"
    async with asyncio.timeout(DEADLINE_S):
        line = await anext(stream)
    assert line.startswith(b"id: ") and line.endswith(b"\n\n") and b"data" not in line, line
    return int(line[4:])


@pytest.mark.anyio
async def test_a_client_that_names_no_position_gets_only_what_comes_after_it_arrived(
    world: tuple[Counted, SurfacePlatform, LiveStreams],
) -> None:
    bus, surface, streams = world
    await publish_ticks(bus, range(20))
    await projected(surface, 20)
    client = streams.events(INSTANCE, None)  # the first client: its feed reads the surface for the first time
    assert await opening(client) == 20
    await publish_ticks(bus, range(20, 23))
    assert [data["seq"] for _, data in await collect(client, 3)] == [21, 22, 23]
    await client.aclose()


@pytest.mark.anyio
async def test_a_client_from_now_joins_a_feed_others_follow_at_its_latest_event(
    world: tuple[Counted, SurfacePlatform, LiveStreams],
) -> None:
    bus, _surface, streams = world
    early = streams.events(INSTANCE, 0)
    await anext(early)
    await publish_ticks(bus, range(30))
    assert [data["seq"] for _, data in await collect(early, 30)][-1] == 30  # the feed holds 1..30
    late = streams.events(INSTANCE, None)
    assert await opening(late) == 30
    await publish_ticks(bus, range(30, 32))
    assert [data["seq"] for _, data in await collect(late, 2)] == [31, 32]
    assert [data["seq"] for _, data in await collect(early, 2)] == [31, 32]
    for client in (early, late):
        await client.aclose()


@pytest.mark.anyio
async def test_after_zero_replays_every_event_still_kept(world: tuple[Counted, SurfacePlatform, LiveStreams]) -> None:
    bus, surface, streams = world
    await publish_ticks(bus, range(20))
    await projected(surface, 20)
    client = streams.events(INSTANCE, 0)
    await anext(client)
    assert [data["seq"] for _, data in await collect(client, 20)] == list(range(1, 21))
    await client.aclose()


@pytest.mark.anyio
async def test_a_client_from_now_that_reconnects_at_its_opening_id_loses_and_repeats_nothing(
    world: tuple[Counted, SurfacePlatform, LiveStreams],
) -> None:
    """Events that come between the stream's opening and its first read, while its client is away, are all there
    when it comes back with the ``Last-Event-ID`` its opening set, once each, and none from before it arrived."""
    bus, surface, streams = world
    await publish_ticks(bus, range(10))
    await projected(surface, 10)
    client = streams.events(INSTANCE, None)
    now = await opening(client)
    assert now == 10
    await publish_ticks(bus, range(10, 15))
    await projected(surface, 15)
    await client.aclose()  # gone before reading any event
    again = streams.events(INSTANCE, now)  # what a browser sends back: Last-Event-ID is the opening id
    await anext(again)
    first = [data["seq"] for _, data in await collect(again, 5)]
    assert first == [11, 12, 13, 14, 15]
    await again.aclose()
    resumed = streams.events(INSTANCE, first[2])  # and from an event it did read, on after it
    await anext(resumed)
    assert [data["seq"] for _, data in await collect(resumed, 2)] == [14, 15]
    await resumed.aclose()


@pytest.mark.anyio
async def test_close_ends_every_stream(world: tuple[Counted, SurfacePlatform, LiveStreams]) -> None:
    _bus, _surface, streams = world
    clients = [streams.events(INSTANCE, 0) for _ in range(5)]
    for client in clients:
        await anext(client)
    waiting = [asyncio.ensure_future(anext(client)) for client in clients]
    await asyncio.sleep(0)
    streams.close()
    for ended in await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), DEADLINE_S):
        assert isinstance(ended, StopAsyncIteration)


# -- the stop guard ------------------------------------------------------------------------------------------------


class Exits:
    def __init__(self) -> None:
        self.codes: list[int] = []
        self.called = threading.Event()

    def __call__(self, code: int) -> None:
        self.codes.append(code)
        self.called.set()


def test_a_second_signal_ends_the_process_and_the_first_does_not() -> None:
    exits = Exits()
    guard = _StopGuard(60.0, exit=exits)
    guard.signalled(signal.SIGTERM)
    assert exits.codes == []
    guard.signalled(signal.SIGINT)
    assert exits.codes == [1]


def test_signals_after_the_server_stopped_are_not_counted() -> None:
    """uvicorn raises a captured SIGINT again once it has stopped; that is not a second request to stop."""
    exits = Exits()
    guard = _StopGuard(60.0, exit=exits)
    guard.signalled(signal.SIGINT)
    guard.finished()
    guard.signalled(signal.SIGINT)
    assert exits.codes == []


def test_a_stop_past_its_deadline_ends_the_process() -> None:
    exits = Exits()
    guard = _StopGuard(0.05, exit=exits)
    read, write = os.pipe()
    watcher = threading.Thread(target=guard._watch, args=(read,), daemon=True)
    watcher.start()
    try:
        os.write(write, bytes([signal.SIGTERM]))  # what the signal wakeup fd carries for one SIGTERM
        assert exits.called.wait(DEADLINE_S)
        assert exits.codes == [1]
    finally:
        watcher.join(DEADLINE_S)
        os.close(read)
        os.close(write)
