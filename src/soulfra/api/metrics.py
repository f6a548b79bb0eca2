"""The API's part of the metrics: ``GET /metrics`` (the system's registry in Prometheus' text format) and the ASGI
middleware that counts every HTTP request by method, route TEMPLATE and status, and each 401 as an auth failure.

``/metrics`` takes a viewer token (``soulfra.api.policies``): a Prometheus scrape sends one as a bearer token
(``authorization.credentials_file`` in its scrape config), and the numbers tell how busy and how big the worlds are,
which is no business of an anonymous caller's. The route label is the template a route declares
(``/api/instances/{instance_id}/status``), never the raw path, and ``_unmatched`` for a path no route answers, so the
label's values are bounded by the routes the app has.
"""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from soulfra.api.policies import routes_of
from soulfra.metrics import CONTENT_TYPE, UNMATCHED_ROUTE, Metrics

__all__ = ["HttpMetrics", "metrics_router"]


def metrics_router(metrics: Metrics) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "the metrics"}},
    )
    async def scrape() -> Response:
        """This process's metrics in Prometheus' text exposition format (a viewer token, as a Prometheus scrape
        sends it)."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return router


class HttpMetrics:
    """ASGI middleware: ``soulfra_http_requests_total{method,route,status}``, the reply's duration by route, and
    ``soulfra_auth_failures_total`` for each 401. Outermost, so that refusals at the edge are counted too."""

    CACHE_LIMIT = 4096  # (method, path) -> route template remembered

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._routes: list[BaseRoute] | None = None
        self._templates: dict[tuple[str, str], str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers when the app raises before it starts a reply

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, counted)
        finally:
            route = self._template(scope)
            self.metrics.http_requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.http_duration.labels(route).observe(time.perf_counter() - started)
            if status == 401:
                self.metrics.auth_failures.inc()

    def _template(self, scope: Scope) -> str:
        key = (scope["method"], scope["path"])
        found = self._templates.get(key)
        if found is not None:
            return found
        if self._routes is None:
            self._routes = routes_of(scope["app"].router.routes)
        found = partial = UNMATCHED_ROUTE
        for route in self._routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                found = str(getattr(route, "path", UNMATCHED_ROUTE))
                break
            if match is Match.PARTIAL and partial == UNMATCHED_ROUTE:  # the path, another method's (405)
                partial = str(getattr(route, "path", UNMATCHED_ROUTE))
        else:
            found = partial
        if len(self._templates) >= self.CACHE_LIMIT:
            self._templates.clear()
        self._templates[key] = found
        return found
