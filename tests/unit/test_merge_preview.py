"""The merge preview (``PuppetMasterEngine.preview_merge``, ``POST /api/god/merge/preview``): the report it shows
is the report the merge then gives (conflicts, policies, changes, renumbered ids, the merged state's hash, the base
and the tick), under the default policies and chosen ones; it writes nothing; and it refuses what the merge
refuses (no common ancestor, a taken id, a role below puppet-master)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from soulfra.errors import ConflictError, LineageError
from soulfra.meta.commands import MergeInstances, parse_command
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.platforms.instance import InstanceSettings
from soulfra.world import DEFAULT_WORLD

from .support import api_in_process, client_for, wait_until

SEED = 11
WARM = {"type": "intervene", "kind": "personality", "agent": "arty", "traits": {"warmth": "0.9"}}
COLD = {"type": "intervene", "kind": "personality", "agent": "arty", "traits": {"warmth": "0.2", "curiosity": "0.1"}}
SAME = ("parents", "base", "tick", "state_hash", "policies", "changes", "renumbered", "conflicts")


@pytest.fixture
async def running(tmp_path: Path, anyio_backend: str) -> AsyncIterator[tuple[Any, PuppetMasterEngine, Any]]:
    settings = EngineSettings(instance=InstanceSettings(rate=None))
    async with api_in_process(tmp_path, "x", settings) as (app, engine, http):
        yield app, engine, http


async def god(engine: PuppetMasterEngine, command: dict[str, Any]) -> dict[str, Any]:
    return (await engine.execute(parse_command(command))).reply()


async def two_frozen_siblings(engine: PuppetMasterEngine) -> int:
    """``x`` forked at a tick into ``a`` (warmer arty) and ``b`` (colder, less curious arty), both run on ten more
    ticks and frozen there: their states conflict, and stay put between a preview and the merge. The fork tick."""
    await engine.create_instance(seed=SEED, spec=DEFAULT_WORLD, agents=2, instance_id="x")
    await wait_until("x reaches tick 5", lambda: engine.live["x"].runtime.world.tick >= 5)
    at = int((await god(engine, {"type": "FREEZE_TIME", "instances": ["x"]}))["frozen"][0]["tick"])
    forks = [{"id": "a", "modifications": [WARM]}, {"id": "b", "modifications": [COLD]}]
    await god(engine, {"type": "REALITY_FORK", "source": "x", "forks": forks})
    await wait_until("a and b run on", lambda: all(engine.live[i].runtime.world.tick >= at + 10 for i in "ab"))
    await god(engine, {"type": "FREEZE_TIME", "instances": ["a", "b"]})
    return at


@pytest.mark.anyio
@pytest.mark.parametrize("policies", [{}, {"agents": "theirs", "threads": "ours", "vibe": "ours", "loop": "theirs"}])
async def test_the_preview_is_the_report_the_merge_then_gives(
    running: tuple[Any, PuppetMasterEngine, Any], policies: dict[str, str]
) -> None:
    _, engine, _ = running
    at = await two_frozen_siblings(engine)
    command = {"type": "MERGE_INSTANCES", "ours": "a", "theirs": "b", "id": "m", "policies": policies}
    preview = (await engine.preview_merge(MergeInstances.model_validate(command))).reply()
    merged = await god(engine, command)
    assert preview["type"] == "MERGE_PREVIEW"
    assert {key: preview[key] for key in SAME} == {key: merged[key] for key in SAME}
    assert preview["base"] == {"instance": "x", "tick": at}
    assert preview["parent_ticks"] == [engine.store.instances.get(i).head_tick for i in "ab"]
    warmth = [c for c in preview["conflicts"] if (c["entity"], c["field"]) == ("arty", "warmth")]
    assert len(warmth) == 1  # a real conflict, not an empty report compared with an empty report
    assert warmth[0]["policy"] == policies.get("agents", "mean")


@pytest.mark.anyio
async def test_a_preview_writes_nothing(running: tuple[Any, PuppetMasterEngine, Any]) -> None:
    _, engine, _ = running
    await two_frozen_siblings(engine)

    def stored() -> tuple[Any, ...]:
        store = engine.store
        return (
            [(r.id, r.head_tick, r.status) for r in store.instances.list_instances()],
            {i: len(list(store.inputs.read(i))) for i in "xab"},
            {i: len(list(store.rituals.read(i))) for i in "xab"},
        )

    before = stored()
    await engine.preview_merge(MergeInstances(ours="a", theirs="b", id="m"))
    await engine.preview_merge(MergeInstances(ours="b", theirs="a"))
    assert stored() == before
    assert "m" not in engine.live


@pytest.mark.anyio
async def test_the_preview_refuses_what_the_merge_refuses(running: tuple[Any, PuppetMasterEngine, Any]) -> None:
    _, engine, _ = running
    await two_frozen_siblings(engine)
    await engine.create_instance(seed=SEED, spec=DEFAULT_WORLD, agents=2, instance_id="stranger")
    with pytest.raises(LineageError, match="share no ancestor"):
        await engine.preview_merge(MergeInstances(ours="a", theirs="stranger"))
    with pytest.raises(ConflictError, match="already exists"):
        await engine.preview_merge(MergeInstances(ours="a", theirs="b", id="x"))


@pytest.mark.anyio
async def test_the_preview_route_answers_puppet_masters_with_the_merge_s_report(
    running: tuple[Any, PuppetMasterEngine, Any],
) -> None:
    app, engine, http = running
    await two_frozen_siblings(engine)
    body = {"ours": "a", "theirs": "b", "policies": {"agents": "ours"}}
    preview = await http.post("/api/god/merge/preview", json=body)
    assert preview.status_code == 200, preview.text
    bad = await http.post("/api/god/merge/preview", json={**body, "policies": {"agents": "loudest"}})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_input")  # as the merge refuses it
    _, operator = app.state.tokens.create(name="op", role="operator", by="tests")
    async with client_for(app, operator) as as_operator:
        refused = await as_operator.post("/api/god/merge/preview", json=body)
    assert refused.status_code == 403, refused.text
    merged = await http.post("/api/god/merge", json=body)
    assert merged.status_code == 200, merged.text
    assert preview.json()["conflicts"] == merged.json()["conflicts"]
    assert preview.json()["state_hash"] == merged.json()["state_hash"]
