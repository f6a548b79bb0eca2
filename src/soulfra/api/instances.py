"""The routes of one instance (``/api/instances/{instance_id}/...``): its platforms' status, surface and live
events, the runtime's controls and inputs, agents and possession, the protocol's rules, snapshots and the mirror.
Thin: each route is one bridge call, translated; who may call it is ``soulfra.api.access``'s."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from soulfra.api.common import (
    EVENT_STREAM,
    NO_FIELDS,
    AgentId,
    InstanceId,
    JsonBytes,
    StreamAfter,
    note,
    stream_response,
)
from soulfra.api.gateway import Gateway
from soulfra.api.models import (
    ActBody,
    AgentPage,
    AgentReply,
    Anomalies,
    CompactAgentPage,
    Echoes,
    InputPage,
    InstanceAck,
    InstanceStatus,
    Overridden,
    OverrideBody,
    Paused,
    PossessBody,
    ProtocolViolations,
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
from soulfra.errors import ConfigError, InputError
from soulfra.offload import off_loop
from soulfra.platforms.runtime import MAX_COMPACT_PAGE, MAX_FULL_PAGE
from soulfra.security.permissions import RuleSet

if TYPE_CHECKING:
    from soulfra.platforms.replies import RunState

__all__ = ["instance_router"]


def instance_router(gateway: Gateway, streams: LiveStreams) -> APIRouter:
    router = APIRouter()

    @router.get("/api/instances/{instance_id}/status", tags=["instances"], response_model=InstanceStatus)
    async def instance_status(instance_id: InstanceId) -> dict[str, Any]:
        """Every platform's status, as the bridge sees it."""
        bridge = await gateway.bridge(instance_id)
        return {"instance": instance_id, "platforms": await bridge.cross_platform_status()}

    @router.get(
        "/api/instances/{instance_id}/vibe/weather",
        tags=["surface"],
        response_class=JsonBytes,
        response_model=WeatherReport,
    )
    async def instance_weather(instance_id: InstanceId, limit: Annotated[int, Query(ge=1, le=256)] = 32) -> Response:
        return JsonBytes(await gateway.surface_bytes(instance_id, "weather", {"limit": limit}))

    @router.get(
        "/api/instances/{instance_id}/agents/echo", tags=["surface"], response_class=JsonBytes, response_model=Echoes
    )
    async def instance_echo(instance_id: InstanceId, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> Response:
        return JsonBytes(await gateway.surface_bytes(instance_id, "echoes", {"limit": limit}))

    @router.get(
        "/api/instances/{instance_id}/ritual/traces", tags=["surface"], response_class=JsonBytes, response_model=Traces
    )
    async def instance_traces(instance_id: InstanceId, limit: Annotated[int, Query(ge=1, le=512)] = 100) -> Response:
        return JsonBytes(await gateway.surface_bytes(instance_id, "traces", {"limit": limit}))

    @router.get(
        "/api/instances/{instance_id}/events",
        tags=["surface"],
        response_class=StreamingResponse,
        responses=EVENT_STREAM,
    )
    async def instance_stream(request: Request, instance_id: InstanceId, after: StreamAfter = None) -> Response:
        """An instance's live events as server-sent events, from now unless ``after`` (0 replays what is kept) or
        ``Last-Event-ID`` (a reconnect resumes) says where to go on from."""
        await gateway.bridge(instance_id)
        return stream_response(streams, request, instance_id, after)

    @router.post("/api/instances/{instance_id}/whispers", tags=["runtime"], status_code=202, response_model=InstanceAck)
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

    @router.post("/api/instances/{instance_id}/pause", tags=["runtime"], response_model=Paused, openapi_extra=NO_FIELDS)
    async def pause(instance_id: InstanceId) -> dict[str, Any]:
        bridge = await gateway.bridge(instance_id)
        return control(await bridge.pause())

    @router.post(
        "/api/instances/{instance_id}/resume", tags=["runtime"], response_model=Resumed, openapi_extra=NO_FIELDS
    )
    async def resume(instance_id: InstanceId) -> dict[str, Any]:
        bridge = await gateway.bridge(instance_id)
        return control(await bridge.resume())

    @router.post("/api/instances/{instance_id}/override", tags=["runtime"], response_model=Overridden)
    async def override(instance_id: InstanceId, body: Annotated[OverrideBody | None, Body()] = None) -> dict[str, Any]:
        """Emergency override: every platform of the instance stops until resumed."""
        reason = (body or OverrideBody()).reason
        note({"reason": reason})
        bridge = await gateway.bridge(instance_id)
        return control(await bridge.send_emergency_override(reason))

    @router.get("/api/instances/{instance_id}/agents", tags=["runtime"], response_model=AgentPage | CompactAgentPage)
    async def agents(
        instance_id: InstanceId,
        offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
        limit: Annotated[
            int, Query(ge=1, le=MAX_COMPACT_PAGE, description=f"At most {MAX_FULL_PAGE} in the full view")
        ] = 100,
        view: Annotated[
            Literal["full", "compact"],
            Query(
                description=(
                    "full: every field (personality, state, memories, affinities); compact: id, name, mind, valence, "
                    "arousal and energy only, what a live view draws, about a tenth of the size"
                )
            ),
        ] = "full",
    ) -> Any:
        """A page of the instance's agents, in the order they were made."""
        if view == "compact":  # passed on as the runtime encoded it: no decoding and re-checking of 10,000 rows
            bridge = await gateway.bridge(instance_id)
            body = {"offset": offset, "limit": limit, "view": view}
            return JsonBytes(await bridge.request_raw("runtime", "agents", body))
        if limit > MAX_FULL_PAGE:
            raise InputError(f"'limit' must be at most {MAX_FULL_PAGE} in the full view (view=compact takes more)")
        return await gateway.request(instance_id, "runtime", "agents", {"offset": offset, "limit": limit})

    @router.get("/api/instances/{instance_id}/agents/{agent_id}", tags=["runtime"], response_model=AgentReply)
    async def agent(instance_id: InstanceId, agent_id: AgentId) -> dict[str, Any]:
        return await gateway.request(instance_id, "runtime", "agent", {"agent": agent_id})

    async def submit(instance_id: str, item: dict[str, Any]) -> dict[str, Any]:
        note(item)
        bridge = await gateway.bridge(instance_id)
        (ack,) = await bridge.submit([item])
        note(ack.to_json())
        return {"instance": instance_id, **ack.to_json()}

    @router.post(
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

    @router.post(
        "/api/instances/{instance_id}/agents/{agent_id}/act",
        tags=["runtime"],
        status_code=202,
        response_model=InstanceAck,
    )
    async def act(instance_id: InstanceId, agent_id: AgentId, body: ActBody) -> dict[str, Any]:
        """Act as a possessed agent (the world refuses the act, as an event, if the agent is not possessed)."""
        item = {"type": "act", "agent": agent_id, **body.model_dump(exclude_none=True)}
        return await submit(instance_id, item)

    @router.post(
        "/api/instances/{instance_id}/agents/{agent_id}/release",
        tags=["runtime"],
        openapi_extra=NO_FIELDS,
        status_code=202,
        response_model=InstanceAck,
    )
    async def release(instance_id: InstanceId, agent_id: AgentId) -> dict[str, Any]:
        return await submit(instance_id, {"type": "release", "agent": agent_id})

    @router.get("/api/instances/{instance_id}/inputs", tags=["runtime"], response_model=InputPage)
    async def inputs(
        instance_id: InstanceId,
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """The instance's input log: every whisper and command, with its sequence number and tick."""
        return await gateway.request(instance_id, "runtime", "inputs", {"after": after, "limit": limit})

    @router.get("/api/instances/{instance_id}/protocol/rules", tags=["protocol"], response_model=Rules)
    async def rules(instance_id: InstanceId) -> dict[str, Any]:
        return await gateway.request(instance_id, "protocol", "rules")

    @router.put("/api/instances/{instance_id}/protocol/rules", tags=["protocol"], response_model=Rules)
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

    @router.get(
        "/api/instances/{instance_id}/protocol/violations", tags=["protocol"], response_model=ProtocolViolations
    )
    async def violations(instance_id: InstanceId) -> dict[str, Any]:
        """The protocol's counts and the latest validations that found violations (the latest 50, newest first;
        kept in the protocol platform's memory, so they start again with it)."""
        return await gateway.request(instance_id, "protocol", "violations")

    @router.post("/api/instances/{instance_id}/protocol/validate", tags=["protocol"], response_model=Validation)
    async def validate(instance_id: InstanceId, body: ValidateBody) -> dict[str, Any]:
        """Every violation of every rule that applies; ``valid`` is true when there are none."""
        return await gateway.request(instance_id, "protocol", "validate", body.model_dump(exclude_none=True))

    @router.post(
        "/api/instances/{instance_id}/snapshots",
        tags=["mirror"],
        status_code=201,
        response_model=Snapshot,
        openapi_extra=NO_FIELDS,
    )
    async def take_snapshot(instance_id: InstanceId) -> dict[str, Any]:
        reply = await gateway.request(instance_id, "runtime", "snapshot", {"type": "manual"})
        note({"id": reply.get("id"), "tick": reply.get("tick"), "state_hash": reply.get("state_hash")})
        return reply

    @router.get("/api/instances/{instance_id}/snapshots", tags=["mirror"], response_model=SnapshotList)
    async def list_snapshots(instance_id: InstanceId) -> dict[str, Any]:
        return await gateway.request(instance_id, "runtime", "snapshots")

    @router.get("/api/instances/{instance_id}/snapshots/{snapshot_id}", tags=["mirror"], response_model=SnapshotDetail)
    async def get_snapshot(
        instance_id: InstanceId, snapshot_id: Annotated[int, Path(ge=0, le=2**62)]
    ) -> dict[str, Any]:
        return await gateway.request(instance_id, "runtime", "snapshot_info", {"id": snapshot_id})

    @router.post(
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

    @router.get("/api/instances/{instance_id}/unified-snapshots", tags=["mirror"], response_model=UnifiedList)
    async def list_unified(instance_id: InstanceId) -> dict[str, Any]:
        return await gateway.request(instance_id, "mirror", "unified_list")

    @router.get(
        "/api/instances/{instance_id}/unified-snapshots/{unified_id}",
        tags=["mirror"],
        response_model=UnifiedSnapshot,
        response_model_exclude_unset=True,
    )
    async def get_unified(
        instance_id: InstanceId, unified_id: Annotated[str, Path(pattern=r"^(latest|[0-9]{1,18})$")]
    ) -> dict[str, Any]:
        wanted: int | str = unified_id if unified_id == "latest" else int(unified_id)
        return await gateway.request(instance_id, "mirror", "unified_get", {"id": wanted})

    @router.get("/api/instances/{instance_id}/mirror/anomalies", tags=["mirror"], response_model=Anomalies)
    async def anomalies(instance_id: InstanceId) -> dict[str, Any]:
        return await gateway.request(instance_id, "mirror", "anomalies")

    @router.get("/api/instances/{instance_id}/mirror/seeds", tags=["mirror"], response_model=Seeds)
    async def seeds(instance_id: InstanceId) -> dict[str, Any]:
        """Each loop's seed as the mirror's trace collector built it from the loop's traces."""
        return await gateway.request(instance_id, "mirror", "seeds")

    return router
