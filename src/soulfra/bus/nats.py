"""NatsBus: the bus across processes, over a NATS server (nats-py). Event-stream subjects (``soulfra.<instance>.events``
and below) are published through JetStream and kept in the ``SOULFRA_EVENTS`` stream, so ``replay`` can read them
back; every other subject is plain core NATS. Subscribers always get live delivery through core NATS. Credentials
and TLS come from ``NatsOptions`` (soulfra.bus.options); a server that refuses them fails the connect at once."""

from __future__ import annotations

import asyncio
import heapq
import logging
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from soulfra.bus.options import NatsOptions, redact_url
from soulfra.bus.port import (
    Handler,
    Message,
    Responder,
    RoutedResponder,
    answer,
    check_subject,
    decode_reply,
    encode_error,
    encode_ok,
    subject_matches,
)
from soulfra.errors import (
    BusError,
    BusTimeoutError,
    BusUnavailableError,
    InputError,
    NoRespondersError,
    SoulfraError,
)
from soulfra.offload import off_loop

__all__ = ["EVENT_STREAM", "EVENT_SUBJECTS", "NatsBus", "is_event_subject"]

log = logging.getLogger(__name__)

EVENT_STREAM = "SOULFRA_EVENTS"
EVENT_SUBJECTS = ("soulfra.*.events", "soulfra.*.events.>")
QUEUE_GROUP = "soulfra"  # responders of one subject share it, so each request reaches exactly one of them
CONNECT_TIMEOUT_S = 2
DRAIN_TIMEOUT_S = 10
DISCARD_TIMEOUT_S = 1.0
CREDENTIALS = frozenset({"user", "token", "user_credentials", "nkeys_seed"})  # nats-py's arguments that authenticate
JETSTREAM_TIMEOUT_S = 5.0
STREAM_MAX_AGE_S = 24 * 3600.0
STREAM_MAX_MSGS_PER_SUBJECT = 100_000
REPLAY_MAX_LIMIT = 10_000

RawCallback = Callable[[Msg], Awaitable[None]]


def is_event_subject(subject: str) -> bool:
    """Whether ``subject`` belongs to the event stream (and so is published through JetStream)."""
    return any(subject_matches(pattern, subject) for pattern in EVENT_SUBJECTS)


