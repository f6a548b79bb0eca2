"""BodyLimits in process: each route's bound, refusals as the API's JSON errors whatever the app makes of a refused
body, the read timeout only while a body is arriving, and the limits of world files equal to the storage columns."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import String
from starlette.types import Message

from soulfra.api.limits import DOCUMENT_BYTES, MIN_BODY_RATE, BodyLimits, RequestLimits
from soulfra.errors import ConfigError
from soulfra.settings import UpSettings
from soulfra.store import schema
from soulfra.world import worldfile

KIB = 1 << 10
LIMITS = RequestLimits(max_body=64 * KIB, max_upload=256 * KIB, body_timeout=0.05)
Receive = Callable[[], Awaitable[Message]]


def app(seen: list[int]) -> FastAPI:
    """An app whose routes read their bodies as the real ones do; ``seen`` gets how many bytes each one read."""
    api = FastAPI()

    @api.post("/api/instances/{instance}/whispers")
    async def whisper(request: Request) -> JSONResponse:
        try:
            body = await request.body()
        except Exception:
            return JSONResponse({"code": "mine"}, status_code=400)
        seen.append(len(body))
        return JSONResponse({"read": len(body)})

    @api.post("/api/import")
    async def upload(request: Request) -> JSONResponse:
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            seen.append(total)
        return JSONResponse({"read": total})

    @api.post("/api/stream")
    async def waits_for_the_client(request: Request) -> JSONResponse:
        await request.body()
        message = await request.receive()  # after the body: waiting as a stream waits for the disconnect
        return JSONResponse({"then": message["type"]})

    return api


def call(
    method: str, path: str, receive: Receive, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[bytes, bytes], dict[str, Any], list[int]]:
    seen: list[int] = []
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
        "raw_path": path.encode(), "root_path": "", "scheme": "http", "query_string": b"",
        "headers": headers or [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
    }  # fmt: skip
    asyncio.run(BodyLimits(app(seen), LIMITS)(scope, receive, send))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"], sent
    return sent[0]["status"], dict(sent[0]["headers"]), json.loads(sent[1]["body"]), seen


def pieces(*sizes: int, then: Receive | None = None) -> Receive:
    """A client sending a body in pieces of these sizes, then ``then`` (None: nothing more, ever)."""
    messages = [
        {"type": "http.request", "body": b"x" * size, "more_body": n < len(sizes) - 1} for n, size in enumerate(sizes)
    ]

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        if then is not None:
            return await then()
        await asyncio.Event().wait()  # nothing more, ever
        raise AssertionError

    return receive


def stalled(size: int) -> Receive:
    """A client that sends ``size`` bytes of a longer body and then nothing."""
    first = [{"type": "http.request", "body": b"x" * size, "more_body": True}]

    async def receive() -> Message:
        if first:
            return first.pop(0)
        await asyncio.Event().wait()
        raise AssertionError

    return receive


def test_a_declared_length_over_the_bound_is_refused_without_reading() -> None:
    async def receive() -> Message:
        raise AssertionError("the body was read")

    length = [(b"content-length", str(100 << 20).encode())]
    status, headers, body, seen = call("POST", "/api/instances/w/whispers", receive, length)
    assert (status, body["code"], headers[b"connection"]) == (413, "body_too_large", b"close")
    assert body["detail"] == f"the request body is {100 << 20} bytes, over the limit of {64 * KIB} bytes"
    assert seen == []
    status, _, body, _ = call("POST", "/api/import", receive, length)
    assert (status, body["code"]) == (413, "package_too_large")


def test_a_body_is_refused_as_soon_as_it_passes_its_bound() -> None:
    status, headers, body, seen = call("POST", "/api/instances/w/whispers", pieces(40 * KIB, 40 * KIB, 40 * KIB))
    assert (status, body["code"], headers[b"connection"]) == (413, "body_too_large", b"close")
    assert seen == []  # the route's own 400 for the failed read was replaced by the refusal
    status, _, body, seen = call("POST", "/api/import", pieces(*[100 * KIB] * 5))
    assert (status, body["code"]) == (413, "package_too_large")
    assert seen == [100 * KIB, 200 * KIB]  # the third piece never reached the route


def test_a_body_that_stops_arriving_is_refused_with_408() -> None:
    for path in ("/api/instances/w/whispers", "/api/import"):
        status, headers, body, _ = call("POST", path, stalled(100))
        assert (status, body["code"], headers[b"connection"]) == (408, "body_timeout", b"close")
        assert "nothing came for 0.05 s" in body["detail"]


def test_a_body_that_trickles_in_is_refused_with_408() -> None:
    """One byte just inside each timeout would hold a connection for days: after one timeout's grace, a body
    must average ``MIN_BODY_RATE``."""

    async def trickle() -> Message:
        await asyncio.sleep(0.6 * LIMITS.body_timeout)
        return {"type": "http.request", "body": b"x", "more_body": True}

    status, headers, body, seen = call("POST", "/api/instances/w/whispers", trickle)
    assert (status, body["code"], headers[b"connection"]) == (408, "body_timeout", b"close")
    assert f"slower than {MIN_BODY_RATE} bytes a second" in body["detail"]
    assert seen == []


def test_within_bounds_and_after_the_body_nothing_is_limited() -> None:
    status, _, body, _ = call("POST", "/api/instances/w/whispers", pieces(40 * KIB, 24 * KIB))
    assert (status, body) == (200, {"read": 64 * KIB})

    async def disconnect_later() -> Message:
        await asyncio.sleep(4 * LIMITS.body_timeout)  # a client that stays longer than the timeout, then leaves
        return {"type": "http.disconnect"}

    status, _, body, _ = call("POST", "/api/stream", pieces(10, 10, then=disconnect_later))
    assert (status, body) == (200, {"then": "http.disconnect"})


def test_each_route_has_its_bound() -> None:
    bound = LIMITS.bound
    assert bound("POST", "/api/instances/w/whispers").size == 64 * KIB
    assert bound("POST", "/api/import").size == 256 * KIB
    assert bound("POST", "/api/instances").size == DOCUMENT_BYTES  # a world file
    assert bound("POST", "/api/god").size == bound("POST", "/api/god/fork").size == DOCUMENT_BYTES
    assert bound("GET", "/api/import").size == 64 * KIB
    assert RequestLimits(max_body=4 << 20).bound("POST", "/api/instances").size == 4 << 20
    for bad in ({"max_body": 0}, {"max_upload": -1}, {"body_timeout": 0.0}):
        with pytest.raises(ConfigError, match="must be positive"):
            RequestLimits(**bad)


def test_sizes_on_the_command_line() -> None:
    sizes = [UpSettings.load({"max_body": text}).max_body for text in ("65536", "64KiB", "1MB", "1 GiB")]
    assert sizes == [65536, 65536, 10**6, 1 << 30]


def test_world_file_bounds_are_the_storage_columns() -> None:
    name, agent_id = schema.instances.c.name.type, schema.agents.c.id.type
    assert isinstance(name, String)
    assert isinstance(agent_id, String)
    assert (name.length, agent_id.length) == (worldfile.MAX_WORLD_NAME, worldfile.MAX_AGENT_ID)
