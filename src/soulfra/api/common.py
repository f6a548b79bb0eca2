"""What the API's route modules share: the documented answers that are no JSON body, the path parameters, the
bytes the surface already encoded, and the particulars a route adds to its request's audit row."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query, Request
from fastapi.responses import JSONResponse, Response

from soulfra.api.stream import LiveStreams
from soulfra.security.audit import current_action

__all__ = ["EVENT_STREAM", "NO_FIELDS", "AgentId", "InstanceId", "JsonBytes", "StreamAfter", "note", "stream_response"]

# The live streams' documented answer: server-sent events, never one JSON body.
EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "Server-sent events, one per surface event (``id`` is its number; ``Last-Event-ID`` resumes). The stream "
            "opens with ``retry`` and, when it starts from now, a bare ``id: N`` line naming the event it goes on after"
        ),
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}

# The documented body of a change that takes no fields: a JSON object all the same (the API takes a change only as
# application/json, so that no cross-site "simple" request can reach it), which may be empty.
NO_FIELDS: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "description": "No fields: send {}"}}},
    }
}

InstanceId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_\-]{1,64}$", description="An instance id, e.g. world-0")]
AgentId = Annotated[str, Path(min_length=1, max_length=64)]

# Where a live stream starts. Left out, from now: replaying up to a thousand old events first is what a client that
# just wants to watch does not want; ``after=0`` asks for that replay.
StreamAfter = Annotated[
    int | None,
    Query(
        ge=0,
        le=2**62,
        description=(
            "Go on after the event with this number; 0 replays every event still kept. Left out (and with no "
            "Last-Event-ID header), the stream starts from now: only events after the latest one the server holds "
            "when the stream opens, a point decided once and sent first as a bare `id: N` line, so a client that "
            "reconnects with Last-Event-ID loses and repeats nothing. A Last-Event-ID header, when sent, wins over "
            "this parameter."
        ),
    ),
]


class JsonBytes(JSONResponse):
    """A JSON body that is already encoded (the surface's cached replies), passed on as it is. A ``JSONResponse``
    so that the OpenAPI document shows its route's response model as the body's schema."""

    def render(self, content: Any) -> bytes:
        if not isinstance(content, bytes):
            raise TypeError("JsonBytes takes a body that is already encoded")
        return content


def note(detail: dict[str, Any]) -> None:
    """Add the route's particulars (the whisper, its acknowledgement...) to the request's audit row."""
    action = current_action()
    if action is not None:
        action.refine(detail=detail)


def stream_response(streams: LiveStreams, request: Request, instance_id: str, after: int | None) -> Response:
    """An instance's live events from after the event ``Last-Event-ID`` names (a reconnecting browser), else from
    after ``after``, else from now."""
    header = request.headers.get("last-event-id", "")
    return streams.response(instance_id, int(header) if header.isdigit() and len(header) < 19 else after)