class _FirstConnectError(Exception):
    """Raised from the error callback while connecting, so nats-py gives up instead of retrying for minutes."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Denied:
    """The subjects the server refused this connection (nats-py reports a permissions violation only to the error
    callback), so the publish, request or subscription that caused one fails with it instead of going quiet."""

    _VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "([^"]+)"', re.IGNORECASE)

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    def note(self, text: str) -> None:
        found = self._VIOLATION.search(text)
        if found is not None:
            self._seen.add((found.group(1).lower(), found.group(2)))

    def refused(self, action: str, subject: str) -> bool:
        return (action, subject) in self._seen

    def check(self, action: str, subject: str) -> None:
        """Raise ``BusError`` (once) if the server refused ``action`` on ``subject``."""
        if (action, subject) in self._seen:
            self._seen.discard((action, subject))
            raise BusError(f"NATS refused {action} on {subject}: this user has no permission for it")


class _NatsSubscription:
    """One subscription (or responder) on the connection. ``unsubscribe`` waits for a running handler call to finish
    (as InMemoryBus does) and, called from inside that handler, lets it finish in peace."""

    def __init__(self, bus: NatsBus, subject: str, callback: RawCallback) -> None:
        self.subject = subject
        self._bus = bus
        self._callback = callback
        self._active = True
        self._idle = asyncio.Event()
        self._idle.set()
        self._runner: asyncio.Task[object] | None = None
        self._sub: NatsSubscription | None = None

    def attach(self, sub: NatsSubscription) -> None:
        self._sub = sub

    async def on_message(self, msg: Msg) -> None:
        if not self._active:
            return
        self._idle.clear()
        self._runner = asyncio.current_task()
        try:
            await self._callback(msg)
        except Exception:
            log.exception("bus handler for %s failed", self.subject)
        finally:
            self._runner = None
            self._idle.set()

    async def unsubscribe(self) -> None:
        if not self._active:
            return
        self._active = False
        if self._runner is not None and self._runner is asyncio.current_task():
            # Called by our own handler: nats-py would cancel the task running it, so finish the job afterwards.
            self._bus._spawn(self._remove())
            return
        await self._remove()

    async def _remove(self) -> None:
        await self._idle.wait()
        self._bus._subscriptions.discard(self)
        if self._sub is None or self._bus._nc.is_closed or self._bus._nc.is_draining:
            return
        try:
            await self._sub.unsubscribe()
            await self._bus._sync()  # the server knows before we return (a request then finds no responder)
        except nats.errors.Error as exc:  # the connection went away meanwhile: nothing is delivered any more anyway
            log.debug("unsubscribing from %s: %s", self.subject, exc)


class NatsBus:
    """The ``Bus`` contract over one NATS connection. Beyond the port it offers ``replay`` for event subjects."""

    def __init__(self, nc: Client, js: JetStreamContext, url: str, denied: _Denied | None = None) -> None:
        self._nc = nc
        self._js = js
        self._url = url
        self._denied = denied or _Denied()
        self._subscriptions: set[_NatsSubscription] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    @classmethod
    async def connect(cls, url: str, options: NatsOptions | None = None, *, name: str = "soulfra") -> NatsBus:
        """Connect to the NATS server at ``url`` with ``options`` (credentials, TLS) and make sure the event stream
        exists.

        A file named in ``options`` that cannot be read gives ``ConfigError`` before anything is sent; a server that
        cannot be reached, refuses the credentials or the TLS handshake (or has no JetStream) gives
        ``BusUnavailableError`` at once. Once connected, a lost connection is re-established in the background by
        nats-py.
        """
        settings = await off_loop(_client_settings, url, options or NatsOptions())
        shown = redact_url(url)  # the URL as errors and logs show it
        connecting = True
        denied = _Denied()

        async def on_error(exc: Exception) -> None:
            if connecting:
                raise _FirstConnectError(exc)
            log.warning("NATS connection to %s: %s", shown, exc or type(exc).__name__)
            denied.note(str(exc))

        nc = Client()
        try:
            await nc.connect(
                servers=[url],
                name=name,
                error_cb=on_error,
                connect_timeout=CONNECT_TIMEOUT_S,
                drain_timeout=DRAIN_TIMEOUT_S,
                allow_reconnect=True,
                **settings,
            )
        except _FirstConnectError as exc:
            await _discard(nc)
            raise _refused(shown, exc.cause, secured=bool(settings.keys() & CREDENTIALS) or shown != url) from exc.cause
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            await _discard(nc)
            raise _refused(shown, exc, secured=bool(settings.keys() & CREDENTIALS) or shown != url) from exc
        connecting = False
        js = nc.jetstream(timeout=JETSTREAM_TIMEOUT_S)
        try:
            await _ensure_stream(js)
        except (nats.errors.Error, TimeoutError) as exc:
            await _discard(nc)
            raise BusUnavailableError(
                f"NATS at {shown} has no usable JetStream (stream {EVENT_STREAM}): {_describe(exc)}"
            ) from exc
        return cls(nc, js, shown, denied)

    @asynccontextmanager
    async def _open(self, subject: str) -> AsyncIterator[None]:
        """Refuse work on a closed bus and turn nats-py's errors into the bus's own."""
        if self._closed:
            raise BusError("the bus is closed")
        try:
            yield
        except nats.errors.NoRespondersError:
            raise NoRespondersError(f"nothing serves {subject}") from None
        except nats.errors.MaxPayloadError as exc:
            raise BusError(f"message on {subject} is larger than the server allows") from exc
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError) as exc:
            raise BusUnavailableError(f"the connection to NATS at {self._url} is closed") from exc
        except nats.js.errors.NoStreamResponseError as exc:
            raise BusError(f"JetStream stored nothing for {subject}: {_describe(exc)}") from exc
        except nats.js.errors.APIError as exc:
            raise BusError(f"JetStream refused {subject}: {_describe(exc)}") from exc
        except TimeoutError as exc:  # nats.errors.TimeoutError is one too
            raise BusTimeoutError(f"NATS at {self._url} did not answer on {subject} in time") from exc
        except nats.errors.Error as exc:
            raise BusUnavailableError(f"NATS at {self._url} failed on {subject}: {_describe(exc)}") from exc

    async def publish(self, subject: str, payload: bytes) -> None:
        """Event-stream subjects are stored by JetStream before this returns; the rest is sent to the server."""
        async with self._open(subject):
            check_subject(subject)
            if is_event_subject(subject):
                await self._js.publish(subject, payload, stream=EVENT_STREAM)
            else:
                await self._nc.publish(subject, payload)
                await self._sync()
                self._denied.check("publish", subject)

    async def subscribe(self, subject: str, handler: Handler) -> _NatsSubscription:
        async with self._open(subject):
            check_subject(subject, pattern=True)

            async def deliver(msg: Msg) -> None:
                await handler(Message(subject=msg.subject, payload=msg.data))

            return await self._register(subject, deliver, queue="")

    async def serve(self, subject: str, responder: Responder) -> _NatsSubscription:
        async with self._open(subject):
            check_subject(subject)

            async def reply_to(msg: Msg) -> None:
                reply = await answer(responder, msg.data)
                if not msg.reply:
                    log.warning("request on %s came without a reply subject; answer dropped", subject)
                    return
                try:
                    await msg.respond(reply)
                except nats.errors.Error as exc:
                    log.warning("could not answer a request on %s: %s", subject, _describe(exc))

            return await self._register(subject, reply_to, queue=QUEUE_GROUP)

    async def serve_routed(self, pattern: str, responder: RoutedResponder) -> _NatsSubscription:
        async with self._open(pattern):
            check_subject(pattern, pattern=True)

            async def reply_to(msg: Msg) -> None:
                if not msg.reply:  # a publish that matched the pattern: nobody waits for an answer
                    return
                reply = await _routed_answer(responder, msg.subject, msg.data)
                if reply is None:  # declined: left to whoever else answers it (JetStream, for an event stream)
                    return
                try:
                    await msg.respond(reply)
                except nats.errors.Error as exc:
                    log.warning("could not answer a request on %s: %s", msg.subject, _describe(exc))

            return await self._register(pattern, reply_to, queue=QUEUE_GROUP)

    async def request(self, subject: str, payload: bytes, *, timeout: float) -> bytes:
        async with self._open(subject):
            check_subject(subject)
            try:
                reply = await self._nc.request(subject, payload, timeout=timeout)
            except TimeoutError:
                self._denied.check("publish", subject)
                raise BusTimeoutError(f"no reply from {subject} within {timeout:g} s") from None
            return decode_reply(reply.data)

    async def replay(self, subject: str, *, start_seq: int = 1, limit: int = 1000) -> list[tuple[int, Message]]:
        """Stored events of an event-stream subject, oldest first, from stream sequence ``start_seq`` on.

        Returns at most ``limit`` (stream sequence, message) pairs; to read on, call again with the last sequence
        plus one. ``subject`` may be a pattern (``soulfra.<instance>.events.>``). Events older than the stream's
        limits (24 h, 100,000 per subject) are gone. Only ``NatsBus`` has this: InMemoryBus stores nothing.
        """
        async with self._open(subject):
            check_subject(subject, pattern=True)
            if not is_event_subject(subject):
                raise InputError(f"{subject!r} is not an event-stream subject (soulfra.<instance>.events...)")
            if start_seq < 1:
                raise InputError(f"start_seq must be at least 1, not {start_seq}")
            if not 1 <= limit <= REPLAY_MAX_LIMIT:
                raise InputError(f"limit must be between 1 and {REPLAY_MAX_LIMIT}, not {limit}")
            if any(part in ("*", ">") for part in subject.split(".")):
                return await self._replay_pattern(subject, start_seq, limit)
            found: list[tuple[int, Message]] = []
            seq = start_seq
            while len(found) < limit and (head := await self._next_stored(subject, seq)) is not None:
                found.append(head)
                seq = head[0] + 1
            return found

    async def _replay_pattern(self, pattern: str, start_seq: int, limit: int) -> list[tuple[int, Message]]:
        """``replay`` of a pattern, as a merge of the literal subjects it matches.

        Looking up the next message of a literal subject uses the server's per-subject index; the same lookup with a
        wildcard scans the stream from ``start_seq``, which on a stream holding a day of every instance's events is
        slow enough to time out. The stream's subject list for the pattern (one request) names the literal subjects.
        """
        info = await self._js.stream_info(EVENT_STREAM, subjects_filter=pattern)
        heads: list[tuple[int, Message]] = []
        for literal in sorted(info.state.subjects or {}):
            head = await self._next_stored(literal, start_seq)
            if head is not None:
                heapq.heappush(heads, head)
        found: list[tuple[int, Message]] = []
        while heads and len(found) < limit:
            seq, message = heapq.heappop(heads)
            found.append((seq, message))
            following = await self._next_stored(message.subject, seq + 1)
            if following is not None:
                heapq.heappush(heads, following)
        return found

    async def _next_stored(self, subject: str, seq: int) -> tuple[int, Message] | None:
        """The first stored message of ``subject`` at stream sequence ``seq`` or later, or None."""
        try:
            raw = await self._js.get_msg(EVENT_STREAM, seq=seq, subject=subject, next=True)
        except nats.js.errors.NotFoundError:
            return None
        if raw.seq is None or raw.subject is None:
            raise BusError(f"JetStream returned a message without sequence or subject for {subject}")
        return raw.seq, Message(subject=raw.subject, payload=raw.data or b"")

    async def close(self) -> None:
        """Let running handlers finish, drain the connection and close it; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self._subscriptions.clear()
        if self._nc.is_closed:
            return
        try:
            await self._nc.drain()
        except nats.errors.Error as exc:  # reconnecting or already gone: close without draining
            log.debug("draining the NATS connection failed: %s", _describe(exc))
            await self._nc.close()

    async def _register(self, subject: str, callback: RawCallback, *, queue: str) -> _NatsSubscription:
        wrapper = _NatsSubscription(self, subject, callback)
        wrapper.attach(await self._nc.subscribe(subject, queue=queue, cb=wrapper.on_message))
        self._subscriptions.add(wrapper)
        await self._sync()  # the server knows the subscription before we return
        if self._denied.refused("subscription", subject):
            await wrapper.unsubscribe()
            self._denied.check("subscription", subject)
        return wrapper

    async def _sync(self) -> None:
        """Return once the server has processed every command sent so far (a PING/PONG behind them).

        nats-py's ``flush()`` writes its PING straight to the socket, ahead of commands still queued for its flusher
        task (nats-py 2.16), so the PONG can come back before a SUB queued just earlier reached the server. Waiting for
        the flusher first puts the PING behind them.
        """
        if not self._nc.is_connected:  # reconnecting: nats-py replays subscriptions and buffered messages later
            return
        await self._nc._flush_pending(force_flush=True)
        await self._nc.flush()

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _client_settings(url: str, options: NatsOptions) -> dict[str, Any]:
    """nats-py's ``connect`` arguments for ``options``: the files are read here, so a bad one is a ConfigError now."""
    settings: dict[str, Any] = {}
    context = options.tls_context(url)
    if context is not None:
        settings["tls"] = context
    if options.user is not None:
        settings["user"] = options.user
        settings["password"] = options.password or ""
    if options.token is not None:
        settings["token"] = options.token
    nkey = options.nkey_file()
    if nkey is not None and nkey.kind == "creds":
        settings["user_credentials"] = str(nkey.path)
    elif nkey is not None:
        settings["nkeys_seed"] = str(nkey.path)
    return settings


