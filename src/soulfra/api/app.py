"""The public HTTP API: an app factory over a ``Gateway``. Thin: every route is one bridge call, translated.

Errors leave as JSON ``{"code", "detail"}`` with the status from ``STATUS``; no route answers 500 for bad input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from soulfra import __version__
from soulfra.api.access import AccessControl, AccessSettings, identity_of
from soulfra.api.admin import admin_router
from soulfra.api.fastpath import SURFACE_DEFAULTS, SurfaceReads
from soulfra.api.gateway import Gateway
from soulfra.api.limits import BodyLimits, RequestLimits
from soulfra.api.models import (
    ActBody,
    AgentPage,
    AgentReply,
    Anomalies,
    Echoes,
    Health,
    InputPage,
    InstanceAck,
    InstanceList,
    InstanceStatus,
    NotReady,
    Overridden,
    OverrideBody,
    Paused,
    PossessBody,
    Ready,
    Resumed,
    Rules,
    RulesBody,
    Seeds,
    Snapshot,
    SnapshotDetail,
    SnapshotList,
    Traces,
    UnifiedList,
    UnifiedSnapshot,
    ValidateBody,
    Validation,
    WeatherReport,
    WhisperBody,
)
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
from soulfra.offload import off_loop
from soulfra.security.audit import AuditRecorder, current_action
from soulfra.security.permissions import RuleSet
from soulfra.security.tokens import TokenService

if TYPE_CHECKING:
    from soulfra.meta.engine import PuppetMasterEngine
    from soulfra.platforms.replies import RunState

__all__ = ["EVENT_STREAM", "STATUS", "create_app"]

# The live streams' documented answer: server-sent events, never one JSON body.
EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events, one per surface event (``id`` is its number; ``Last-Event-ID`` resumes)",
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

InstanceId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_\-]{1,64}$", description="An instance id, e.g. world-0")]
AgentId = Annotated[str, Path(min_length=1, max_length=64)]


class JsonBytes(JSONResponse):
    """A JSON body that is already encoded (the surface's cached replies), passed on as it is. A ``JSONResponse``
    so that the OpenAPI document shows its route's response model as the body's schema."""

    def render(self, content: Any) -> bytes:
        if not isinstance(content, bytes):
            raise TypeError("JsonBytes takes a body that is already encoded")
        return content


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


def note(detail: dict[str, Any]) -> None:
    """Add the route's particulars (the whisper, its acknowledgement...) to the request's audit row."""
    action = current_action()
    if action is not None:
        action.refine(detail=detail)


def create_app(
    gateway: Gateway,
    *,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    extra: Sequence[APIRouter] = (),
    limits: RequestLimits | None = None,
    tokens: TokenService,
    recorder: AuditRecorder | None = None,
    access: AccessSettings | None = None,
) -> FastAPI:
    """The API over ``gateway``. Who may call what is ``soulfra.api.access``'s: ``tokens`` authenticates,
    ``recorder`` audits every mutating request (None: nothing is audited, for tests of other things), ``access``
    says which hosts, origins and rates are allowed."""
    access = access or AccessSettings()
    app = FastAPI(
        title="Soulfra",
        version=__version__,
        description="Autonomous multi-agent worlds: the public surface and the operator's controls.",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.add_middleware(SurfaceReads, gateway=gateway, enabled=not access.private_surface)  # anonymous reads only
    app.add_middleware(BodyLimits, limits=limits or RequestLimits())  # bodies are bounded before any route reads
    if access.enforce:  # always, but in the benchmark that measures what it costs
        app.add_middleware(AccessControl, tokens=tokens, recorder=recorder, settings=access)  # before anything runs
    if access.cors_origins:  # no CORS headers at all unless origins are configured
        app.add_middleware(
            CORSMiddleware, allow_origins=list(access.cors_origins), allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["authorization", "content-type", "x-request-id"], expose_headers=["x-request-id"],
        )  # fmt: skip

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

    async def call(instance_id: str, platform: str, op: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        bridge = await gateway.bridge(instance_id)
        return await bridge.request(platform, op, body)

    async def read(instance_id: str, op: str, body: dict[str, Any]) -> Response:
        """A surface read, passed on as the bytes the surface encoded (it caches them between changes)."""
        bridge = await gateway.bridge(instance_id)
        return JsonBytes(await bridge.request_raw("surface", op, body))

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
            status = await call(gateway.default_instance, "runtime", "status")
        except SoulfraError as exc:
            return problem(503, exc.code, exc.detail)
        failed: dict[str, dict[str, Any]] = {}
        if status.get("failure"):
            failed[gateway.default_instance] = status["failure"]
        engine: PuppetMasterEngine | None = getattr(app.state, "engine", None)  # set where a puppet master runs
        if engine is not None:  # its live runtimes, in memory: no query, however many instances are stored
            for instance_id, instance in list(engine.live.items()):
                failure = instance.runtime.failure
                if failure is not None:
                    failed[instance_id] = failure.to_json()
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
        return await read(gateway.default_instance, "weather", {"limit": limit})

    @app.get("/api/agents/echo", tags=["surface"], response_class=JsonBytes, response_model=Echoes)
    async def agents_echo(
        limit: Annotated[int, Query(ge=1, le=1000)] = SURFACE_DEFAULTS["/api/agents/echo"][1]["limit"],
    ) -> Response:
        """The latest echoes (posts, whispers heard, artifacts) of the default instance's agents."""
        return await read(gateway.default_instance, "echoes", {"limit": limit})

    @app.get("/api/agents/echo/{agent_id}", tags=["surface"], response_class=JsonBytes, response_model=Echoes)
    async def agent_echo(agent_id: AgentId) -> Response:
        return await read(gateway.default_instance, "echoes", {"agent": agent_id})

    @app.get("/api/ritual/traces", tags=["surface"], response_class=JsonBytes, response_model=Traces)
    async def ritual_traces(
        limit: Annotated[int, Query(ge=1, le=512)] = SURFACE_DEFAULTS["/api/ritual/traces"][1]["limit"],
    ) -> Response:
        """The default instance's ritual timeline: proposed, gathered, blessed, refused, performed, sealed."""
        return await read(gateway.default_instance, "traces", {"limit": limit})

    @app.get("/api/stream", tags=["surface"], response_class=StreamingResponse, responses=EVENT_STREAM)
    async def default_stream(request: Request, after: Annotated[int, Query(ge=0, le=2**62)] = 0) -> Response:
        """The default instance's live events as server-sent events (``Last-Event-ID`` resumes)."""
        return stream_response(request, gateway.default_instance, after)

    # -- instances ----------------------------------------------------------------------------------------------

    @app.get("/api/instances", tags=["instances"], response_model=InstanceList, response_model_exclude_unset=True)
    async def list_instances(request: Request) -> dict[str, Any]:
        """Every instance the caller's token may see."""
        identity = identity_of(request)
        visible = [row for row in await gateway.list_instances() if identity.sees(str(row["id"]))]
        return {"default": gateway.default_instance, "instances": visible}

    @app.get("/api/instances/{instance_id}/status", tags=["instances"], response_model=InstanceStatus)
    async def instance_status(instance_id: InstanceId) -> dict[str, Any]:
        """Every platform's status, as the bridge sees it."""
        bridge = await gateway.bridge(instance_id)
        return {"instance": instance_id, "platforms": await bridge.cross_platform_status()}

    @app.get(
        "/api/instances/{instance_id}/vibe/weather",
        tags=["surface"],
        response_class=JsonBytes,
        response_model=WeatherReport,
    )
    async def instance_weather(instance_id: InstanceId, limit: Annotated[int, Query(ge=1, le=256)] = 32) -> Response:
        return await read(instance_id, "weather", {"limit": limit})

    @app.get(
        "/api/instances/{instance_id}/agents/echo", tags=["surface"], response_class=JsonBytes, response_model=Echoes
    )
    async def instance_echo(instance_id: InstanceId, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> Response:
        return await read(instance_id, "echoes", {"limit": limit})

    @app.get(
        "/api/instances/{instance_id}/ritual/traces", tags=["surface"], response_class=JsonBytes, response_model=Traces
    )
    async def instance_traces(instance_id: InstanceId, limit: Annotated[int, Query(ge=1, le=512)] = 100) -> Response:
        return await read(instance_id, "traces", {"limit": limit})

    @app.get(
        "/api/instances/{instance_id}/events",
        tags=["surface"],
        response_class=StreamingResponse,
        responses=EVENT_STREAM,
    )
    async def instance_stream(
        request: Request, instance_id: InstanceId, after: Annotated[int, Query(ge=0, le=2**62)] = 0
    ) -> Response:
        await gateway.bridge(instance_id)
        return stream_response(request, instance_id, after)

    @app.post("/api/instances/{instance_id}/whispers", tags=["runtime"], status_code=202, response_model=InstanceAck)
    async def whisper(instance_id: InstanceId, body: WhisperBody) -> dict[str, Any]:
        """Store a whisper; the reply is its acknowledgement, with the tick it applies at."""
        bridge = await gateway.bridge(instance_id)
        note(body.model_dump(exclude_none=True))
        ack = await bridge.send_whisper_to_runtime(body.text, target=body.target, tone=body.tone, tick=body.tick)
        note(ack.to_json())
        return {"instance": instance_id, **ack.to_json()}

    def control(state: RunState) -> dict[str, Any]:
        """A pause, resume or override the runtime has answered: its answer, in the audit row and as JSON."""
        reply = state.to_json()
        note({"tick": reply.get("tick")})
        return reply

    @app.post("/api/instances/{instance_id}/pause", tags=["runtime"], response_model=Paused, openapi_extra=NO_FIELDS)
    async def pause(instance_id: InstanceId) -> dict[str, Any]:
        bridge = await gateway.bridge(instance_id)
        return control(await bridge.pause())

    @app.post("/api/instances/{instance_id}/resume", tags=["runtime"], response_model=Resumed, openapi_extra=NO_FIELDS)
    async def resume(instance_id: InstanceId) -> dict[str, Any]:
        bridge = await gateway.bridge(instance_id)
        return control(await bridge.resume())

    @app.post("/api/instances/{instance_id}/override", tags=["runtime"], response_model=Overridden)
    async def override(instance_id: InstanceId, body: Annotated[OverrideBody | None, Body()] = None) -> dict[str, Any]:
        """Emergency override: every platform of the instance stops until resumed."""
        reason = (body or OverrideBody()).reason
        note({"reason": reason})
        bridge = await gateway.bridge(instance_id)
        return control(await bridge.send_emergency_override(reason))

    @app.get("/api/instances/{instance_id}/agents", tags=["runtime"], response_model=AgentPage)
    async def agents(
        instance_id: InstanceId,
        offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        return await call(instance_id, "runtime", "agents", {"offset": offset, "limit": limit})

    @app.get("/api/instances/{instance_id}/agents/{agent_id}", tags=["runtime"], response_model=AgentReply)
    async def agent(instance_id: InstanceId, agent_id: AgentId) -> dict[str, Any]:
        return await call(instance_id, "runtime", "agent", {"agent": agent_id})

    async def submit(instance_id: str, item: dict[str, Any]) -> dict[str, Any]:
        note(item)
        bridge = await gateway.bridge(instance_id)
        (ack,) = await bridge.submit([item])
        note(ack.to_json())
        return {"instance": instance_id, **ack.to_json()}

    @app.post(
        "/api/instances/{instance_id}/agents/{agent_id}/possess",
        tags=["runtime"],
        status_code=202,
        response_model=InstanceAck,
    )
    async def possess(
        instance_id: InstanceId, agent_id: AgentId, body: Annotated[PossessBody | None, Body()] = None
    ) -> dict[str, Any]:
        operator = (body or PossessBody()).operator
        return await submit(instance_id, {"type": "possess", "agent": agent_id, "operator": operator})

    @app.post(
        "/api/instances/{instance_id}/agents/{agent_id}/act",
        tags=["runtime"],
        status_code=202,
        response_model=InstanceAck,
    )
    async def act(instance_id: InstanceId, agent_id: AgentId, body: ActBody) -> dict[str, Any]:
        """Act as a possessed agent (the world refuses the act, as an event, if the agent is not possessed)."""
        item = {"type": "act", "agent": agent_id, **body.model_dump(exclude_none=True)}
        return await submit(instance_id, item)

    @app.post(
        "/api/instances/{instance_id}/agents/{agent_id}/release",
        tags=["runtime"],
        openapi_extra=NO_FIELDS,
        status_code=202,
        response_model=InstanceAck,
    )
    async def release(instance_id: InstanceId, agent_id: AgentId) -> dict[str, Any]:
        return await submit(instance_id, {"type": "release", "agent": agent_id})

    @app.get("/api/instances/{instance_id}/inputs", tags=["runtime"], response_model=InputPage)
    async def inputs(
        instance_id: InstanceId,
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """The instance's input log: every whisper and command, with its sequence number and tick."""
        return await call(instance_id, "runtime", "inputs", {"after": after, "limit": limit})

    @app.get("/api/instances/{instance_id}/protocol/rules", tags=["protocol"], response_model=Rules)
    async def rules(instance_id: InstanceId) -> dict[str, Any]:
        return await call(instance_id, "protocol", "rules")

    @app.put("/api/instances/{instance_id}/protocol/rules", tags=["protocol"], response_model=Rules)
    async def set_rules(instance_id: InstanceId, body: RulesBody) -> dict[str, Any]:
        """Set the instance's protocol rules and licence terms (kept in the store with the instance)."""
        given = body.model_dump(exclude_none=True)
        note({"rules": given})
        rules = RuleSet.from_json(given).to_json()
        if gateway.store is None:
            raise ConfigError("this server keeps no per-instance rules: it has no store")
        await gateway.bridge(instance_id)  # 404 for an instance this server does not know
        await off_loop(gateway.store.instances.set_rules, instance_id, rules)
        return rules

    @app.post("/api/instances/{instance_id}/protocol/validate", tags=["protocol"], response_model=Validation)
    async def validate(instance_id: InstanceId, body: ValidateBody) -> dict[str, Any]:
        """Every violation of every rule that applies; ``valid`` is true when there are none."""
        return await call(instance_id, "protocol", "validate", body.model_dump(exclude_none=True))

    @app.post(
        "/api/instances/{instance_id}/snapshots",
        tags=["mirror"],
        status_code=201,
        response_model=Snapshot,
        openapi_extra=NO_FIELDS,
    )
    async def take_snapshot(instance_id: InstanceId) -> dict[str, Any]:
        reply = await call(instance_id, "runtime", "snapshot", {"type": "manual"})
        note({"id": reply.get("id"), "tick": reply.get("tick"), "state_hash": reply.get("state_hash")})
        return reply

    @app.get("/api/instances/{instance_id}/snapshots", tags=["mirror"], response_model=SnapshotList)
    async def list_snapshots(instance_id: InstanceId) -> dict[str, Any]:
        return await call(instance_id, "runtime", "snapshots")

    @app.get("/api/instances/{instance_id}/snapshots/{snapshot_id}", tags=["mirror"], response_model=SnapshotDetail)
    async def get_snapshot(
        instance_id: InstanceId, snapshot_id: Annotated[int, Path(ge=0, le=2**62)]
    ) -> dict[str, Any]:
        return await call(instance_id, "runtime", "snapshot_info", {"id": snapshot_id})

    @app.post(
        "/api/instances/{instance_id}/unified-snapshots",
        tags=["mirror"],
        status_code=201,
        openapi_extra=NO_FIELDS,
        response_model=UnifiedSnapshot,
        response_model_exclude_unset=True,
    )
    async def take_unified(instance_id: InstanceId) -> dict[str, Any]:
        """The active platform merge: all four platforms at one tick, conflicts resolved, the runtime's pause."""
        bridge = await gateway.bridge(instance_id)
        record = await bridge.unified_snapshot()
        note({"id": record.id, "tick": record.tick})
        return record.to_json()

    @app.get("/api/instances/{instance_id}/unified-snapshots", tags=["mirror"], response_model=UnifiedList)
    async def list_unified(instance_id: InstanceId) -> dict[str, Any]:
        return await call(instance_id, "mirror", "unified_list")

    @app.get(
        "/api/instances/{instance_id}/unified-snapshots/{unified_id}",
        tags=["mirror"],
        response_model=UnifiedSnapshot,
        response_model_exclude_unset=True,
    )
    async def get_unified(
        instance_id: InstanceId, unified_id: Annotated[str, Path(pattern=r"^(latest|[0-9]{1,18})$")]
    ) -> dict[str, Any]:
        wanted: int | str = unified_id if unified_id == "latest" else int(unified_id)
        return await call(instance_id, "mirror", "unified_get", {"id": wanted})

    @app.get("/api/instances/{instance_id}/mirror/anomalies", tags=["mirror"], response_model=Anomalies)
    async def anomalies(instance_id: InstanceId) -> dict[str, Any]:
        return await call(instance_id, "mirror", "anomalies")

    @app.get("/api/instances/{instance_id}/mirror/seeds", tags=["mirror"], response_model=Seeds)
    async def seeds(instance_id: InstanceId) -> dict[str, Any]:
        """Each loop's seed as the mirror's trace collector built it from the loop's traces."""
        return await call(instance_id, "mirror", "seeds")

    streams = app.state.streams = LiveStreams(gateway)

    def stream_response(request: Request, instance_id: str, after: int) -> Response:
        header = request.headers.get("last-event-id", "")
        start = int(header) if header.isdigit() and len(header) < 19 else after
        return streams.response(instance_id, start)

    app.include_router(admin_router(tokens, tokens.store))
    for router in extra:
        app.include_router(router)
    return app
