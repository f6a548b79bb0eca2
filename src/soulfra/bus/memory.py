"""InMemoryBus: the bus inside one process (the embedded topology). Each subscription has its own queue and pump
task, so a slow handler delays only itself and the order of delivery per subscription is the order of publish."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from soulfra.bus.port import (
    Handler,
    Message,
    Responder,
    RoutedResponder,
    answer,
    check_subject,
    decode_reply,
    subject_matches,
)
from soulfra.errors import BusError, BusTimeoutError, NoRespondersError

__all__ = ["InMemoryBus"]

log = logging.getLogger(__name__)


class _Subscription:
    def __init__(self, bus: InMemoryBus, pattern: str, handler: Handler) -> None:
        self.pattern = pattern
        self._bus = bus
        self._handler = handler
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._pump())

    def deliver(self, message: Message) -> None:
        self._queue.put_nowait(message)

    async def _pump(self) -> None:
        while True:
            message = await self._queue.get()
            if message is None:
                return
            try:
                await self._handler(message)
            except Exception:
                log.exception("bus handler for %s failed", self.pattern)

    async def unsubscribe(self) -> None:
        if self._bus._forget(self):
            self._queue.put_nowait(None)
            if self._task is not asyncio.current_task():  # a handler may unsubscribe itself
                await self._task


class _Service:
    def __init__(self, bus: InMemoryBus, subject: str, responder: Responder) -> None:
        self.subject = subject
        self.responder = responder
        self._bus = bus

    async def unsubscribe(self) -> None:
        services = self._bus._services.get(self.subject, [])
        if self in services:
            services.remove(self)


class _Routed:
    def __init__(self, bus: InMemoryBus, pattern: str, responder: RoutedResponder) -> None:
        self.pattern = pattern
        self.responder = responder
        self._bus = bus

    async def unsubscribe(self) -> None:
        if self in self._bus._routed:
            self._bus._routed.remove(self)


def _bucket(pattern: str) -> str | None:
    """Subscriptions are kept by their second token (the instance, in ``soulfra.<instance>.…``) when it is literal,
    so a publish looks only at its own instance's subscribers and the wildcard ones: with a thousand instances on
    one bus, matching every subscription on every publish would cost more than the ticks."""
    parts = pattern.split(".", 2)
    if len(parts) < 2 or parts[1] in ("*", ">") or parts[0] in ("*", ">"):
        return None
    return f"{parts[0]}.{parts[1]}"


class InMemoryBus:
    def __init__(self) -> None:
        self._subscriptions: dict[str | None, list[_Subscription]] = {}
        self._services: dict[str, list[_Service]] = {}
        self._routed: list[_Routed] = []
        self._turn: dict[str, int] = {}
        self._closed = False

    @contextmanager
    def _open(self) -> Iterator[None]:
        if self._closed:
            raise BusError("the bus is closed")
        yield

    async def publish(self, subject: str, payload: bytes) -> None:
        with self._open():
            check_subject(subject)
            message = Message(subject=subject, payload=payload)
            parts = subject.split(".", 2)
            key = f"{parts[0]}.{parts[1]}" if len(parts) > 1 else None
            candidates = [*self._subscriptions.get(key, ()), *self._subscriptions.get(None, ())]
            for sub in candidates:
                if subject_matches(sub.pattern, subject):
                    sub.deliver(message)

    async def subscribe(self, subject: str, handler: Handler) -> _Subscription:
        with self._open():
            sub = _Subscription(self, check_subject(subject, pattern=True), handler)
            self._subscriptions.setdefault(_bucket(sub.pattern), []).append(sub)
            return sub

    def _forget(self, sub: _Subscription) -> bool:
        bucket = self._subscriptions.get(_bucket(sub.pattern), [])
        if sub not in bucket:
            return False
        bucket.remove(sub)
        return True

    async def serve(self, subject: str, responder: Responder) -> _Service:
        with self._open():
            service = _Service(self, check_subject(subject), responder)
            self._services.setdefault(subject, []).append(service)
            return service

    async def serve_routed(self, pattern: str, responder: RoutedResponder) -> _Routed:
        with self._open():
            routed = _Routed(self, check_subject(pattern, pattern=True), responder)
            self._routed.append(routed)
            return routed

    def _responder(self, subject: str) -> Responder:
        services: list[_Service | _Routed] = [*self._services.get(subject, ())]
        services += [r for r in self._routed if subject_matches(r.pattern, subject)]
        if not services:
            raise NoRespondersError(f"nothing serves {subject}")
        turn = self._turn.get(subject, 0)
        self._turn[subject] = turn + 1
        service = services[turn % len(services)]
        if isinstance(service, _Routed):
            routed = service.responder

            async def unless_declined(payload: bytes) -> bytes:
                reply = await routed(subject, payload)
                if reply is None:  # declined, and nothing else answers here
                    raise NoRespondersError(f"nothing serves {subject}")
                return reply

            return unless_declined
        return service.responder

    async def request(self, subject: str, payload: bytes, *, timeout: float) -> bytes:
        with self._open():
            check_subject(subject)
            responder = self._responder(subject)
            try:
                async with asyncio.timeout(timeout):
                    reply = await answer(responder, payload)
            except TimeoutError:
                raise BusTimeoutError(f"no reply from {subject} within {timeout:g} s") from None
            return decode_reply(reply)

    async def close(self) -> None:
        if self._closed:
            return
        for bucket in list(self._subscriptions.values()):
            for sub in list(bucket):
                await sub.unsubscribe()
        self._services.clear()
        self._routed.clear()
        self._closed = True