def _refused(url: str, exc: BaseException, *, secured: object) -> BusUnavailableError:
    """The one line for a first connection that failed: credentials refused or missing, TLS refused, no server."""
    text = str(exc)
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in text.lower():
        if not secured:
            return BusUnavailableError(
                f"NATS at {url} requires credentials (--nats-user and --nats-password, --nats-token or "
                "--nats-creds): Authorization Violation"
            )
        return BusUnavailableError(f"NATS at {url} refused the credentials: Authorization Violation")
    if isinstance(exc, ssl.SSLError):
        hint = "; give the CA that signed the server's certificate with --nats-ca" if "VERIFY" in text else ""
        return BusUnavailableError(f"TLS with NATS at {url} failed: {exc.reason or _describe(exc)}{hint}")
    if "secure connection" in text.lower() or "tls required" in text.lower():
        return BusUnavailableError(f"NATS at {url} requires TLS: use a tls:// URL or --nats-ca ({_describe(exc)})")
    return BusUnavailableError(f"cannot connect to NATS at {url}: {_describe(exc)}")


async def _ensure_stream(js: JetStreamContext) -> None:
    config = StreamConfig(
        name=EVENT_STREAM,
        subjects=list(EVENT_SUBJECTS),
        max_age=STREAM_MAX_AGE_S,
        max_msgs_per_subject=STREAM_MAX_MSGS_PER_SUBJECT,
        storage=StorageType.FILE,
    )
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError:  # it exists with another configuration: bring it to ours
        await js.update_stream(config)


async def _routed_answer(responder: RoutedResponder, subject: str, payload: bytes) -> bytes | None:
    """``answer`` for a routed responder, which may decline (None)."""
    try:
        reply = await responder(subject, payload)
    except SoulfraError as exc:
        return encode_error(exc)
    except Exception as exc:
        log.exception("bus responder failed")
        return encode_error(SoulfraError(f"internal error: {type(exc).__name__}"))
    return None if reply is None else encode_ok(reply)


async def _discard(nc: Client) -> None:
    try:
        # A TLS handshake that failed can leave nats-py waiting forever for its transport to close.
        async with asyncio.timeout(DISCARD_TIMEOUT_S):
            await nc.close()
    except TimeoutError:
        log.debug("closing a failed NATS connection timed out")
    except Exception:  # a half-open client may fail to close; nothing more can be done about it
        log.debug("closing a failed NATS connection failed", exc_info=True)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
