"""AGENT_POSSESSION: a possession, an operator's acts and the release are logged, act from the next tick and
show in the stored state."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from soulfra.durable import state_at
from soulfra.errors import (
    InputError,
)
from soulfra.meta.commands import parse_command
from soulfra.meta.engine import PuppetMasterEngine
from soulfra.world import (
    Act,
    Possess,
)

from .meta_engine_support import (
    agent,
    create,
    god,
    live_state,
    logged,
    settle,
    thaw,
    traces,
)

# -- AGENT_POSSESSION --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_possession_is_logged_shows_in_the_state_and_release_gives_the_agent_back(
    engine: PuppetMasterEngine,
) -> None:
    await create(engine, "a")
    at = (await settle(engine, ["a"], 3))["a"]
    took = await god(engine, {"type": "AGENT_POSSESSION", "instance": "a", "agent": "arty", "operator": "ghost"})
    acted = await god(engine, {"type": "AGENT_POSSESSION", "instance": "a", "agent": "arty", "action": "act",
                               "act": {"action": "post", "text": "arty speaks through me"}})  # fmt: skip
    assert (took["ack"]["tick"], took["ack"]["type"]) == (at, "possess")
    assert (acted["ack"]["tick"], acted["ack"]["type"]) == (at, "act")
    assert logged(engine, "a")[-2:] == [
        Possess(tick=at, agent="arty", operator="ghost"),
        Act(tick=at, agent="arty", action="post", text="arty speaks through me"),
    ]
    with pytest.raises(InputError, match="nobody"):
        await god(engine, {"type": "AGENT_POSSESSION", "instance": "a", "agent": "nobody"})
    with pytest.raises(ValidationError):
        parse_command({"type": "AGENT_POSSESSION", "instance": "a", "agent": "arty", "action": "act"})

    await thaw(engine, "a")
    released_at = (await settle(engine, ["a"], at + 1))["a"]
    arty = agent(live_state(engine, "a"), "arty")
    assert state_at(engine.store, "a", at).possessed == {}
    assert state_at(engine.store, "a", at + 1).possessed == {arty: "ghost"}
    assert live_state(engine, "a").possessed == {arty: "ghost"}
    assert [t for t, _ in traces(engine, "a", "agent_possessed")] == [at]
    assert [(t, d["action"]) for t, d in traces(engine, "a", "operator_acted")] == [(at, "post")]
    assert traces(engine, "a", "input_rejected") == []

    gave = await god(engine, {"type": "AGENT_POSSESSION", "instance": "a", "agent": "arty", "action": "release"})
    assert gave["ack"]["type"] == "release"
    await thaw(engine, "a")
    await settle(engine, ["a"], released_at + 1)
    assert state_at(engine.store, "a", released_at + 1).possessed == {}
    assert [t for t, _ in traces(engine, "a", "agent_released")] == [released_at]
