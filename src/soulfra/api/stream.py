"""The live stream over HTTP: one reader of each instance's surface stream per process, shared by its SSE clients.

A ``_Feed`` long-polls the surface, encodes each event once as a server-sent event and keeps the latest ones in a
bounded ring. A client takes what it has not sent yet from the ring whenever it can send, at most ``BATCH`` events
at a time; it has no buffer of its own beyond its connection's, and nothing is done for it while it cannot send.
A client that fell behind the ring is told how many events it missed (``event: missed``) and goes on from the
oldest one kept; one whose send does not complete within ``SEND_TIMEOUT_S`` is disconnected (it resumes with
``Last-Event-ID``). A client that names no position starts from now: the latest event the feed holds once it has
caught up with the surface, decided in one step with no await and sent first as a bare ``id:`` line, so a browser
that reconnects before any event came resumes from there. The world's tick never waits for any of this, and the
surface sees one reader per process.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from sse_starlette.sse import EventSourceResponse, SendTimeoutError
from starlette.types import Message, Receive, Scope, Send

from soulfra.api.gateway import Gateway
from soulfra.errors import SoulfraError
from soulfra.metrics import Metrics
from soulfra.platforms.surface import Changed

__all__ = ["BATCH", "HEARTBEAT_S", "RING", "SEND_TIMEOUT_S", "LiveStreams"]

log = logging.getLogger(__name__)

RING = 1024  # events kept per instance, as many as the surface keeps
BATCH = 256  # events in one send to a client at most
HEARTBEAT_S = 10.0  # a comment line this often, so idle connections stay open through proxies
SEND_TIMEOUT_S = 10.0  # a client that takes nothing for this long is disconnected
RETRY_MS = 1000  # what clients are told to wait before they reconnect
POLL_MS = 1000  # the feed's long poll of the surface
PACE_S = 0.05  # batches reach the clients at most this often: fanning out costs per batch, never per tick
LIMIT = 4096  # events per poll of the surface (the most its stream op gives)

Disconnect = Callable[[Scope], bool]


def _event(name: str, body: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(body)}\n\n".encode()


def _item(item: dict[str, Any]) -> bytes:
    return f"id: {item['seq']}\nevent: {item['channel']}\ndata: {json.dumps(item)}\n\n".encode()


class _Feed:
    """One instance's stream, read from the surface once for every client of this process."""

    def __init__(self, streams: LiveStreams, instance_id: str) -> None:
        self._streams = streams
        self.instance_id = instance_id
        self._events: list[bytes] = []  # encoded events numbered first, first + 1, ... last
        self.first = 1
        self.last = 0
        self.error = b""  # the last failure to read the surface, as an ``error`` event
        self.errors = 0
        self.generation = 0  # how many times the surface's numbering started again
        # Whether the ring reached the surface's latest event at some poll: until then "now" is not known, so the feed
        # polls without waiting (a long poll would answer only with an event that came after the client arrived).
        self.synced = False
        self.changed = Changed()
        self.clients = 0
        self._task: asyncio.Task[None] | None = None

    def attach(self) -> None:
        self.clients += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._pump())

    def detach(self) -> None:
        self.clients -= 1

    def take(self, after: int) -> tuple[int, int, bytes]:
        """``(missed, last, chunk)``: the events after ``after`` still kept (at most ``BATCH``), joined, with the
        number of the last one and how many events after ``after`` are no longer kept."""
        if after >= self.last or not self._events:
            return 0, after, b""
        start = max(after + 1, self.first) - self.first
        chunk = self._events[start : start + BATCH]
        return max(0, self.first - after - 1), self.first + start + len(chunk) - 1, b"".join(chunk)

    def _append(self, batch: dict[str, Any]) -> None:
        if int(batch["seq"]) < self.last:  # the surface started again (a revert restarts it): so do its numbers
            self._events.clear()
            self.first, self.last = 1, 0
            self.generation += 1  # every client goes back to the start of the new numbering
        items = [item for item in batch["items"] if int(item["seq"]) > self.last]
        if not items:
            return
        if int(items[0]["seq"]) != self.last + 1 or not self._events:  # a gap: the kept events must be consecutive
            self._events.clear()
            self.first = int(items[0]["seq"])
        self._events.extend(_item(item) for item in items)
        self.last = int(items[-1]["seq"])
        if len(self._events) > 2 * RING:
            drop = len(self._events) - RING
            del self._events[:drop]
            self.first += drop
        self.changed.notify()

    async def _pump(self) -> None:
        try:
            while self.clients > 0 and not self._streams.closed:
                try:
                    bridge = await self._streams.gateway.bridge(self.instance_id)
                    wait_ms = POLL_MS if self.synced else 0
                    batch = await bridge.request(
                        "surface", "stream", {"after": self.last, "wait_ms": wait_ms, "limit": LIMIT}
                    )
                    self._append(batch)
                    if not self.synced and self.last >= int(batch["seq"]):
                        self.synced = True
                        self.changed.notify()
                except SoulfraError as exc:
                    self._failed(exc.code, exc.detail)
                except Exception as exc:  # a bug here must not leave the clients without a reader
                    log.exception("reading the live stream of %s failed", self.instance_id)
                    self._failed("internal_error", f"the stream could not be read: {type(exc).__name__}")
                else:
                    await self._streams.rest(PACE_S)
                    continue
                await self._streams.rest(RETRY_MS / 1000)  # the surface is away: try again at the clients' pace
        finally:
            self._task = None  # a client that arrives from now on starts another
            if self.clients <= 0:  # nobody follows it: its ring goes (a deleted instance's with it)
                self._streams.forget(self)

    def _failed(self, code: str, detail: str) -> None:
        self.error = _event("error", {"code": code, "detail": detail})
        self.errors += 1
        self.changed.notify()


