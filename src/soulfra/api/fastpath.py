"""SurfaceReads: the seed's three public paths, asked without a query string, answered before FastAPI's routing.

They are the hottest reads and need no validation: the reply is the surface's own cached bytes, fetched over the
bus exactly as the documented routes fetch them. Anything else, and any error, goes on to the app unchanged. Only
anonymous reads take this path: with a private surface (``enabled`` False) every request goes on to the app.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from soulfra.api.gateway import Gateway
from soulfra.errors import SoulfraError

__all__ = ["SURFACE_DEFAULTS", "SurfaceReads"]

# path -> (surface op, the request the route sends when no query is given); the routes use the same defaults.
SURFACE_DEFAULTS: dict[str, tuple[str, dict[str, Any]]] = {
    "/api/vibe/weather": ("weather", {"limit": 32}),
    "/api/agents/echo": ("echoes", {"limit": 50}),
    "/api/ritual/traces": ("traces", {"limit": 100}),
}
_HEADERS = [(b"content-type", b"application/json")]
_PAYLOADS = {path: json.dumps(body, separators=(",", ":")).encode() for path, (_, body) in SURFACE_DEFAULTS.items()}


class SurfaceReads:
    def __init__(self, app: ASGIApp, gateway: Gateway, *, enabled: bool = True) -> None:
        self.app = app
        self.gateway = gateway
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.enabled and scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]:
            found = SURFACE_DEFAULTS.get(scope["path"])
            if found is not None:
                try:
                    bridge = await self.gateway.bridge(self.gateway.default_instance)
                    body = await bridge.request_raw("surface", found[0], payload=_PAYLOADS[scope["path"]])
                except SoulfraError:
                    pass  # the route answers with the error, in the API's one format
                else:
                    headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)
