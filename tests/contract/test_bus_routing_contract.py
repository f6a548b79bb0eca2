"""The routing half of the bus contract (``soulfra.bus.port.RoutingBus.serve_routed``), on every adapter: one
responder answers for every subject of a pattern, and is given each request's subject."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import pytest

from soulfra.bus.port import RoutingBus
from soulfra.errors import BusTimeoutError, NoRespondersError, NotFoundError

from .test_bus_contract import DEADLINE_S, Buses, Inbox, token

Pair = tuple[RoutingBus, RoutingBus]


@pytest.fixture(params=["memory", "nats"])
async def pair(request: pytest.FixtureRequest, anyio_backend: str) -> AsyncIterator[Pair]:
    """Two clients of one bus (the same object in memory, two connections on NATS); both adapters route."""
    opened = Buses(request.param)
    try:
        yield cast(RoutingBus, await opened.open()), cast(RoutingBus, await opened.open())
    finally:
        await opened.close()


@pytest.mark.anyio
async def test_one_responder_answers_every_subject_of_its_pattern(pair: Pair) -> None:
    bus, peer = pair
    world = token()

    async def answer(subject: str, payload: bytes) -> bytes:
        return subject.encode() + b"|" + payload

    await bus.serve_routed(f"soulfra.{world}.*.*", answer)
    for op in ("runtime.status", "surface.view", "mirror.seeds"):
        subject = f"soulfra.{world}.{op}"
        assert await peer.request(subject, b"x", timeout=DEADLINE_S) == subject.encode() + b"|x"
    with pytest.raises(NoRespondersError):  # three parts: not of the pattern
        await peer.request(f"soulfra.{world}.control", b"", timeout=DEADLINE_S)


@pytest.mark.anyio
async def test_a_routed_refusal_crosses_the_bus_as_itself_and_unsubscribing_ends_it(pair: Pair) -> None:
    bus, peer = pair
    world = token()

    async def refuse(subject: str, payload: bytes) -> bytes:
        raise NotFoundError(f"nothing at {subject}")

    routed = await bus.serve_routed(f"{world}.>", refuse)
    with pytest.raises(NotFoundError) as info:
        await peer.request(f"{world}.a.b", b"", timeout=DEADLINE_S)
    assert info.value.detail == f"nothing at {world}.a.b"
    await routed.unsubscribe()
    await routed.unsubscribe()
    with pytest.raises(NoRespondersError):
        await peer.request(f"{world}.a.b", b"", timeout=DEADLINE_S)


@pytest.mark.anyio
async def test_a_publish_on_a_routed_subject_is_not_answered_and_still_reaches_subscribers(pair: Pair) -> None:
    bus, peer = pair
    world = token()
    asked: list[str] = []

    async def answer(subject: str, payload: bytes) -> bytes:
        asked.append(subject)
        return b"ok"

    inbox = Inbox()
    await bus.serve_routed(f"{world}.*", answer)
    await peer.subscribe(f"{world}.note", inbox.handler)
    await bus.publish(f"{world}.note", b"published")
    await inbox.wait_for(b"published")
    assert await peer.request(f"{world}.ask", b"", timeout=DEADLINE_S) == b"ok"
    assert asked == [f"{world}.ask"]


@pytest.mark.anyio
async def test_a_declined_request_is_left_to_whoever_else_answers_it(pair: Pair) -> None:
    """A publish on an event stream is a request on NATS, acknowledged by JetStream: a routed responder over the same
    subjects that declines it leaves the acknowledgement alone. A request nothing else answers finds no responder
    (memory) or none in time (NATS)."""
    bus, peer = pair
    world = token()
    asked: list[str] = []

    async def decline(subject: str, payload: bytes) -> bytes | None:
        asked.append(subject)
        return None

    inbox = Inbox()
    await bus.serve_routed(f"soulfra.{world}.*.*", decline)
    await peer.subscribe(f"soulfra.{world}.events.mirror", inbox.handler)
    for number in range(20):
        await bus.publish(f"soulfra.{world}.events.mirror", b"%d" % number)  # each one stored and acknowledged
    await inbox.wait_until(lambda: len(inbox.payloads) == 20)
    with pytest.raises((NoRespondersError, BusTimeoutError)):
        await peer.request(f"soulfra.{world}.runtime.status", b"", timeout=0.5)
    assert asked[-1] == f"soulfra.{world}.runtime.status"
