"""CrossPlatformBridge: the only way in to an instance's platforms, as request/reply over the bus.

The named calls (``pause``, ``resume``, ``send_emergency_override``, ``send_whisper_to_runtime``, ``submit``,
``unified_snapshot``) hand back typed replies (``soulfra.platforms.replies``); ``request`` is the wire, a dict for
any op. Every call has a timeout. Errors arrive typed: ``BusTimeoutError`` (no reply in time), ``NoRespondersError``
(that platform is not running), or the ``SoulfraError`` subclass the platform raised (``OverrideActiveError``, ...).
Every request carries the identity that issued it (``_by``): the one of the action in progress
(``soulfra.security.audit``), else the bridge's own (``LOCAL`` unless told otherwise: this process, which holds the
bridge, asking outside any action); a platform refuses a change without it, so a client of the bus that is not a
Soulfra process cannot make one without saying who it is. It carries the id of the request being handled in this
context too (``_rid``, from ``soulfra.logs``), so the platform's log lines about it name that request. Given
``metrics``, each request is timed and its errors counted there, by platform and op (``Metrics.bus_request``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from soulfra.bus.port import Bus
from soulfra.errors import InputError, SoulfraError
from soulfra.metrics import Metrics
from soulfra.platforms.base import BY, PLATFORMS, by_field, check_instance_id, decode, encode, op_subject, rid_field
from soulfra.platforms.replies import InputAck, RunState, UnifiedRecord
from soulfra.security.audit import current_identity
from soulfra.security.identity import Identity, process_identity

__all__ = ["LOCAL", "CrossPlatformBridge"]

LOCAL = process_identity("local")  # code of this process asking outside any action (a test, a tool)


class CrossPlatformBridge:
    def __init__(
        self,
        bus: Bus,
        instance_id: str,
        *,
        timeout: float = 5.0,
        identity: Identity | None = LOCAL,
        metrics: Metrics | None = None,
    ) -> None:
        self.bus = bus
        self.instance_id = check_instance_id(instance_id)
        self.timeout = timeout
        self.identity = identity  # who asks when no action is in progress (None: nobody, and changes are refused)
        self.metrics = metrics

    async def request(
        self, platform: str, op: str, body: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        return decode(await self.request_raw(platform, op, body, timeout=timeout))

    async def request_raw(
        self,
        platform: str,
        op: str,
        body: dict[str, Any] | None = None,
        *,
        payload: bytes | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """``request`` without decoding the reply: the JSON bytes the platform sent, for passing straight on.
        ``payload`` is the body already encoded, for callers that send the same request again and again."""
        if platform not in PLATFORMS:
            raise InputError(f"unknown platform {platform!r}; expected one of {', '.join(PLATFORMS)}")
        subject = op_subject(self.instance_id, platform, op)
        if payload is None:
            who = current_identity() or self.identity
            by = {} if who is None else {BY: by_field(who)}
            payload = encode({**(body or {}), **by, **rid_field()})
        timed: AbstractContextManager[None] = (
            nullcontext() if self.metrics is None else self.metrics.bus_request(platform, op)
        )
        with timed:
            return await self.bus.request(subject, payload, timeout=timeout or self.timeout)

    async def fetch_from_runtime(self, op: str = "status", body: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("runtime", op, body)

    async def fetch_from_surface(self, op: str = "status", body: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("surface", op, body)

    async def fetch_from_protocol(self, op: str = "status", body: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("protocol", op, body)

    async def fetch_from_mirror(self, op: str = "status", body: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("mirror", op, body)

    async def send_whisper_to_runtime(
        self, text: str, *, target: str = "*", tone: str = "gentle", tick: int | None = None
    ) -> InputAck:
        """Store a whisper; the reply is the acknowledgement: its sequence number and the tick it applies at."""
        body: dict[str, Any] = {"text": text, "target": target, "tone": tone}
        if tick is not None:
            body["tick"] = tick
        return InputAck.from_json(await self.request("runtime", "whisper", body))

    async def submit(self, inputs: list[dict[str, Any]]) -> tuple[InputAck, ...]:
        """Store inputs (JSON objects, each with its ``type``) in one request; one acknowledgement each, in order."""
        reply = await self.request("runtime", "submit", {"inputs": inputs})
        return tuple(InputAck.from_json(ack) for ack in reply["acks"])

    async def send_emergency_override(self, reason: str = "") -> RunState:
        """Stop every platform of the instance; they stay stopped until ``resume``."""
        return RunState.from_json(await self.request("runtime", "override", {"reason": reason}))

    async def resume(self) -> RunState:
        return RunState.from_json(await self.request("runtime", "resume"))

    async def pause(self) -> RunState:
        return RunState.from_json(await self.request("runtime", "pause"))

    async def unified_snapshot(self) -> UnifiedRecord:
        """Have the mirror merge all four platforms at one tick and store the record."""
        return UnifiedRecord.from_json(await self.request("mirror", "unified", timeout=max(self.timeout, 10.0)))

    async def cross_platform_status(self) -> dict[str, Any]:
        """Each platform's status, or the error that stood in for it (a platform that is down is reported, not
        raised)."""
        report: dict[str, Any] = {}
        for platform in PLATFORMS:
            try:
                report[platform] = await self.request(platform, "status", timeout=min(self.timeout, 2.0))
            except SoulfraError as exc:  # reported per platform, so one being down does not hide the others
                report[platform] = {"platform": platform, "error": {"code": exc.code, "detail": exc.detail}}
        return report
