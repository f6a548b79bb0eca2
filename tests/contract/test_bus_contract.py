"""The bus contract (``soulfra.bus.port.Bus``), run on every adapter: InMemoryBus and NatsBus.

NATS is expected at ``SOULFRA_TEST_NATS_URL`` (default nats://127.0.0.1:4222, with JetStream). When it is unreachable
the NATS half is skipped locally and failed when ``CI=true``. Each test uses subjects of its own (a uuid4 token), and
waits for conditions with a deadline, never for a fixed time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import NoReturn

import pytest

from soulfra import bus as bus_module
from soulfra.bus import Bus, InMemoryBus, Message, Responder, Subscription
from soulfra.bus.nats import NatsBus
from soulfra.errors import (
    BusError,
    BusTimeoutError,
    BusUnavailableError,
    InputError,
    NoRespondersError,
    NotFoundError,
    SoulfraError,
)

NATS_URL = os.environ.get("SOULFRA_TEST_NATS_URL", "nats://127.0.0.1:4222")
DEADLINE_S = 10.0
BAD_SUBJECTS = ["a b", "a..b", "", ".a", "a.", "a\tb"]


def _nats_unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"NATS is required when CI=true, but {reason}")
    pytest.skip(f"NATS unreachable: {reason}")


async def _connect_nats() -> NatsBus:
    try:
        return await NatsBus.connect(NATS_URL)
    except BusUnavailableError as exc:
        _nats_unavailable(exc.detail)


class Buses:
    """The buses of one test: ``open()`` gives another client of the same bus (the same object in memory)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.opened: list[Bus] = []
        self._memory = InMemoryBus()

    async def open(self) -> Bus:
        bus: Bus = self._memory if self.name == "memory" else await _connect_nats()
        self.opened.append(bus)
        return bus

    async def close(self) -> None:
        for bus in self.opened:
            await bus.close()
        await self._memory.close()


@pytest.fixture(params=["memory", "nats"])
async def buses(request: pytest.FixtureRequest, anyio_backend: str) -> AsyncIterator[Buses]:
    opened = Buses(request.param)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def bus(buses: Buses) -> Bus:
    return await buses.open()


@pytest.fixture
async def peer(buses: Buses, bus: Bus) -> Bus:
    """Another client of the bus ``bus`` is on: a second connection on NATS."""
    return await buses.open()


@pytest.fixture
async def nats_bus(anyio_backend: str) -> AsyncIterator[NatsBus]:
    bus = await _connect_nats()
    try:
        yield bus
    finally:
        await bus.close()


def token() -> str:
    return f"t{uuid.uuid4().hex}"


