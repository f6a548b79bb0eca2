"""``HostBus``: the bus of a cluster host, whose worlds' four platforms all run in its one process.

A host runs hundreds of worlds, each with its four platforms, and on a plain NATS connection each world made about
forty subscriptions of its own (every op of every platform, the control subject, the event streams), each confirmed
by a round trip when the world opened, and every tick went to the server and came back twice (the surface's copy
and the mirror's). Here, over the host's connection to the cluster's bus (``remote``) and a bus inside the
process (``local``):

- **Event streams** (``soulfra.<instance>.events`` and below) of a world are published only by its own runtime and
  mirror, which run here: a subscription to one of them is made on ``local`` alone, and a publish goes to ``local``
  and then to ``remote`` (stored by JetStream, and read by whoever follows the world from elsewhere).
- **Ops** (``soulfra.<instance>.<platform>.<op>``) are kept here by subject, behind one subscription on ``remote``
  per world (``soulfra.<instance>.*.*``, in the responders' queue group); a request for an op served here is
  answered here, without the round trip; one for an op not served here, that reaches the world's subscription, is
  answered ``NoRespondersError`` as the bus would. The subscription also sees the publishes on the world's
  ``events.<platform>`` streams (JetStream's requests): those it leaves to JetStream to acknowledge.
- **Anything else** (the control subject) is subscribed to once on ``remote`` for all its subscribers here, and
  delivered to them through ``local``.

Must not: be used where one world's platforms run in several processes (the services topology): a peer there
publishing on a world's event stream would not reach this host's subscribers. Nor does a host subscribe to every
world's events (a wildcard in the world's place): its own worlds' would reach it twice, from here and from NATS.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from soulfra.bus.port import (
    Bus,
    Handler,
    Message,
    Responder,
    RoutingBus,
    Subscription,
    answer,
    check_subject,
    decode_reply,
    subject_matches,
)
from soulfra.errors import BusTimeoutError, ConflictError, NoRespondersError

__all__ = ["HostBus"]

log = logging.getLogger(__name__)

EVENT_PATTERNS = ("soulfra.*.events", "soulfra.*.events.>")


def _is_event(subject: str) -> bool:
    return any(subject_matches(pattern, subject) for pattern in EVENT_PATTERNS)


def _local_events(pattern: str) -> bool:
    """Whether a subscription is to the event stream of one named world (``soulfra.<instance>.events[.…]``)."""
    parts = pattern.split(".")
    return len(parts) >= 3 and parts[0] == "soulfra" and parts[1] not in ("*", ">") and parts[2] == "events"


def _world_of_op(subject: str) -> str | None:
    """The ``soulfra.<instance>`` of an op's subject, or None for a subject that is not one."""
    parts = subject.split(".")
    if len(parts) == 4 and parts[0] == "soulfra" and parts[2] not in ("events", "control"):
        return f"{parts[0]}.{parts[1]}"
    return None


class _Shared:
    """One subscription on the remote bus, kept while any of its users here holds it."""

    def __init__(self, made: Subscription) -> None:
        self.sub = made
        self.users = 0


class _Release:
    """A subscription here: ``unsubscribe`` lets go of what it held (idempotent)."""

    def __init__(self, undo: Callable[[], Awaitable[None]]) -> None:
        self._undo: Callable[[], Awaitable[None]] | None = undo

    async def unsubscribe(self) -> None:
        undo, self._undo = self._undo, None
        if undo is not None:
            await undo()


class HostBus:
    """The ``Bus`` of a cluster host (see the module's docstring); it owns both buses (``close`` closes them)."""

    def __init__(self, remote: RoutingBus, local: Bus) -> None:
        self.remote = remote
        self.local = local
        self._services: dict[str, Responder] = {}
        self._shared: dict[str, _Shared] = {}  # remote subscriptions by subject (a world's ops, a control subject)
        self._making: dict[str, asyncio.Lock] = {}

    async def publish(self, subject: str, payload: bytes) -> None:
        if _is_event(subject):
            await self.local.publish(subject, payload)
        await self.remote.publish(subject, payload)

    async def subscribe(self, subject: str, handler: Handler) -> Subscription:
        check_subject(subject, pattern=True)
        if _local_events(subject):
            return await self.local.subscribe(subject, handler)
        mine = await self.local.subscribe(subject, handler)
        try:
            await self._hold(subject, lambda: self.remote.subscribe(subject, self._relay))
        except BaseException:
            await mine.unsubscribe()
            raise

        async def undo() -> None:
            await mine.unsubscribe()
            await self._let_go(subject)

        return _Release(undo)

    async def serve(self, subject: str, responder: Responder) -> Subscription:
        check_subject(subject)
        world = _world_of_op(subject)
        if world is None:
            return await self.remote.serve(subject, responder)
        if subject in self._services:
            raise ConflictError(f"{subject} is served in this host already")
        self._services[subject] = responder
        pattern = f"{world}.*.*"
        try:
            await self._hold(pattern, lambda: self.remote.serve_routed(pattern, self._route))
        except BaseException:
            self._services.pop(subject, None)
            raise

        async def undo() -> None:
            self._services.pop(subject, None)
            await self._let_go(pattern)

        return _Release(undo)

    async def request(self, subject: str, payload: bytes, *, timeout: float) -> bytes:
        responder = self._services.get(subject)
        if responder is None:
            return await self.remote.request(subject, payload, timeout=timeout)
        try:
            async with asyncio.timeout(timeout):
                return decode_reply(await answer(responder, payload))  # what the bus would raise, raised
        except TimeoutError:
            raise BusTimeoutError(f"no reply from {subject} within {timeout:g} s") from None

    async def close(self) -> None:
        try:
            await self.local.close()
        finally:
            await self.remote.close()

    # -- the remote subscriptions ---------------------------------------------------------------------------------

    async def _hold(self, key: str, make: Callable[[], Awaitable[Subscription]]) -> None:
        """Count one more user of the remote subscription ``key``, made by ``make`` for its first one."""
        lock = self._making.setdefault(key, asyncio.Lock())
        async with lock:  # users of one key that come at once: the first makes it, the others wait for it
            shared = self._shared.get(key)
            if shared is None:
                shared = self._shared[key] = _Shared(await make())
            shared.users += 1

    async def _let_go(self, key: str) -> None:
        lock = self._making.setdefault(key, asyncio.Lock())
        async with lock:
            shared = self._shared.get(key)
            if shared is None:
                return
            shared.users -= 1
            if shared.users > 0:
                return
            del self._shared[key]
            self._making.pop(key, None)
            await shared.sub.unsubscribe()

    async def _relay(self, message: Message) -> None:
        await self.local.publish(message.subject, message.payload)

    async def _route(self, subject: str, payload: bytes) -> bytes | None:
        if _world_of_op(subject) is None:  # a world's event stream (``.events.mirror``): JetStream acknowledges it
            return None
        responder = self._services.get(subject)
        if responder is None:  # an op of a world served here that this host does not serve (or not yet, or no more)
            raise NoRespondersError(f"nothing serves {subject}")
        return await responder(payload)
