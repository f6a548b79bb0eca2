"""The dashboard's routes: sign-in and sign-out, the pages (server-rendered with Jinja2), the instances fragment that
htmx refreshes, and the static files. Thin like the API: a page reads what the JSON routes read, through the same
gateway calls and the same identity filter, and every change the page makes goes to the JSON API itself (with the
session's CSRF token), where ``soulfra.api.access`` enforces the role whatever the page shows.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from soulfra.api.access import RateLimits, identity_of, session_of
from soulfra.api.common import InstanceId
from soulfra.api.gateway import Gateway
from soulfra.dashboard.assets import load_assets
from soulfra.dashboard.lineage import layout, status_of
from soulfra.dashboard.puppet import puppet_router
from soulfra.errors import (
    AuthenticationError,
    CsrfError,
    NotFoundError,
    RateLimitedError,
    SoulfraError,
    UnsupportedMediaError,
)
from soulfra.offload import off_loop
from soulfra.security.audit import current_action
from soulfra.security.identity import Identity
from soulfra.security.sessions import CSRF_FIELD, SESSION_COOKIE, Session, SessionTable
from soulfra.security.tokens import TokenService, token_hash
from soulfra.world.vibe import PHASES

__all__ = ["CSP", "dashboard_router"]

# Only this server, and no inline script or style: the pages' scripts are our modules and the vendored htmx.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_PAGE_HEADERS = {"content-security-policy": CSP, "cache-control": "no-store"}
_MAX_FORM = 4096  # bytes of a sign-in or sign-out form
_TONES = ("gentle", "urgent", "playful", "solemn", "dark")


def _templates() -> Environment:
    return Environment(
        loader=PackageLoader("soulfra.dashboard", "templates"),
        autoescape=select_autoescape(["html", "svg"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (the sign-in and sign-out forms), first value of each field."""
    body = await request.body()
    if len(body) > _MAX_FORM:
        return {}
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True, max_num_fields=8)
    return {key: values[0] for key, values in parsed.items() if values}


def _cross_site(request: Request) -> bool:
    """A request another site's page made (a form posted from there): the browser says so in ``Sec-Fetch-Site``, or
    older ones by an ``Origin`` that is not this server's. (With ``Referrer-Policy: no-referrer`` a browser sends
    ``Origin: null`` even for this server's own forms, so ``Sec-Fetch-Site``, where sent, decides.)"""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("cross-site", "same-site")
    origin = request.headers.get("origin")
    return origin is not None and urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()


def _is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/x-www-form-urlencoded"


def _refusal(error: SoulfraError, status: int) -> JSONResponse:
    """The API's error shape for a refused form, noted in the request's audit row."""
    action = current_action()
    if action is not None:
        action.outcome = error.code
        action.detail.setdefault("error", error.detail)
    return JSONResponse({"code": error.code, "detail": error.detail}, status_code=status)


