"""The puppet master's own dashboard pages: ``/merge`` (choose two instances, preview the conflicts, choose a policy
per domain, merge, read the report) and ``/packages`` (export as a download, import as an upload with progress).
Server-rendered shells like the other pages: what they show comes from the JSON API in the browser (merge.js,
packages.js), and every change goes to the JSON API with the session's CSRF token, where the role is enforced.
Must not: carry out a command itself.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from soulfra.api.access import identity_of, session_of
from soulfra.api.gateway import Gateway
from soulfra.dashboard.lineage import status_of
from soulfra.meta.merge import DEFAULT_POLICIES, DOMAINS, POLICIES

__all__ = ["puppet_router"]


def puppet_router(gateway: Gateway) -> APIRouter:
    """The merge and packages pages over ``gateway`` (a page's CSRF token is its session's, as access control found
    it)."""
    from soulfra.dashboard.routes import CSP  # noqa: PLC0415 -- routes includes this router: imported when called

    router = APIRouter(include_in_schema=False)
    env = Environment(
        loader=PackageLoader("soulfra.dashboard", "templates"),
        autoescape=select_autoescape(["html", "svg"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def page(name: str, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(**context)
        return HTMLResponse(html, headers={"content-security-policy": CSP, "cache-control": "no-store"})

    async def context(request: Request) -> dict[str, Any]:
        identity = identity_of(request)  # access control let a puppet master in, by session or token
        session = session_of(request)
        rows = [row for row in await gateway.list_instances() if identity.sees(str(row["id"]))]
        live = [
            {"id": str(row["id"]), "status": status_of(row), "tick": row.get("tick", row.get("head_tick"))}
            for row in sorted(rows, key=lambda r: str(r.get("created_at") or ""))
            if status_of(row) != "abandoned"
        ]
        return {"identity": identity, "csrf": "" if session is None else session.csrf, "instances": live}

    @router.get("/merge", response_class=HTMLResponse)
    async def merge_page(request: Request) -> Response:
        """Two instances into one: the preview is ``POST /api/god/merge/preview``, the merge ``/api/god/merge``."""
        return page(
            "merge.html", **await context(request), domains=DOMAINS, policies=POLICIES, defaults=DEFAULT_POLICIES
        )

    @router.get("/packages", response_class=HTMLResponse)
    async def packages_page(request: Request) -> Response:
        """Export (``GET /api/instances/{id}/export``) and import (``POST /api/import``) of signed packages."""
        return page("packages.html", **await context(request))

    return router
