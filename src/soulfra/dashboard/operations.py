"""The dashboard's operations pages: the audit log (``/audit``, admin) and health (``/health``, viewer). Shells only,
server-rendered like the other pages; what they show the browser reads from the JSON API (``/api/audit``,
``/api/audit/verify``, ``/readyz``, ``/api/instances``, ``/api/leases``), where access control decides again."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from soulfra.api.access import identity_of, session_of
from soulfra.dashboard.routes import CSP

__all__ = ["operations_pages"]

_HEADERS = {"content-security-policy": CSP, "cache-control": "no-store"}


def operations_pages() -> APIRouter:
    """The audit and health pages (a page's CSRF token is its session's, as access control found it)."""
    router = APIRouter(include_in_schema=False)
    env = Environment(
        loader=PackageLoader("soulfra.dashboard", "templates"),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def page(request: Request, name: str, **context: Any) -> HTMLResponse:
        session = session_of(request)
        html = env.get_template(name).render(
            identity=identity_of(request), csrf="" if session is None else session.csrf, **context
        )
        return HTMLResponse(html, headers=_HEADERS)

    @router.get("/audit", response_class=HTMLResponse)
    async def audit(request: Request) -> Response:
        """The audit log, filterable, with the chain's verification (access control lets only admins in)."""
        return page(request, "audit.html")

    @router.get("/health", response_class=HTMLResponse)
    async def health(request: Request) -> Response:
        """Readiness, failed instances and writer leases."""
        return page(request, "health.html")

    return router
