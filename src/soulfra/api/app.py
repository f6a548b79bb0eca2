"""The public HTTP API: an app factory over a ``Gateway``, with its error table, its operations routes, the default
instance's public surface and the instance list; one instance's routes are ``soulfra.api.instances``', the puppet
master's ``soulfra.api.meta``', tokens and the audit log ``soulfra.api.admin``'. Thin: every route is one call,
translated.

Errors leave as JSON ``{"code", "detail"}`` with the status from ``STATUS``; no route answers 500 for bad input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES

from soulfra import __version__
from soulfra.api.access import AccessControl, AccessSettings, RateLimits, identity_of
from soulfra.api.admin import admin_router
from soulfra.api.common import EVENT_STREAM, AgentId, JsonBytes, StreamAfter, stream_response
from soulfra.api.docs import docs_router
from soulfra.api.fastpath import SURFACE_DEFAULTS, SurfaceReads
from soulfra.api.gateway import Gateway
from soulfra.api.history import history_router
from soulfra.api.instances import instance_router
from soulfra.api.limits import BodyLimits, RequestLimits
from soulfra.api.metrics import HttpMetrics, metrics_router
from soulfra.api.minds import minds_router
from soulfra.api.models import (
    Echoes,
    Health,
    InstanceList,
    NotReady,
    Ready,
    Traces,
    WeatherReport,
)
from soulfra.api.operations import operations_router
from soulfra.api.reflection import reflection_router
from soulfra.api.stream import LiveStreams
from soulfra.errors import (
    AuthenticationError,
    BadHostError,
    BodyTimeoutError,
    BodyTooLargeError,
    BusError,
    BusTimeoutError,
    CodecError,
    ConfigError,
    ConflictError,
    HistoryIntegrityError,
    InputError,
    InstanceFailedError,
    LineageError,
    MergeError,
    NotFoundError,
    OutputError,
    PackageError,
    PackageLimitError,
    PermissionDeniedError,
    PlatformError,
    RateLimitedError,
    ServerUnavailableError,
    SoulfraError,
    StorageError,
    StorageUnavailableError,
    UnknownAgentError,
    UnsupportedMediaError,
    ValidationFailedError,
    WorldFileError,
)
from soulfra.metrics import Metrics
from soulfra.security.audit import AuditRecorder, current_action
from soulfra.security.sessions import SessionTable
from soulfra.security.tokens import TokenService

if TYPE_CHECKING:
    from soulfra.meta.service import PuppetMaster

__all__ = ["EVENT_STREAM", "STATUS", "create_app"]

# One table from error class to HTTP status: the most specific class listed wins. A class that is not listed takes
# its nearest listed ancestor's status only where that status is right for it too; tests/unit/test_error_map.py pins
# the status of every class of the tree, so a new class cannot go without a decision.
STATUS: dict[type[SoulfraError], int] = {
    # The root is never raised itself; one arrives only as a code this side has no class for: a failure of ours.
    SoulfraError: 500,
    # What the request carries is wrong; sending it again unchanged gets the same answer. UnknownAgentError: the
    # agent the input names is what is not there. PackageSignatureError takes PackageError's 422: a package that
    # does not verify is content we refuse, not a missing permission of the caller.
    InputError: 422,
    UnknownAgentError: 404,
    WorldFileError: 422,  # a world file is only ever read from the request's body here
    BodyTooLargeError: 413,  # refused by the body limits at the edge, before any route runs
    BodyTimeoutError: 408,
    PackageError: 422,
    PackageLimitError: 413,
    ValidationFailedError: 422,  # the protocol's rules refuse the content itself; it is no passing state
    # The request does not fit the state it meets: something missing, or a state that refuses it. LeaseHeldError and
    # LeaseLostError take ConflictError's 409 (another writer holds that instance); OverrideActiveError takes
    # PlatformError's 409 (it holds until an operator resumes the instance).
    NotFoundError: 404,
    ConflictError: 409,
    PlatformError: 409,
    InstanceFailedError: 409,
    LineageError: 409,
    MergeError: 409,
    # Something the server relies on does not answer; the same request can succeed later. BusUnavailableError and
    # NoRespondersError take BusError's 503 (a NATS server or a platform that is not running).
    StorageError: 503,
    StorageUnavailableError: 503,
    BusError: 503,
    BusTimeoutError: 504,
    ServerUnavailableError: 502,  # a Soulfra server this one asked did not answer: we stood in as its gateway
    # Access control. LicenceError takes PermissionDeniedError's 403: the instance's own terms forbid the request.
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    RateLimitedError: 429,
    UnsupportedMediaError: 415,
    BadHostError: 400,
    # The server's own fault, which no retry mends. Request parameters are checked at the edge, so a ConfigError here
    # is the server's configuration (its keys, limits, lease directory). A CodecError (DecompressionLimitError takes
    # it) is stored state this server cannot decode; an uploaded package's bad bytes are a PackageError instead.
    # OutputError: a file the server could not write. HistoryIntegrityError: damaged history is no outage (not 503).
    ConfigError: 500,
    CodecError: 500,
    OutputError: 500,
    HistoryIntegrityError: 500,
}


GZIP_MIN_BYTES = 1024  # smaller replies go as they are: a header and a deflate block would save little
GZIP_LEVEL = 6  # zlib's default: within a few percent of 9 on JSON, at about half its time on a 1 MB page
# Starlette's own list (the live streams' text/event-stream among them) and the packages, which are zip files already
NOT_GZIPPED = (*DEFAULT_EXCLUDED_CONTENT_TYPES, "application/vnd.soulfra.package+zip")


def status_for(error: SoulfraError) -> int:
    """The HTTP status of ``error``: that of the most specific of its classes in ``STATUS`` (the root is there)."""
    return next(STATUS[cls] for cls in type(error).__mro__ if cls in STATUS)


def problem(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"code": code, "detail": detail}, status_code=status)


def refused(code: str, detail: str) -> None:
    """The action being audited (a mutating request) ended in the error ``code``."""
    action = current_action()
    if action is not None:
        action.outcome = code
        action.detail.setdefault("error", detail)


def create_app(
    gateway: Gateway,
    *,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    extra: Sequence[APIRouter] = (),
    limits: RequestLimits | None = None,
    tokens: TokenService,
    recorder: AuditRecorder | None = None,
    access: AccessSettings | None = None,
    metrics: Metrics | None = None,
    puppet: PuppetMaster | None = None,
    sessions: SessionTable | None = None,
) -> FastAPI:
    """The API over ``gateway``. Who may call what is ``soulfra.api.access``'s: ``tokens`` authenticates,
    ``recorder`` audits every mutating request (None: nothing is audited, for tests of other things), ``access``
    says which hosts, origins and rates are allowed. ``metrics``: the system's, served at ``/metrics`` (None: a
    registry of the app's own). ``puppet``: the puppet master whose failed instances make ``/readyz`` fail.
    ``sessions``: the dashboard's sign-ins (None: a ``SessionTable`` on the tokens' store, with its defaults: every
    API process on that database honours them)."""
    access = access or AccessSettings()
    metrics = metrics or Metrics()
    app = FastAPI(
        title="Soulfra",
        version=__version__,
        description="Autonomous multi-agent worlds: the public surface and the operator's controls.",
        lifespan=lifespan,
        docs_url=None,  # served by soulfra.api.docs, with its files from this server rather than a CDN
        redoc_url=None,  # none: ReDoc always links to its maker's site, and one documentation page is enough
    )
    app.state.gateway = gateway
    app.state.puppet = puppet
    app.add_middleware(SurfaceReads, gateway=gateway, enabled=not access.private_surface)  # anonymous reads only
    app.add_middleware(BodyLimits, limits=limits or RequestLimits())  # bodies are bounded before any route reads
    sessions = app.state.sessions = SessionTable(tokens.store) if sessions is None else sessions  # cookies' sessions
    guard = RateLimits(access)  # failed sign-ins count toward the same lockout as failed tokens
    if access.enforce:  # always, but in the benchmark that measures what it costs
        app.add_middleware(
            AccessControl, tokens=tokens, recorder=recorder, settings=access, limits=guard, sessions=sessions
        )  # before anything runs
    if access.cors_origins:  # no CORS headers at all unless origins are configured
        app.add_middleware(
            CORSMiddleware, allow_origins=list(access.cors_origins), allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["authorization", "content-type", "x-request-id"], expose_headers=["x-request-id"],
        )  # fmt: skip
    # Outermost, so that every reply is compressed: the fast path's, access control's refusals, the static files.
    # Not the live streams: GZipMiddleware passes text/event-stream through as it is (compressing it would hold
    # events back until a block fills).
    app.add_middleware(
        GZipMiddleware, minimum_size=GZIP_MIN_BYTES, compresslevel=GZIP_LEVEL, exclude_content_types=NOT_GZIPPED
    )
    app.add_middleware(HttpMetrics, metrics=metrics)  # outside even that: every request counted, refusals too
    app.state.metrics = metrics

    @app.exception_handler(SoulfraError)
    async def soulfra_error(request: Request, exc: SoulfraError) -> JSONResponse:
        refused(exc.code, exc.detail)
        return problem(status_for(exc), exc.code, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for error in exc.errors()[:5]:
            where = ".".join(str(p) for p in error.get("loc", ()))
            parts.append(f"{where}: {error.get('msg', 'invalid')}")
        refused("invalid_request", "; ".join(parts) or "invalid request")
        return problem(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        refused(codes.get(exc.status_code, "http_error"), str(exc.detail))
        return problem(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))

    # -- operations ----------------------------------------------------------------------------------------------

    @app.get("/healthz", tags=["operations"], response_model=Health)
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        response_model=Ready,
        responses={
            503: {
                "model": NotReady,
                "description": "not ready: the default runtime does not answer, or an instance failed",
            }
        },
    )
    async def readyz() -> JSONResponse:
        """Ready when the default instance's runtime answers over the bus and no live instance has failed (stopped
        by a tick that raised): ``instance_failed`` names each failed one with its tick and error."""
        try:
            status = await gateway.request(gateway.default_instance, "runtime", "status")
        except SoulfraError as exc:
            return problem(503, exc.code, exc.detail)
        failed: dict[str, dict[str, Any]] = {}
        if status.get("failure"):
            failed[gateway.default_instance] = status["failure"]
        master: PuppetMaster | None = app.state.puppet
        if master is not None:  # its live runtimes, in memory: no query, however many instances are stored
            try:
                failed.update(await master.failures())
            except SoulfraError as exc:  # a puppet master of another process that does not answer
                return problem(503, exc.code, exc.detail)
        if failed:
            named = [f"{i} at tick {f['tick']} ({f['type']}: {f['message']})" for i, f in sorted(failed.items())]
            if len(named) > 10:
                named[10:] = [f"and {len(named) - 10} more"]
            detail = (
                f"{len(failed)} failed instance(s): {'; '.join(named)}; restart the server to resume them from their "
                "last committed tick"
            )
            body = {"code": InstanceFailedError.code, "detail": detail, "instances": sorted(failed)}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ready", "instance": gateway.default_instance, "tick": status["tick"]})

    # -- the seed's public surface (default instance) -----------------------------------------------------------

    @app.get("/api/vibe/weather", tags=["surface"], response_class=JsonBytes, response_model=WeatherReport)
    async def vibe_weather(
        limit: Annotated[int, Query(ge=1, le=256)] = SURFACE_DEFAULTS["/api/vibe/weather"][1]["limit"],
    ) -> Response:
        """The default instance's vibe weather and its recent history."""
        return JsonBytes(await gateway.surface_bytes(gateway.default_instance, "weather", {"limit": limit}))

    @app.get("/api/agents/echo", tags=["surface"], response_class=JsonBytes, response_model=Echoes)
    async def agents_echo(
        limit: Annotated[int, Query(ge=1, le=1000)] = SURFACE_DEFAULTS["/api/agents/echo"][1]["limit"],
    ) -> Response:
        """The latest echoes (posts, whispers heard, artifacts) of the default instance's agents."""
        return JsonBytes(await gateway.surface_bytes(gateway.default_instance, "echoes", {"limit": limit}))

    @app.get("/api/agents/echo/{agent_id}", tags=["surface"], response_class=JsonBytes, response_model=Echoes)
    async def agent_echo(agent_id: AgentId) -> Response:
        return JsonBytes(await gateway.surface_bytes(gateway.default_instance, "echoes", {"agent": agent_id}))

    @app.get("/api/ritual/traces", tags=["surface"], response_class=JsonBytes, response_model=Traces)
    async def ritual_traces(
        limit: Annotated[int, Query(ge=1, le=512)] = SURFACE_DEFAULTS["/api/ritual/traces"][1]["limit"],
    ) -> Response:
        """The default instance's ritual timeline: proposed, gathered, blessed, refused, performed, sealed."""
        return JsonBytes(await gateway.surface_bytes(gateway.default_instance, "traces", {"limit": limit}))

    @app.get("/api/stream", tags=["surface"], response_class=StreamingResponse, responses=EVENT_STREAM)
    async def default_stream(request: Request, after: StreamAfter = None) -> Response:
        """The default instance's live events as server-sent events, from now unless ``after`` (0 replays what is
        kept) or ``Last-Event-ID`` (a reconnect resumes) says where to go on from."""
        return stream_response(streams, request, gateway.default_instance, after)

    # -- instances ----------------------------------------------------------------------------------------------

    @app.get("/api/instances", tags=["instances"], response_model=InstanceList, response_model_exclude_unset=True)
    async def list_instances(request: Request) -> dict[str, Any]:
        """Every instance the caller's token may see."""
        identity = identity_of(request)
        visible = [row for row in await gateway.list_instances() if identity.sees(str(row["id"]))]
        return {"default": gateway.default_instance, "instances": visible}

    streams = app.state.streams = LiveStreams(gateway, metrics=metrics)

    app.include_router(instance_router(gateway, streams))
    app.include_router(history_router(gateway))
    app.include_router(minds_router(gateway))
    app.include_router(reflection_router(gateway))  # the original Soulfra's public reflection paths
    app.include_router(admin_router(tokens, tokens.store))
    app.include_router(operations_router(gateway, recorder, metrics))
    app.include_router(metrics_router(metrics))
    app.include_router(docs_router(app.title, str(app.openapi_url)))
    from soulfra.dashboard.operations import operations_pages  # noqa: PLC0415 -- as the dashboard's routes
    from soulfra.dashboard.routes import dashboard_router  # noqa: PLC0415 -- the dashboard's routes import this package

    app.include_router(dashboard_router(gateway, tokens, sessions, guard))
    app.include_router(operations_pages())  # the dashboard's audit and health views
    for router in extra:
        app.include_router(router)
    return app
