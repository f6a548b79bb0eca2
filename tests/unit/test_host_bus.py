"""``HostBus``, the bus of a cluster host: its worlds' event streams stay in the process (and still reach readers
elsewhere), their ops are answered behind one subscription a world, other subjects are subscribed to once for all
their subscribers here. Two hosts and a gateway share one in-memory bus here, as they share NATS in a cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from soulfra.bus import InMemoryBus, Message, Responder
from soulfra.cluster.host_bus import HostBus
from soulfra.errors import NoRespondersError, NotFoundError
from soulfra.platforms.base import PLATFORMS, control_subject, events_subject, op_subject
from soulfra.platforms.instance import FourPlatformInstance, InstanceSettings
from soulfra.store import SqlStore

DEADLINE_S = 10.0


class Inbox:
    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self._changed = asyncio.Event()

    async def handler(self, message: Message) -> None:
        self.payloads.append(message.payload)
        self._changed.set()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(DEADLINE_S):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[InMemoryBus, HostBus, HostBus]]:
    """The cluster's bus (the gateway's view of it) and two hosts on it."""
    remote = InMemoryBus()
    first, second = HostBus(remote, InMemoryBus()), HostBus(remote, InMemoryBus())
    try:
        yield remote, first, second
    finally:
        await first.local.close()
        await second.local.close()
        await remote.close()


def _remote_count(bus: InMemoryBus) -> int:
    return sum(map(len, bus._subscriptions.values())) + sum(map(len, bus._services.values())) + len(bus._routed)


@pytest.mark.anyio
async def test_a_worlds_events_reach_its_host_in_order_and_readers_elsewhere(
    cluster: tuple[InMemoryBus, HostBus, HostBus],
) -> None:
    remote, host, _ = cluster
    here, elsewhere = Inbox(), Inbox()
    await host.subscribe(events_subject("w"), here.handler)
    await remote.subscribe(events_subject("w"), elsewhere.handler)
    assert _remote_count(remote) == 1  # the reader elsewhere's: the host's own stays in the process
    sent = [b"%d" % n for n in range(20)]
    for payload in sent:
        await host.publish(events_subject("w"), payload)
    await here.wait_until(lambda: len(here.payloads) == 20)
    await elsewhere.wait_until(lambda: len(elsewhere.payloads) == 20)
    assert here.payloads == sent
    assert elsewhere.payloads == sent


@pytest.mark.anyio
async def test_a_worlds_ops_are_answered_wherever_asked_behind_one_subscription(
    cluster: tuple[InMemoryBus, HostBus, HostBus],
) -> None:
    remote, host, other = cluster

    def answer(name: str) -> Responder:
        async def respond(payload: bytes) -> bytes:
            if payload == b"missing":
                raise NotFoundError(f"no {name}")
            return name.encode()

        return respond

    served = [await host.serve(op_subject("w", "runtime", op), answer(op)) for op in ("status", "view", "pause")]
    assert _remote_count(remote) == 1
    for asker in (remote, host, other):  # the gateway, the host itself (no round trip), another host
        assert await asker.request(op_subject("w", "runtime", "view"), b"", timeout=DEADLINE_S) == b"view"
        with pytest.raises(NotFoundError, match="no status"):
            await asker.request(op_subject("w", "runtime", "status"), b"missing", timeout=DEADLINE_S)
    with pytest.raises(NoRespondersError):  # an op of the world that this host does not serve
        await remote.request(op_subject("w", "mirror", "seeds"), b"", timeout=DEADLINE_S)
    for service in served:
        await service.unsubscribe()
        await service.unsubscribe()
    assert _remote_count(remote) == 0
    with pytest.raises(NoRespondersError):
        await remote.request(op_subject("w", "runtime", "view"), b"", timeout=DEADLINE_S)


@pytest.mark.anyio
async def test_the_control_subject_is_subscribed_once_and_each_subscriber_gets_each_message_once(
    cluster: tuple[InMemoryBus, HostBus, HostBus],
) -> None:
    remote, host, _ = cluster
    inboxes = [Inbox() for _ in PLATFORMS]
    subs = [await host.subscribe(control_subject("w"), inbox.handler) for inbox in inboxes]
    assert _remote_count(remote) == 1
    await remote.publish(control_subject("w"), b"from the gateway")
    await host.publish(control_subject("w"), b"from the host")
    for inbox in inboxes:
        await inbox.wait_until(lambda inbox=inbox: len(inbox.payloads) >= 2)  # type: ignore[misc]
        assert sorted(inbox.payloads) == [b"from the gateway", b"from the host"]
    for sub in subs:
        await sub.unsubscribe()
    assert _remote_count(remote) == 0


@pytest.mark.anyio
async def test_a_four_platform_world_runs_on_a_host_and_answers_the_gateway(
    cluster: tuple[InMemoryBus, HostBus, HostBus], tmp_path: Path
) -> None:
    remote, host, _ = cluster
    store = SqlStore.open(f"sqlite:///{tmp_path / 's.db'}")
    instance = await FourPlatformInstance.open(store, host, InstanceSettings(instance_id="w", rate=None))
    try:
        assert _remote_count(remote) == 2  # the world's ops, and its control subject
        await instance.start_autonomous_operations(ticks=5)
        async with asyncio.timeout(DEADLINE_S):
            while instance.surface.tick < 5 or instance.mirror.tick < 5:  # projected from the events, in process
                await asyncio.sleep(0.01)
        status = await instance.bridge.cross_platform_status()
        assert {platform: "error" in reply for platform, reply in status.items()} == dict.fromkeys(PLATFORMS, False)
        reply = await remote.request(op_subject("w", "surface", "status"), b"{}", timeout=DEADLINE_S)
        assert b'"tick":5' in reply
    finally:
        await instance.close()
        store.close()
    assert _remote_count(remote) == 0


@pytest.mark.anyio
async def test_a_worlds_platform_events_are_left_to_the_stream_not_answered_as_ops(
    cluster: tuple[InMemoryBus, HostBus, HostBus],
) -> None:
    """The world's op subscription covers ``soulfra.<world>.events.<platform>`` too: it declines what comes there."""
    _, host, _ = cluster

    async def status(payload: bytes) -> bytes:
        return b"ok"

    await host.serve(op_subject("w", "runtime", "status"), status)
    assert await host._route(op_subject("w", "runtime", "status"), b"") == b"ok"
    assert await host._route(events_subject("w") + ".mirror", b"{}") is None
    with pytest.raises(NoRespondersError):
        await host._route(op_subject("w", "mirror", "seeds"), b"")
