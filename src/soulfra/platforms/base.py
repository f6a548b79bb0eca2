"""What every platform shares: its subjects on the bus, JSON requests and replies, and the override switch.

A platform serves ``soulfra.<instance>.<platform>.<op>`` and listens on ``soulfra.<instance>.control`` for the
emergency override; the runtime publishes the world's events on ``soulfra.<instance>.events``. A request to an op
that changes something (a platform's ``mutating`` ops) carries the identity that issued it as ``_by``
(``{"name", "role"}``): one without it is refused, so that nothing on the bus changes a world anonymously. A request
may carry the id of the request it serves as ``_rid`` (an HTTP request's ``X-Request-ID``): the platform logs what it
does for it under that id (``soulfra.logs.bind``), so one request can be followed from process to process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from soulfra.bus.port import Bus, Message, Subscription
from soulfra.errors import AuthenticationError, ConfigError, InputError, OverrideActiveError
from soulfra.logs import bind, checked_request_id, current_request_id
from soulfra.security.identity import Identity

__all__ = [
    "BY",
    "PLATFORMS",
    "RID",
    "Op",
    "Platform",
    "by_field",
    "check_instance_id",
    "control_subject",
    "decode",
    "encode",
    "events_subject",
    "int_field",
    "issuer",
    "op_subject",
    "rid_field",
]

log = logging.getLogger(__name__)

PLATFORMS = ("runtime", "surface", "protocol", "mirror")
BY = "_by"  # the request field naming who issued it; platforms leave ``_`` fields out of any content
RID = "_rid"  # the request field carrying the id of the request it serves (for logs only: it changes nothing)
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")

# An op answers a JSON object, or bytes already encoded as one (a platform caching its hot replies).
Op = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | bytes]]


def check_instance_id(instance_id: str) -> str:
    if not _INSTANCE_ID.match(instance_id):
        raise ConfigError(f"bad instance id {instance_id!r}: 1 to 64 letters, digits, '-' or '_'")
    return instance_id


def op_subject(instance_id: str, platform: str, op: str) -> str:
    return f"soulfra.{instance_id}.{platform}.{op}"


def events_subject(instance_id: str) -> str:
    return f"soulfra.{instance_id}.events"


def control_subject(instance_id: str) -> str:
    return f"soulfra.{instance_id}.control"


def encode(body: Any) -> bytes:
    """``body`` as compact JSON (UTF-8, not ASCII-escaped), by orjson: a tick's message is encoded every tick of every
    world. What orjson refuses (an integer past 64 bits) is encoded by ``json``, as exactly."""
    try:
        return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(body, separators=(",", ":")).encode()


def int_field(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    """An integer field of a request, within ``low..high``; ``InputError`` names the field otherwise."""
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{key!r} must be an integer from {low} to {high}")
    return value


def by_field(identity: Identity) -> dict[str, str]:
    """What a request carries in ``_by`` for ``identity``."""
    return {"name": identity.name, "role": identity.role}


def rid_field() -> dict[str, str]:
    """What a request carries in ``_rid``: the id of the request being handled in this context, if any."""
    rid = current_request_id()
    return {} if rid is None else {RID: rid}


def issuer(body: dict[str, Any]) -> tuple[str, str] | None:
    """The (name, role) a request's ``_by`` names, or None when it names none."""
    by = body.get(BY)
    if not isinstance(by, dict):
        return None
    name, role = by.get("name"), by.get("role")
    if not isinstance(name, str) or not isinstance(role, str) or not name or not role:
        return None
    return name[:100], role[:32]


def decode(payload: bytes) -> dict[str, Any]:
    """A request's or reply's JSON object (``{}`` for no bytes); ``InputError`` if it is not one."""
    try:
        body = json.loads(payload) if payload else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"request is not JSON: {exc}") from None
    return _object(body, "request")


