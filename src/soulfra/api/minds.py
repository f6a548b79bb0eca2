"""What an instance's language minds did and cost, over HTTP: ``GET /api/instances/{instance_id}/minds`` (the model
cost from the recorded replies) and ``GET /api/instances/{instance_id}/agents/{agent_id}/mind`` (the agent's mind,
its last replies and the prompt of the newest, rebuilt and checked against its digest). Read from the store off the
event loop (``soulfra.language.ledger``); the conversions to the response models are here. Must not: ask a model."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Query

from soulfra.api.common import AgentId, InstanceId
from soulfra.api.gateway import Gateway
from soulfra.api.models.minds import AgentMindReply, MindCostsReply
from soulfra.errors import ConfigError
from soulfra.language.ledger import LAST, MAX_LAST, AgentMind, MindCall, MindCosts, MindLedger
from soulfra.offload import off_loop
from soulfra.store.ports import Store

__all__ = ["agent_mind_json", "minds_router"]


def costs_json(costs: MindCosts) -> dict[str, Any]:
    return dataclasses.asdict(costs)


def _call_json(call: MindCall) -> dict[str, Any]:
    body = dataclasses.asdict(call)
    del body["agent"]  # the agent the read names
    return body


def agent_mind_json(found: AgentMind) -> dict[str, Any]:
    prompt = found.prompt
    return {
        "instance": found.instance, "tick": found.tick, "agent": found.agent, "name": found.name,
        "mind": found.mind, "language": found.model is not None, "model": found.model, "due": found.due,
        "calls": [_call_json(call) for call in found.calls],
        "prompt": None if prompt is None else {
            "tick": prompt.tick, "digest": prompt.digest, "matches": prompt.matches,
            "messages": [{"role": role, "content": content} for role, content in prompt.messages],
        },
        "costs": costs_json(found.costs),
    }  # fmt: skip


def minds_router(gateway: Gateway) -> APIRouter:
    router = APIRouter()
    ledger = MindLedger()  # this server's tallies: each read takes only what was logged since the last

    async def stored(instance_id: str) -> Store:
        store = gateway.store
        if store is None:
            raise ConfigError("this server keeps no history: it has no store")
        await gateway.bridge(instance_id)  # 404 for an instance this server does not know
        return store

    @router.get("/api/instances/{instance_id}/minds", tags=["instances"], response_model=MindCostsReply)
    async def minds(instance_id: InstanceId) -> dict[str, Any]:
        """The instance's model cost from the replies its log records: calls by outcome, tokens, latency."""
        store = await stored(instance_id)
        return {"instance": instance_id, "costs": costs_json(await off_loop(ledger.costs, store, instance_id))}

    @router.get(
        "/api/instances/{instance_id}/agents/{agent_id}/mind", tags=["instances"], response_model=AgentMindReply
    )
    async def mind(
        instance_id: InstanceId, agent_id: AgentId, last: Annotated[int, Query(ge=0, le=MAX_LAST)] = LAST
    ) -> dict[str, Any]:
        """The agent's mind at the durable head (its built-in mind, its model, the tick its thought is due at), its
        ``last`` recorded replies, newest first, and the prompt the newest answered whose state is durable, rebuilt
        from the state it was built from (``matches``: its digest is the recorded one), with the instance's model
        cost."""
        store = await stored(instance_id)
        return agent_mind_json(await off_loop(ledger.agent, store, instance_id, agent_id, last=last))

    return router
