"""The public reflection paths of the original Soulfra: read-only JSON about the default instance, or about the one
``?instance=`` names. Thin: each route asks the instance's platforms through its bridge (so it answers alike in one
process and over NATS) and passes the answer on.

Access (``soulfra.api.access``): like the seed's surface paths, anyone may read the default instance (viewers only
with ``--private-surface``). Naming an instance with ``?instance=`` takes a viewer token that covers it, as its
``/api/instances/{id}/...`` routes do; for a token scoped to other instances the named one does not exist (404).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from soulfra.api.gateway import Gateway
from soulfra.api.models import Anomalies, UnifiedSnapshot
from soulfra.api.models.reflection import AgentLoop, LoopWitness, RitualLog, SystemHealth, ThreadState
from soulfra.platforms.watch import STALL_TICKS

__all__ = ["REFLECTION_PATHS", "reflection_router"]

REFLECTION_PATHS = (
    "/api/agents/loop", "/api/ritual/log", "/api/thread/state", "/api/loop/witness", "/api/anomaly/echo",
    "/api/mirror/complete", "/api/mirror/snapshot/{unified_id}", "/api/system/health",
)  # fmt: skip

InstanceQuery = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9_\-]{1,64}$",
        description=(
            "Another instance than the default one; naming one takes a viewer token that covers it (for any other "
            "token it does not exist: 404)"
        ),
    ),
]
UnifiedId = Annotated[str, Path(pattern=r"^(latest|[0-9]{1,18})$", description="A unified snapshot's id, or latest")]


def reflection_router(gateway: Gateway) -> APIRouter:
    router = APIRouter(tags=["reflection"])

    async def call(instance: str | None, platform: str, op: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return await gateway.request(instance or gateway.default_instance, platform, op, body)

    @router.get("/api/agents/loop", response_model=AgentLoop)
    async def agents_loop(
        instance: InstanceQuery = None,
        offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        agent: Annotated[
            str | None,
            Query(pattern=r"^[A-Za-z0-9_\-]{1,64}$", description="One agent's id: that agent alone (404 if none)"),
        ] = None,
    ) -> dict[str, Any]:
        """Each agent's phase in its listening -> reflecting -> responding -> evolving loop, counted over all agents,
        with a page of agents. Derived from the world's state alone (never random, never the clock), first rule that
        holds: **responding** if an operator possesses it or it acted within the last 2 ticks (its newest memory);
        **reflecting** if a whisper waits in its perception that it has not acted on; **evolving** if it has joined
        a ritual still in progress or holds a task (the world is changing it); **listening** otherwise.
        ``resonance`` is 1 less the mean distance of the agents' valence from its mean. Each agent also lists its
        ``recent`` actions, newest first (its memories: up to 8; resting leaves none). ``?agent=`` gives one agent
        alone (the page at its index), as the dashboard's agent panel asks."""
        body: dict[str, Any] = {"offset": offset, "limit": limit}
        if agent is not None:
            body["agent"] = agent
        return await call(instance, "runtime", "agent_loop", body)

    @router.get("/api/ritual/log", response_model=RitualLog)
    async def ritual_log(instance: InstanceQuery = None) -> dict[str, Any]:
        """The mirror's ritual timeline (proposed, gathered, blessed, refused, performed, sealed; the latest 100
        steps) and the ids of the rituals still in flight."""
        return await call(instance, "mirror", "timeline")

    @router.get("/api/thread/state", response_model=ThreadState)
    async def thread_state(instance: InstanceQuery = None) -> dict[str, Any]:
        """The open threads, oldest first: topic, participants, posts, the latest posts and how many ticks each has
        been quiet. The mirror reports a thread as stalled (``/api/anomaly/echo``) once it has been quiet for
        ``stall_after`` ticks while its participants post elsewhere."""
        reply = await call(instance, "runtime", "threads")
        return {**reply, "stall_after": STALL_TICKS}

    @router.get("/api/loop/witness", response_model=LoopWitness)
    async def loop_witness(
        instance: InstanceQuery = None, limit: Annotated[int, Query(ge=1, le=1000)] = 32
    ) -> dict[str, Any]:
        """The loop under way and its phase (the quarter of the loop reached: listening, reflecting, responding,
        evolving), the latest ``limit`` sealed loops with their digests and state hashes, and the seeds the mirror
        built from them."""
        bridge = await gateway.bridge(instance or gateway.default_instance)
        current = await bridge.request("runtime", "loop")
        witness = await bridge.request("mirror", "witness", {"limit": limit})
        return {"instance": bridge.instance_id, "current": current, "sealed": witness["sealed"],
                "seeds": witness["seeds"]}  # fmt: skip

    @router.get("/api/anomaly/echo", response_model=Anomalies)
    async def anomaly_echo(instance: InstanceQuery = None) -> dict[str, Any]:
        """What the mirror noticed, computed from the world's ticks: ``stalled-thread``, ``mood-collapse``,
        ``ritual-refused-repeatedly``, ``seed-divergence``."""
        return await call(instance, "mirror", "anomalies")

    @router.get("/api/mirror/complete", response_model=UnifiedSnapshot, response_model_exclude_unset=True)
    async def mirror_complete(instance: InstanceQuery = None) -> dict[str, Any]:
        """The latest unified view of all four platforms with its system hash (404 before the first one)."""
        return await call(instance, "mirror", "unified_get", {"id": "latest"})

    @router.get("/api/mirror/snapshot/{unified_id}", response_model=UnifiedSnapshot, response_model_exclude_unset=True)
    async def mirror_snapshot(unified_id: UnifiedId, instance: InstanceQuery = None) -> dict[str, Any]:
        """One unified snapshot by id, or ``latest``."""
        wanted: int | str = unified_id if unified_id == "latest" else int(unified_id)
        return await call(instance, "mirror", "unified_get", {"id": wanted})

    @router.get("/api/system/health", response_model=SystemHealth)
    async def system_health(instance: InstanceQuery = None) -> dict[str, Any]:
        """Each platform's status (a platform that does not answer is reported with its error, not raised) and
        ``healthy``: every platform answered and the runtime has not failed."""
        bridge = await gateway.bridge(instance or gateway.default_instance)
        platforms = await bridge.cross_platform_status()
        runtime = platforms.get("runtime", {})
        healthy = all("error" not in p for p in platforms.values()) and runtime.get("state") != "failed"
        return {"instance": bridge.instance_id, "healthy": healthy, "tick": runtime.get("tick"),
                "state": runtime.get("state"), "platforms": platforms}  # fmt: skip

    return router
