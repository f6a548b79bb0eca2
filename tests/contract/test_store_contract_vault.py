"""The VaultManager's contract, run on every backend: one agent row per agent at the latest tick, and agents read
back one by one."""

from __future__ import annotations

import pytest

from soulfra.errors import NotFoundError
from soulfra.projection import agent_state_json, personality_json
from soulfra.store import Store
from soulfra.world import (
    ChangePersonality,
    World,
)

from .conftest import Backend
from .support import _is_utc, make_record

# -- VaultManager ----------------------------------------------------------------------------------------------


def test_save_agents_upserts_one_row_per_agent_at_the_latest_tick(store: Store, backend: Backend) -> None:
    world = World.create(4, agents=20)
    store.instances.create(make_record("a"))
    assert store.vault.save_agents("a", world.state) == 23
    for _ in range(5):
        world.step([ChangePersonality(tick=world.tick, agent="arty", traits=(("warmth", 900_000),))])
    assert store.vault.save_agents("a", world.state) == 23
    assert backend.rows("agents", "a") == 23

    agents = store.vault.list_agents("a")
    assert [a.id for a in agents] == [spec.id for spec in world.state.specs]
    assert [a.id for a in agents] != sorted(a.id for a in agents)  # world order is not alphabetical
    for i, (agent, spec) in enumerate(zip(agents, world.state.specs, strict=True)):
        assert (agent.instance_id, agent.agent_type, agent.tick) == ("a", spec.mind, 5)
        assert agent.personality == personality_json(world.state, i)
        assert agent.state == agent_state_json(world.state, i)
        assert _is_utc(agent.created_at)
    assert agents[1].personality["traits"]["warmth"] == 900_000


def test_load_agent_and_missing_agents(store: Store) -> None:
    world = World.create(4)
    store.instances.create(make_record("a"))
    store.instances.create(make_record("b"))
    store.vault.save_agents("a", world.state)
    listed = {a.id: a for a in store.vault.list_agents("a")}
    assert store.vault.load_agent("a", "arty") == listed["arty"]
    with pytest.raises(NotFoundError, match="nobody"):
        store.vault.load_agent("a", "nobody")
    with pytest.raises(NotFoundError, match="arty"):
        store.vault.load_agent("b", "arty")
    assert store.vault.list_agents("b") == []
