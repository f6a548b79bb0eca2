"""The past of one instance over HTTP: ``GET /api/instances/{instance_id}/state?tick=T``, the state the store
rebuilds at a tick (``soulfra.durable.state_at``: the nearest snapshot plus a replay of the input log), what the CLI's
``soulfra state --tick`` prints. Read-only; the rebuild runs off the event loop. Must not: change a world."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from soulfra.api.common import InstanceId
from soulfra.api.gateway import Gateway
from soulfra.api.models.history import StateAt
from soulfra.durable import start_tick, state_at
from soulfra.errors import ConfigError, NotFoundError
from soulfra.offload import off_loop
from soulfra.projection import fixed_to_number
from soulfra.store.ports import Store
from soulfra.world.encoding import state_hash

__all__ = ["history_router", "rebuild"]

TickQuery = Annotated[
    int | None, Query(ge=0, le=2**62, description="The tick to rebuild (default: the last durable one)")
]


def _numbers(values: Any) -> list[float]:
    return [fixed_to_number(int(v)) for v in values.tolist()]


def rebuild(store: Store, instance_id: str, tick: int | None) -> dict[str, Any]:
    """The state of ``instance_id`` at ``tick`` as JSON (blocking: it reads the store and replays). Raises
    ``NotFoundError`` for a tick outside the instance's own history (before its fork tick, or past its head)."""
    record = store.instances.get(instance_id)
    first, head = start_tick(record), record.head_tick
    at = head if tick is None else tick
    if not first <= at <= head:
        raise NotFoundError(f"instance {instance_id} holds ticks {first} to {head}; no tick {at}")
    nearest = store.snapshots.nearest(instance_id, at)
    state = state_at(store, instance_id, at)
    size = state.size
    vibe = state.vibe
    return {
        "instance": instance_id,
        "tick": state.tick,
        "state_hash": state_hash(state),
        "start_tick": first,
        "head_tick": head,
        "snapshot_tick": None if nearest is None else nearest.tick,
        "replayed_ticks": state.tick - (first if nearest is None else nearest.tick),
        "loop": state.loop.index,
        "threads": len(state.threads),
        "rituals": len(state.rituals),
        "tasks": len(state.tasks),
        "mood": {
            "valence": fixed_to_number(int(state.valence.mean())) if size else 0.0,
            "energy": fixed_to_number(int(state.energy.mean())) if size else 0.0,
        },
        "vibe": None
        if vibe is None
        else {
            "condition": vibe.condition,
            "forecast": vibe.forecast,
            "temperature": fixed_to_number(vibe.temperature),
            "pressure": fixed_to_number(vibe.pressure),
            "wind": fixed_to_number(vibe.wind),
        },
        "agents": {
            "ids": [spec.id for spec in state.specs],
            "valence": _numbers(state.valence),
            "arousal": _numbers(state.arousal),
            "energy": _numbers(state.energy),
        },
    }


def history_router(gateway: Gateway) -> APIRouter:
    router = APIRouter()

    @router.get("/api/instances/{instance_id}/state", tags=["instances"], response_model=StateAt)
    async def state(instance_id: InstanceId, tick: TickQuery = None) -> dict[str, Any]:
        """The instance's state at ``tick``, rebuilt from its nearest snapshot and its input log: its hash, counts,
        vibe and each agent's mood and energy. 404 for a tick the instance does not hold."""
        store = gateway.store
        if store is None:
            raise ConfigError("this server keeps no history: it has no store")
        await gateway.bridge(instance_id)  # 404 for an instance this server does not know
        return await off_loop(rebuild, store, instance_id, tick)

    return router
