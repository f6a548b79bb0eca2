"""Limits at the HTTP edge: a maximum body size per route and a read timeout for slow bodies, enforced as the body
is read (``BodyLimits``, ASGI middleware), so no route ever holds more of a request than its bound.

A refusal is the API's JSON error and closes the connection: 413 before anything is read when ``Content-Length``
declares too much, or as soon as the running total passes the bound (chunked bodies, bodies longer than declared);
408 when a client stops sending mid-body. Must not: buffer or parse bodies itself; the routes read them, through it.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from soulfra.errors import BodyTimeoutError, BodyTooLargeError, ConfigError, PackageLimitError

__all__ = ["DOCUMENT_BYTES", "BodyLimits", "Bound", "RequestLimits", "json_refusal"]

KIB = 1 << 10
MIB = 1 << 20
# The larger JSON bodies: a world file in POST /api/instances (its model allows 1,000,000 characters) and the
# god-mode commands (their models allow lists of up to 10,000 instance ids or sequence numbers).
DOCUMENT_BYTES = MIB
_DOCUMENT_ROUTES = ("/api/instances", "/api/god")
MIN_BODY_RATE = KIB  # bytes a second a body must average once one body timeout has passed
_UPLOAD_ROUTES = ("/api/import",)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bound:
    """The bound on one request's body: its size, the error code of a refusal, and what the detail calls it."""

    size: int
    code: str = BodyTooLargeError.code
    what: str = "the request body"


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestLimits:
    """What the API accepts: ``max_body`` bytes for JSON routes, ``max_upload`` for package imports, and
    ``body_timeout`` seconds without a byte of a body that has not all arrived."""

    max_body: int = 64 * KIB
    max_upload: int = 1 << 30
    body_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_body", "max_upload", "body_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"request limit {name} must be positive, not {getattr(self, name)}")

    def bound(self, method: str, path: str) -> Bound:
        """The bound on a request's body, by its route."""
        if method == "POST" and path in _UPLOAD_ROUTES:
            return Bound(size=self.max_upload, code=PackageLimitError.code, what="the upload")
        if method == "POST" and (path in _DOCUMENT_ROUTES or path.startswith("/api/god/")):
            return Bound(size=max(self.max_body, DOCUMENT_BYTES))
        return Bound(size=self.max_body)


class _Refused(Exception):  # noqa: N818 -- private: raised to a route reading a refused body, caught below
    pass


class BodyLimits:
    """ASGI middleware: each request's body within its route's ``Bound`` and arriving without long pauses."""

    def __init__(self, app: ASGIApp, limits: RequestLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bound = self.limits.bound(scope["method"], scope["path"])
        declared = _content_length(scope["headers"])
        if declared is not None and declared > bound.size:
            detail = f"{bound.what} is {declared} bytes, over the limit of {bound.size} bytes"
            await _refuse(send, 413, bound.code, detail)
            return
        body = _Body(receive, bound, self.limits.body_timeout)
        started = False

        async def guarded(message: Message) -> None:
            nonlocal started
            if body.refusal is not None:
                return  # whatever the app makes of the refused body, the client gets the refusal
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, body.receive, guarded)
        except Exception:
            if body.refusal is None or started:
                raise  # not ours; or too late to answer (uvicorn closes the connection)
        if body.refusal is not None and not started:
            await _refuse(send, *body.refusal)


class _Body:
    """The request's ``receive``, counting the body's bytes and timing each wait until the body is complete."""

    def __init__(self, receive: Receive, bound: Bound, timeout: float) -> None:
        self._receive = receive
        self._bound = bound
        self._timeout = timeout
        self._received = 0
        self._started: float | None = None
        self._complete = False
        self.refusal: tuple[int, str, str] | None = None

    async def receive(self) -> Message:
        if self._complete:
            return await self._receive()  # waiting for the disconnect (a stream) takes as long as it takes
        if self.refusal is not None:
            raise _Refused
        if self._started is None:
            self._started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                message = await self._receive()
        except TimeoutError:
            detail = f"{self._bound.what} stopped arriving: nothing came for {self._timeout:g} s"
            self.refusal = (408, BodyTimeoutError.code, detail)
            raise _Refused from None
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            late = time.monotonic() - self._started - self._timeout  # past the grace of one timeout...
            if late > 0 and self._received < MIN_BODY_RATE * late and message.get("more_body", False):
                detail = (
                    f"{self._bound.what} is arriving slower than {MIN_BODY_RATE} bytes a second "
                    f"({self._received} bytes in {late + self._timeout:.0f} s)"
                )  # ...a body must keep up a trickle at least, or one byte per timeout would hold it for days
                self.refusal = (408, BodyTimeoutError.code, detail)
                raise _Refused
            if self._received > self._bound.size:
                detail = f"{self._bound.what} is over the limit of {self._bound.size} bytes"
                self.refusal = (413, self._bound.code, detail)
                raise _Refused
            self._complete = not message.get("more_body", False)
        else:
            self._complete = True
        return message


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None  # the server refuses a malformed length itself
    return None


async def _refuse(send: Send, status: int, code: str, detail: str) -> None:
    await json_refusal(send, status, code, detail, extra=[(b"connection", b"close")])  # the rest is not read


async def json_refusal(
    send: Send, status: int, code: str, detail: str, *, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer ``{"code", "detail"}`` with ``status`` (and ``extra`` headers), as the API's error handler would."""
    body = json.dumps({"code": code, "detail": detail}, separators=(",", ":")).encode()  # as JSONResponse writes
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
