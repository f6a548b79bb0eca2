"""The message bus as a port: event broadcast, request/reply between platforms, and the reply envelope.

Adapters (``InMemoryBus``, ``NatsBus``) implement ``Bus`` and never import each other; the platforms and the
bridge depend only on this module. Payloads are bytes; what they mean belongs to the callers.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from soulfra.errors import InputError, SoulfraError, error_for_code

log = logging.getLogger(__name__)

__all__ = [
    "Bus",
    "Handler",
    "Message",
    "Responder",
    "RoutedResponder",
    "RoutingBus",
    "Subscription",
    "answer",
    "check_subject",
    "decode_reply",
    "encode_error",
    "encode_ok",
    "subject_matches",
]

_PART = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    subject: str
    payload: bytes


Handler = Callable[[Message], Awaitable[None]]
Responder = Callable[[bytes], Awaitable[bytes]]
# Given each request's subject, then its payload; None declines it (no answer from here: see ``RoutingBus``).
RoutedResponder = Callable[[str, bytes], Awaitable[bytes | None]]


class Subscription(Protocol):
    async def unsubscribe(self) -> None:
        """Stop delivery; messages published afterwards never reach the handler. Calling it twice is harmless."""


class Bus(Protocol):
    """Contract, checked by one suite over every adapter (tests/contract/test_bus_contract.py):

    - ``publish`` delivers to every subscription whose pattern matches and that existed when ``publish`` was called,
      in publish order for each publisher and subject. Subjects under ``soulfra.<instance>.events`` are event
      streams (JetStream on NATS).
    - Patterns use NATS wildcards: ``*`` matches one part, ``>`` the rest of the subject.
    - ``serve`` registers a responder; ``request`` sends to exactly one responder of the subject and returns its
      reply. A responder that raises a ``SoulfraError`` makes ``request`` raise the same class with the same detail.
    - ``request`` raises ``NoRespondersError`` when nothing serves the subject and ``BusTimeoutError`` when no reply
      came within ``timeout`` seconds.
    - Handlers run on the bus's event loop and must not block it; a handler's exception is logged, not propagated.
    """

    async def publish(self, subject: str, payload: bytes) -> None: ...

    async def subscribe(self, subject: str, handler: Handler) -> Subscription: ...

    async def serve(self, subject: str, responder: Responder) -> Subscription: ...

    async def request(self, subject: str, payload: bytes, *, timeout: float) -> bytes: ...

    async def close(self) -> None:
        """Drain and disconnect; idempotent."""


class RoutingBus(Bus, Protocol):
    """A bus that also answers for many subjects through one responder (both adapters are; checked by the same
    suite):

    - ``serve_routed`` answers requests to every subject ``pattern`` matches (NATS wildcards), like ``serve`` (one
      responder of the queue group gets each request), giving the responder the request's subject. A message
      published (not requested) on a matching subject is not an answerable request and is dropped. A subject that is
      also served literally (``serve``) may be answered by either.
    - The responder declines a request by returning None: nothing is answered from here, so one that something
      else answers as well (JetStream acknowledging a publish on an event stream, which is a request on NATS) gets
      that answer alone; one nothing else answers is refused ``NoRespondersError`` (in memory) or times out (NATS).
    """

    async def serve_routed(self, pattern: str, responder: RoutedResponder) -> Subscription: ...


@functools.lru_cache(maxsize=4096)  # the same few subjects are checked on every request
def check_subject(subject: str, *, pattern: bool = False) -> str:
    """Refuse subjects NATS would refuse, so both adapters accept exactly the same ones."""
    parts = subject.split(".")
    for i, part in enumerate(parts):
        if pattern and (part == "*" or (part == ">" and i == len(parts) - 1)):
            continue
        if not _PART.match(part):
            raise InputError(f"bad bus subject {subject!r}: parts are letters, digits, '-' and '_'")
    return subject


def subject_matches(pattern: str, subject: str) -> bool:
    want = pattern.split(".")
    have = subject.split(".")
    for i, part in enumerate(want):
        if part == ">":
            return len(have) > i
        if i >= len(have) or (part != "*" and part != have[i]):
            return False
    return len(want) == len(have)


# A reply is tagged: b"0" + payload for success, b"1" + JSON {"code", "detail"} for an error.
def encode_ok(payload: bytes) -> bytes:
    return b"0" + payload


def encode_error(error: SoulfraError) -> bytes:
    return b"1" + json.dumps({"code": error.code, "detail": error.detail}).encode()


async def answer(responder: Responder, payload: bytes) -> bytes:
    """The reply envelope of what ``responder`` answers ``payload``: the answer, or the error it raised (one that is
    no ``SoulfraError`` logged, and answered as an internal error without its details)."""
    try:
        return encode_ok(await responder(payload))
    except SoulfraError as exc:
        return encode_error(exc)
    except Exception as exc:
        log.exception("bus responder failed")
        return encode_error(SoulfraError(f"internal error: {type(exc).__name__}"))


def decode_reply(reply: bytes) -> bytes:
    """The payload of a successful reply; raises the error a responder raised."""
    if reply[:1] == b"0":
        return reply[1:]
    if reply[:1] == b"1":
        try:
            body = json.loads(reply[1:])
            code, detail = str(body["code"]), str(body["detail"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SoulfraError(f"unreadable error reply: {reply[:80]!r}") from exc
        raise error_for_code(code, detail)
    raise SoulfraError(f"unreadable reply: {reply[:80]!r}")