def decode_tick(payload: bytes) -> dict[str, Any]:
    """A tick's message on a world's events subject, as its runtime ``encode``d it, read by orjson: every world's
    surface and mirror read one a tick, at a third of ``json``'s cost. (orjson would read an integer past 64 bits as
    a float, which is why requests go through ``decode``; a tick's integers are ticks, counts and fixed-point
    numbers.) ``InputError`` if it is not a JSON object."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"message is not JSON: {exc}") from None
    return _object(body, "message")


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InputError(f"{what} must be a JSON object")
    return body


class Platform:
    """Base of the four: serves its ops on the bus and follows the instance's override and resume broadcasts.

    Ops named in ``always`` answer even while the override holds (status, reads); the rest raise
    ``OverrideActiveError`` until the instance is resumed.
    """

    name = "platform"
    always: frozenset[str] = frozenset({"status"})
    mutating: frozenset[str] = frozenset()  # the ops that change something: each request names who issued it

    def __init__(self, instance_id: str, bus: Bus) -> None:
        self.instance_id = check_instance_id(instance_id)
        self.bus = bus
        self.halted = False
        self.halted_at: int | None = None
        self._subs: list[Subscription] = []

    def ops(self) -> dict[str, Op]:
        return {"status": self.status}

    async def status(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"platform": self.name, "instance": self.instance_id, "halted": self.halted, "halted_at": self.halted_at}

    async def start(self) -> None:
        served = [
            self.bus.serve(op_subject(self.instance_id, self.name, op), self._guard(op, handler))
            for op, handler in self.ops().items()
        ]
        await self.listen(*served, self.bus.subscribe(control_subject(self.instance_id), self._on_control))

    async def listen(self, *subscribing: Awaitable[Subscription]) -> None:
        """Make these subscriptions at once, kept for ``stop``; the first failure raised once all are made (those
        made are kept, for ``stop`` to end). At once, because a bus may confirm each with a round trip to its server
        (NATS does): a world's four platforms make about forty, and one after another they made opening a world
        wait on forty round trips, each behind whatever else the event loop was doing (a host taking over hundreds
        of worlds beside the hundreds it runs)."""
        made = await asyncio.gather(*subscribing, return_exceptions=True)
        self._subs.extend(sub for sub in made if not isinstance(sub, BaseException))
        for outcome in made:
            if isinstance(outcome, BaseException):
                raise outcome

    async def stop(self) -> None:
        subs, self._subs = self._subs, []
        ended = await asyncio.gather(*(sub.unsubscribe() for sub in subs), return_exceptions=True)
        for outcome in ended:
            if isinstance(outcome, BaseException):
                raise outcome

    def _guard(self, op: str, handler: Op) -> Callable[[bytes], Awaitable[bytes]]:
        async def respond(payload: bytes) -> bytes:
            if self.halted and op not in self.always:
                raise OverrideActiveError(
                    f"{self.instance_id} is stopped by an emergency override since tick {self.halted_at}; "
                    "resume it first"
                )
            body = decode(payload)
            who = issuer(body)
            with bind(
                request_id=checked_request_id(body.get(RID)), identity=None if who is None else who[0],
                instance=self.instance_id,
            ):  # fmt: skip
                if op in self.mutating:
                    if who is None:
                        raise AuthenticationError(
                            f"{self.name}.{op} of {self.instance_id} names no identity ({BY}); it was refused"
                        )
                    log.info("%s.%s of %s by %s (%s)", self.name, op, self.instance_id, *who)
                reply = await handler(body)
            return reply if isinstance(reply, bytes) else encode(reply)

        return respond

    async def _on_control(self, message: Message) -> None:
        body = decode(message.payload)
        if body.get("kind") == "override":
            self.halted = True
            self.halted_at = int(body.get("tick", 0))
        elif body.get("kind") == "resume":
            self.halted = False
            self.halted_at = None
        await self.on_control(body)

    async def on_control(self, body: dict[str, Any]) -> None:
        """Hook for a platform's own reaction to override and resume."""