class _EventStream(EventSourceResponse):
    """A server-sent event response that ends quietly when its client stops reading: the connection is dropped
    (through ``LiveStreams.disconnect`` when the server gives one) rather than failing the request."""

    def __init__(self, streams: LiveStreams, content: AsyncIterator[bytes]) -> None:
        super().__init__(
            content,
            headers={"Cache-Control": "no-cache"},
            ping=HEARTBEAT_S,
            sep="\n",
            send_timeout=SEND_TIMEOUT_S,
        )
        self._streams = streams
        self.scope: Scope = {}
        self.sending = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def tracked(message: Message) -> None:
            self.sending = True
            try:
                await send(message)
            finally:
                self.sending = False

        self.scope = scope
        self._streams.live.add(self)
        try:
            await super().__call__(scope, receive, tracked)
        except SendTimeoutError:
            log.info("a stream client at %s took nothing for %g s: disconnected", _peer(scope), SEND_TIMEOUT_S)
            self._streams.metrics.stream_dropped.inc()
            await self.drop()
        finally:
            self._streams.live.discard(self)

    async def drop(self) -> None:
        """Close the connection of a client that does not read."""
        if self._streams.disconnect is not None and self._streams.disconnect(self.scope):
            await asyncio.sleep(0)  # the server learns of the closed connection before the response returns


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"


class LiveStreams:
    """Every live stream of this process. ``close`` ends them (at shutdown). ``disconnect``, when the server sets
    it, drops a client's connection at once, so one that reads nothing releases its buffers."""

    def __init__(self, gateway: Gateway, *, metrics: Metrics | None = None) -> None:
        self.gateway = gateway
        self.metrics = metrics or Metrics()
        self.metrics.on_scrape(lambda: self.metrics.stream_clients.set(len(self.live)))
        self._closed = False
        self.disconnect: Disconnect | None = None
        self.live: set[_EventStream] = set()
        self._feeds: dict[str, _Feed] = {}
        self._closing = Changed()

    @property
    def closed(self) -> bool:
        """Closed by ``close``, or the gateway is closing (the system is stopping)."""
        return self._closed or self.gateway.closing

    def response(self, instance_id: str, after: int | None) -> EventSourceResponse:
        """The events of ``instance_id`` numbered after ``after`` (from now when None), as a server-sent event
        response."""
        return _EventStream(self, self.events(instance_id, after))

    async def events(self, instance_id: str, after: int | None) -> AsyncGenerator[bytes, None]:
        """The stream of ``instance_id`` after ``after``, as the bytes of server-sent events (``retry`` first).

        With ``after`` None the stream starts from now: once the feed has caught up with the surface, its latest
        event is the point the stream goes on after, sent as a bare ``id:`` line before any event (it sets a
        browser's ``Last-Event-ID`` without dispatching anything)."""
        feed = self._feeds.get(instance_id)
        if feed is None:
            feed = self._feeds[instance_id] = _Feed(self, instance_id)
        feed.attach()
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            errors, generation = feed.errors, feed.generation
            while not self.closed:
                if feed.errors != errors:
                    errors = feed.errors
                    yield feed.error
                if after is None:
                    if not feed.synced:
                        await feed.changed.wait_until(functools.partial(self._synced, feed, errors), HEARTBEAT_S)
                        continue
                    # Now, decided with no await: the stream is exactly the events numbered after it, in the numbering
                    # the feed holds at this moment.
                    after, generation = feed.last, feed.generation
                    yield f"id: {after}\n\n".encode()
                    continue
                if feed.generation != generation:  # ids start again at 1 (a revert): a client further on would wait
                    generation, after = feed.generation, 0
                    yield _event("restarted", {"reason": "the world's timeline was restarted; ids start again at 1"})
                missed, after, chunk = feed.take(after)
                if missed:
                    yield _event("missed", {"count": missed})
                if chunk:
                    yield chunk
                    await asyncio.sleep(0)  # a connection lost in that send is noticed before the next one
                    continue
                news = functools.partial(self._news, feed, after, errors, generation)
                await feed.changed.wait_until(news, HEARTBEAT_S)
        finally:
            feed.detach()

    def _synced(self, feed: _Feed, errors: int) -> bool:
        return feed.synced or feed.errors != errors or self.closed

    def _news(self, feed: _Feed, after: int, errors: int, generation: int) -> bool:
        return feed.last > after or feed.errors != errors or feed.generation != generation or self.closed

    def forget(self, feed: _Feed) -> None:
        if self._feeds.get(feed.instance_id) is feed:
            del self._feeds[feed.instance_id]

    async def rest(self, seconds: float) -> None:
        """Sleep, unless the streams are closed first."""
        await self._closing.wait_until(lambda: self.closed, seconds)

    def close(self) -> None:
        """End every stream: each client gets the end of its response, and one that reads nothing is dropped."""
        self._closed = True
        self._closing.notify()
        for feed in self._feeds.values():
            feed.changed.notify()
        if self.disconnect is not None:
            for stream in list(self.live):
                if stream.sending:  # held by a client that takes nothing: it would hold the stop as well
                    self.disconnect(stream.scope)