class Inbox:
    """A handler that records what it receives and lets a test wait for it with a deadline."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._changed = asyncio.Event()

    async def handler(self, message: Message) -> None:
        self.messages.append(message)
        self._changed.set()

    @property
    def payloads(self) -> list[bytes]:
        return [m.payload for m in self.messages]

    async def wait_until(self, condition: Callable[[], bool], timeout: float = DEADLINE_S) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def wait_for(self, payload: bytes) -> None:
        await self.wait_until(lambda: payload in self.payloads)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["event", "plain"])
async def test_publish_reaches_a_subscriber_in_order(bus: Bus, peer: Bus, kind: str) -> None:
    subject = f"soulfra.{token()}.events" if kind == "event" else f"{token()}.plain"
    inbox = Inbox()
    await bus.subscribe(subject, inbox.handler)
    sent = [f"m{i}".encode() for i in range(200)]
    for payload in sent:
        await peer.publish(subject, payload)
    await inbox.wait_until(lambda: len(inbox.messages) >= len(sent))
    await peer.publish(subject, b"end")
    await inbox.wait_for(b"end")
    assert inbox.payloads == [*sent, b"end"]
    assert {m.subject for m in inbox.messages} == {subject}


@pytest.mark.anyio
async def test_a_subscriber_receives_its_own_publishes(bus: Bus) -> None:
    subject = f"{token()}.self"
    inbox = Inbox()
    await bus.subscribe(subject, inbox.handler)
    await bus.publish(subject, b"hello")
    await inbox.wait_for(b"hello")
    assert inbox.messages == [Message(subject=subject, payload=b"hello")]


@pytest.mark.anyio
async def test_star_matches_exactly_one_part(bus: Bus, peer: Bus) -> None:
    tok = token()
    inbox = Inbox()
    await bus.subscribe(f"{tok}.*.x", inbox.handler)
    for subject in [f"{tok}.a.x", f"{tok}.a.b.x", f"{tok}.x", f"{tok}.a.y", f"{tok}.b.x", f"{tok}.a.x.y"]:
        await peer.publish(subject, subject.encode())
    await peer.publish(f"{tok}.end.x", b"end")
    await inbox.wait_for(b"end")
    assert [m.subject for m in inbox.messages] == [f"{tok}.a.x", f"{tok}.b.x", f"{tok}.end.x"]


@pytest.mark.anyio
async def test_greater_than_matches_one_or_more_trailing_parts(bus: Bus, peer: Bus) -> None:
    tok = token()
    inbox = Inbox()
    await bus.subscribe(f"{tok}.a.>", inbox.handler)
    for subject in [f"{tok}.a", f"{tok}.a.b", f"{tok}.b.c", f"{tok}.a.b.c.d", tok, f"{tok}.ab.c"]:
        await peer.publish(subject, subject.encode())
    await peer.publish(f"{tok}.a.end", b"end")
    await inbox.wait_for(b"end")
    assert [m.subject for m in inbox.messages] == [f"{tok}.a.b", f"{tok}.a.b.c.d", f"{tok}.a.end"]


@pytest.mark.anyio
async def test_wildcards_cover_event_streams(bus: Bus, peer: Bus) -> None:
    instance = token()
    everything, one_level = Inbox(), Inbox()
    await bus.subscribe(f"soulfra.{instance}.events.>", everything.handler)
    await bus.subscribe("soulfra.*.events.tick", one_level.handler)
    await peer.publish(f"soulfra.{instance}.events", b"bare")
    await peer.publish(f"soulfra.{instance}.events.tick", b"tick")
    await peer.publish(f"soulfra.{instance}.events.ritual.done", b"ritual")
    await everything.wait_for(b"ritual")
    await one_level.wait_for(b"tick")
    assert everything.payloads == [b"tick", b"ritual"]
    assert b"tick" in one_level.payloads


@pytest.mark.anyio
async def test_every_subscriber_gets_everything(bus: Bus, peer: Bus) -> None:
    subject = f"{token()}.fanout"
    first, second, third = Inbox(), Inbox(), Inbox()
    await bus.subscribe(subject, first.handler)
    await bus.subscribe(subject, second.handler)
    await peer.subscribe(subject, third.handler)
    sent = [b"%d" % i for i in range(50)]
    for payload in sent:
        await bus.publish(subject, payload)
    for inbox in (first, second, third):
        await inbox.wait_for(sent[-1])
        assert inbox.payloads == sent


@pytest.mark.anyio
async def test_unsubscribe_stops_delivery_and_is_idempotent(bus: Bus, peer: Bus) -> None:
    subject = f"{token()}.unsub"
    leaving, staying = Inbox(), Inbox()
    subscription = await bus.subscribe(subject, leaving.handler)
    await bus.subscribe(subject, staying.handler)
    await peer.publish(subject, b"before")
    await leaving.wait_for(b"before")
    await subscription.unsubscribe()
    await subscription.unsubscribe()
    await peer.publish(subject, b"after")
    await peer.publish(subject, b"end")
    await staying.wait_for(b"end")
    assert leaving.payloads == [b"before"]
    assert staying.payloads == [b"before", b"after", b"end"]


@pytest.mark.anyio
async def test_a_handler_may_unsubscribe_itself(bus: Bus, peer: Bus) -> None:
    subject = f"{token()}.once"
    seen: list[bytes] = []
    watcher = Inbox()
    holder: list[Subscription] = []
    unsubscribed = asyncio.Event()

    async def once(message: Message) -> None:
        seen.append(message.payload)
        try:
            await holder[0].unsubscribe()
        finally:
            unsubscribed.set()

    holder.append(await bus.subscribe(subject, once))
    await bus.subscribe(subject, watcher.handler)
    await peer.publish(subject, b"first")
    await asyncio.wait_for(unsubscribed.wait(), DEADLINE_S)
    for payload in (b"second", b"end"):
        await peer.publish(subject, payload)
    await watcher.wait_for(b"end")
    assert seen == [b"first"]
    assert watcher.payloads == [b"first", b"second", b"end"]


@pytest.mark.anyio
async def test_a_failing_handler_does_not_stop_later_deliveries(
    bus: Bus, peer: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    subject = f"{token()}.fragile"
    inbox = Inbox()

    async def fragile(message: Message) -> None:
        await inbox.handler(message)
        if message.payload == b"boom":
            raise RuntimeError("handler failure")

    await bus.subscribe(subject, fragile)
    with caplog.at_level(logging.ERROR, logger="soulfra.bus"):
        for payload in (b"one", b"boom", b"two", b"three"):
            await peer.publish(subject, payload)
        await inbox.wait_for(b"three")
    assert inbox.payloads == [b"one", b"boom", b"two", b"three"]
    assert any(record.exc_info and "handler failure" in str(record.exc_info[1]) for record in caplog.records)


@pytest.mark.anyio
async def test_request_reply_round_trip(bus: Bus, peer: Bus) -> None:
    subject = f"{token()}.echo"

    async def echo(payload: bytes) -> bytes:
        return b"echo:" + payload

    await bus.serve(subject, echo)
    for i in range(20):
        assert await peer.request(subject, b"%d" % i, timeout=DEADLINE_S) == b"echo:%d" % i
    assert await peer.request(subject, b"", timeout=DEADLINE_S) == b"echo:"


@pytest.mark.anyio
async def test_each_request_reaches_exactly_one_responder(bus: Bus, peer: Bus) -> None:
    subject = f"{token()}.single"
    answered: list[str] = []

    def responder(name: str) -> Responder:
        async def answer(payload: bytes) -> bytes:
            answered.append(name)
            return name.encode()

        return answer

    await bus.serve(subject, responder("a"))
    await peer.serve(subject, responder("b"))
    replies = [await peer.request(subject, b"?", timeout=DEADLINE_S) for _ in range(30)]
    assert len(answered) == 30
    assert set(replies) <= {b"a", b"b"}
    assert sorted(r.decode() for r in replies) == sorted(answered)


@pytest.mark.anyio
async def test_a_soulfra_error_crosses_the_bus_as_itself(bus: Bus, peer: Bus) -> None:
    subject = f"{token()}.missing"

    async def missing(payload: bytes) -> bytes:
        raise NotFoundError("no instance x")

    await bus.serve(subject, missing)
    with pytest.raises(NotFoundError) as info:
        await peer.request(subject, b"x", timeout=DEADLINE_S)
    assert info.value.detail == "no instance x"
    assert info.value.code == "not_found"


@pytest.mark.anyio
async def test_another_exception_becomes_an_internal_soulfra_error(bus: Bus, peer: Bus) -> None:
    subject = f"{token()}.buggy"
    calls = 0

    async def buggy(payload: bytes) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("secret internals")
        return b"fine"

    await bus.serve(subject, buggy)
    with pytest.raises(SoulfraError) as info:
        await peer.request(subject, b"", timeout=DEADLINE_S)
    assert type(info.value) is SoulfraError
    assert info.value.code == "soulfra_error"
    assert "ValueError" in info.value.detail
    assert "secret internals" not in info.value.detail
    assert await peer.request(subject, b"", timeout=DEADLINE_S) == b"fine"


@pytest.mark.anyio
async def test_no_responders(bus: Bus, peer: Bus) -> None:
    subject = f"{token()}.nobody"
    with pytest.raises(NoRespondersError):
        await peer.request(subject, b"", timeout=DEADLINE_S)

    async def ok(payload: bytes) -> bytes:
        return b"ok"

    service = await bus.serve(subject, ok)
    assert await peer.request(subject, b"", timeout=DEADLINE_S) == b"ok"
    await service.unsubscribe()
    await service.unsubscribe()
    with pytest.raises(NoRespondersError):
        await peer.request(subject, b"", timeout=DEADLINE_S)


@pytest.mark.anyio
async def test_a_slow_responder_times_out(bus: Bus, peer: Bus) -> None:
    subject = f"{token()}.slow"
    release = asyncio.Event()

    async def slow(payload: bytes) -> bytes:
        await release.wait()
        return b"late"

    await bus.serve(subject, slow)
    started = time.monotonic()
    try:
        with pytest.raises(BusTimeoutError):
            await peer.request(subject, b"", timeout=0.2)
        assert time.monotonic() - started < 5.0
    finally:
        release.set()


@pytest.mark.anyio
@pytest.mark.parametrize("subject", BAD_SUBJECTS)
async def test_bad_subjects_are_refused(bus: Bus, subject: str) -> None:
    async def ignore(message: Message) -> None:
        return None

    async def answer(payload: bytes) -> bytes:
        return payload

    with pytest.raises(InputError):
        await bus.publish(subject, b"")
    with pytest.raises(InputError):
        await bus.subscribe(subject, ignore)
    with pytest.raises(InputError):
        await bus.serve(subject, answer)
    with pytest.raises(InputError):
        await bus.request(subject, b"", timeout=1.0)


@pytest.mark.anyio
@pytest.mark.parametrize("subject", ["a.*", "a.>", "*", ">"])
async def test_wildcards_are_for_subscriptions_only(bus: Bus, subject: str) -> None:
    async def answer(payload: bytes) -> bytes:
        return payload

    with pytest.raises(InputError):
        await bus.publish(subject, b"")
    with pytest.raises(InputError):
        await bus.serve(subject, answer)
    with pytest.raises(InputError):
        await bus.request(subject, b"", timeout=1.0)


@pytest.mark.anyio
@pytest.mark.parametrize("pattern", ["a.>.b", "a.b*", "a.>>", "a.*.>.c"])
async def test_misplaced_wildcards_are_refused(bus: Bus, pattern: str) -> None:
    async def ignore(message: Message) -> None:
        return None

    with pytest.raises(InputError):
        await bus.subscribe(pattern, ignore)


@pytest.mark.anyio
async def test_a_closed_bus_refuses_work(buses: Buses) -> None:
    bus = await buses.open()
    subject = f"{token()}.closed"
    inbox = Inbox()
    subscription = await bus.subscribe(subject, inbox.handler)

    async def answer(payload: bytes) -> bytes:
        return payload

    await bus.close()
    await bus.close()
    await subscription.unsubscribe()
    with pytest.raises(BusError):
        await bus.publish(subject, b"")
    with pytest.raises(BusError):
        await bus.subscribe(subject, inbox.handler)
    with pytest.raises(BusError):
        await bus.serve(subject, answer)
    with pytest.raises(BusError):
        await bus.request(subject, b"", timeout=1.0)


@pytest.mark.anyio
async def test_an_unreachable_nats_server_is_reported(anyio_backend: str) -> None:
    started = time.monotonic()
    with pytest.raises(BusUnavailableError) as info:
        await bus_module.connect("nats://127.0.0.1:1")
    assert "nats://127.0.0.1:1" in info.value.detail
    assert time.monotonic() - started < 10.0


@pytest.mark.anyio
async def test_connect_picks_the_adapter_from_the_url(anyio_backend: str) -> None:
    memory = await bus_module.connect("memory://")
    assert isinstance(memory, InMemoryBus)
    await memory.close()


@pytest.mark.anyio
async def test_replay_reads_stored_events_in_order(nats_bus: NatsBus) -> None:
    instance = token()
    subject = f"soulfra.{instance}.events"
    sent = [b"e%d" % i for i in range(5)]
    for payload in sent:
        await nats_bus.publish(subject, payload)
    await nats_bus.publish(f"{instance}.not-stored", b"core")
    nested = [
        (f"soulfra.{instance}.events.{kind}", b"%s-%d" % (kind.encode(), i))
        for i in range(3)
        for kind in ("ritual", "vibe")
    ]
    for nested_subject, payload in nested:
        await nats_bus.publish(nested_subject, payload)

    stored = await nats_bus.replay(subject)
    assert [message.payload for _, message in stored] == sent
    assert {message.subject for _, message in stored} == {subject}
    sequences = [seq for seq, _ in stored]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == len(sequences)

    assert await nats_bus.replay(subject, start_seq=sequences[2]) == stored[2:]
    assert await nats_bus.replay(subject, limit=2) == stored[:2]
    assert await nats_bus.replay(subject, start_seq=sequences[-1] + 1) == []

    everything = await nats_bus.replay(f"soulfra.{instance}.events.>")  # a merge of two subjects, in stream order
    assert [(message.subject, message.payload) for _, message in everything] == nested
    later = [seq for seq, _ in everything]
    assert later == sorted(later) and later[0] > sequences[-1]
    assert await nats_bus.replay(f"soulfra.{instance}.events.>", start_seq=later[3], limit=2) == everything[3:5]
    assert await nats_bus.replay(f"soulfra.{instance}.events.*", limit=3) == everything[:3]
    assert await nats_bus.replay(f"soulfra.{token()}.events") == []


@pytest.mark.anyio
async def test_replay_refuses_what_is_not_an_event_stream(nats_bus: NatsBus) -> None:
    with pytest.raises(InputError):
        await nats_bus.replay(f"{token()}.plain")
    with pytest.raises(InputError):
        await nats_bus.replay("a b")
    with pytest.raises(InputError):
        await nats_bus.replay(f"soulfra.{token()}.events", start_seq=0)
    with pytest.raises(InputError):
        await nats_bus.replay(f"soulfra.{token()}.events", limit=0)


@pytest.mark.anyio
async def test_replayed_events_were_also_delivered_live(nats_bus: NatsBus) -> None:
    instance = token()
    subject = f"soulfra.{instance}.events"
    other = await _connect_nats()
    try:
        inbox = Inbox()
        await other.subscribe(subject, inbox.handler)
        for payload in (b"a", b"b", b"c"):
            await nats_bus.publish(subject, payload)
        await inbox.wait_for(b"c")
        assert inbox.payloads == [m.payload for _, m in await other.replay(subject)]
    finally:
        await other.close()