def _source(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def dashboard_router(gateway: Gateway, tokens: TokenService, sessions: SessionTable, limits: RateLimits) -> APIRouter:
    """The dashboard over ``gateway``; ``sessions`` is the table ``AccessControl`` reads cookies from, ``limits``
    its failure counts (a wrong token typed into the sign-in form counts as a failed authentication)."""
    router = APIRouter(include_in_schema=False)
    env = _templates()
    assets = load_assets()

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers=_PAGE_HEADERS)

    async def signed_in(request: Request) -> tuple[Identity, Session] | None:
        """The session of the request's cookie and its token's identity, or None (no session, or its token is no
        longer valid: then the session ends)."""
        session = await off_loop(sessions.get, request.cookies.get(SESSION_COOKIE))
        if session is None:
            return None
        try:
            identity = tokens.fresh_digest(session.token_digest)
            if identity is None:
                identity = await off_loop(tokens.authenticate_digest, session.token_digest)
        except AuthenticationError:
            await off_loop(sessions.close, session.id)
            return None
        return identity, session

    def signin(status: int = 200, error: str | None = None) -> HTMLResponse:
        return page("signin.html", status, error=error)

    def _form_refusal(request: Request) -> Response | None:
        """The answer to a sign-in or sign-out form that is not one of this server's own pages' (None: it is)."""
        if not _is_form(request):
            return _refusal(UnsupportedMediaError("this form takes application/x-www-form-urlencoded"), 415)
        if _cross_site(request):
            return _refusal(CsrfError("a form posted from another site's page: use this server's own pages"), 403)
        return None

    @router.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> Response:
        """The instances view, or the sign-in form for a browser without a session."""
        found = await signed_in(request)
        if found is None:
            return signin()
        identity, session = found
        return page("instances.html", identity=identity, csrf=session.csrf)

    @router.post("/login")
    async def login(request: Request) -> Response:
        """Exchange an API token for a session cookie (HttpOnly, SameSite=Strict, Secure over TLS)."""
        refusal = _form_refusal(request)
        if refusal is not None:
            return refusal
        source = _source(request)
        try:
            limits.check_source(source)
        except RateLimitedError as exc:
            return signin(429, exc.detail)
        token = (await _form(request)).get("token", "").strip()
        action = current_action()
        try:
            if not token:
                raise AuthenticationError("type an API token")
            identity = await off_loop(tokens.authenticate, token)
        except AuthenticationError as exc:
            limits.failed(source)
            if action is not None:
                action.outcome = exc.code
            return signin(401, f"not signed in: {exc.detail}")
        session = await off_loop(sessions.open, token_hash(token))
        if action is not None:
            action.identity = identity
            action.refine(detail={"session": "opened"})
        response = RedirectResponse("/", status_code=303, headers={"cache-control": "no-store"})
        response.set_cookie(
            SESSION_COOKIE, session.id, max_age=int(sessions.lifetime), path="/", httponly=True, samesite="strict",
            secure=request.url.scheme == "https",
        )  # fmt: skip
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        """End the session (the form carries its CSRF token, so another site cannot sign the user out)."""
        refusal = _form_refusal(request)
        if refusal is not None:
            return refusal
        session = await off_loop(sessions.get, request.cookies.get(SESSION_COOKIE))
        if session is not None:
            if not session.csrf_matches((await _form(request)).get(CSRF_FIELD)):
                return _refusal(CsrfError("sign-out refused: the form's CSRF token is not this session's"), 403)
            await off_loop(sessions.close, session.id)
        response = RedirectResponse("/", status_code=303, headers={"cache-control": "no-store"})
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    async def weather_of(instance_id: str) -> dict[str, Any] | None:
        try:
            bridge = await gateway.bridge(instance_id)
            reply = await bridge.request("surface", "weather", {"limit": 1})
        except SoulfraError:
            return None
        weather = reply.get("weather")
        return weather if isinstance(weather, dict) else None

    @router.get("/ui/instances", response_class=HTMLResponse)
    async def instances_fragment(request: Request) -> Response:
        """The instances table and the lineage graph, as the instance list (``GET /api/instances``) gives them to
        this session's identity; htmx swaps it in every few seconds."""
        identity = identity_of(request)
        rows = [row for row in await gateway.list_instances() if identity.sees(str(row["id"]))]
        live = [str(row["id"]) for row in rows if status_of(row) not in ("abandoned", "stored")]
        weathers = dict(zip(live, await asyncio.gather(*(weather_of(i) for i in live)), strict=True))
        listed = [
            {**row, "display_status": status_of(row), "vibe": weathers.get(str(row["id"]))}
            for row in sorted(rows, key=lambda r: str(r.get("created_at") or ""))
        ]
        graph = layout(rows)
        return page("_instances.html", instances=listed, graph=graph, default=gateway.default_instance)

    @router.get("/worlds/{instance_id}", response_class=HTMLResponse)
    async def world(request: Request, instance_id: InstanceId) -> Response:
        """One world, live: its page loads the JSON API and the event stream from the browser."""
        identity = identity_of(request)  # access control let a viewer of this instance in, by session or token
        session = session_of(request)
        await gateway.bridge(instance_id)  # 404 for an instance this server does not know
        return page(
            "world.html", identity=identity, csrf="" if session is None else session.csrf, instance=instance_id,
            tones=_TONES, phases=PHASES,
            can_whisper=identity.allows("operator"), can_freeze=identity.allows("puppet-master"),
        )  # fmt: skip

    router.include_router(puppet_router(gateway))  # /merge and /packages (soulfra.dashboard.puppet)

    @router.get("/static/{asset:path}")
    async def static(request: Request, asset: str) -> Response:
        found = assets.get(asset)
        if found is None:
            raise NotFoundError(f"no dashboard file {asset!r}")
        headers = {"etag": found.etag, "cache-control": "no-cache"}  # revalidated: a new version shows at once
        if request.headers.get("if-none-match") == found.etag:
            return Response(status_code=304, headers=headers)
        return Response(found.body, media_type=found.media_type, headers=headers)

    return router
