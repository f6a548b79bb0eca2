"""The public reflection paths through the whole API in process: anyone reads the default instance, ``?instance=``
takes a viewer token that covers the named instance (404 for a token scoped elsewhere, 401 without one), each answer
agrees with the instance's own routes and the stored loop seals, unknown ids are 404 ``{code, detail}``, and dark
whispers sent through the API raise a mood collapse in the mirror's anomaly echo."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from soulfra.api.access import AccessSettings
from soulfra.api.reflection import REFLECTION_PATHS
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.platforms.instance import InstanceSettings
from soulfra.world import DEFAULT_WORLD

from .support import TEST_HOST, api_in_process, client_for, wait_until

pytestmark = pytest.mark.anyio

LOOP = 10  # a short loop, so that loops are sealed within a second


@dataclass
class System:
    app: FastAPI
    engine: PuppetMasterEngine
    admin: httpx.AsyncClient

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        return client_for(self.app, token)

    def token(self, role: str, instances: list[str] | None = None) -> str:
        name = f"{role}-{'-'.join(instances or ['all'])}"
        return str(self.app.state.tokens.create(name=name, role=role, by="tests", instances=instances)[1])


async def _system(tmp_path: Path, access: AccessSettings) -> AsyncIterator[System]:
    settings = EngineSettings(instance=InstanceSettings(rate=200.0))
    async with api_in_process(tmp_path, "a", settings, access=access) as (app, engine, admin):
        spec = replace(DEFAULT_WORLD, loop_length=LOOP)
        await engine.create_instance(seed=0, spec=spec, agents=0, instance_id="a")
        await engine.create_instance(seed=1, spec=spec, agents=4, instance_id="b")
        yield System(app, engine, admin)


@pytest.fixture
async def system(tmp_path: Path, anyio_backend: str) -> AsyncIterator[System]:
    async for built in _system(tmp_path, AccessSettings.for_host("127.0.0.1", [TEST_HOST])):
        yield built


async def _json(client: httpx.AsyncClient, url: str, status: int = 200) -> Any:
    reply = await client.get(url)
    assert reply.status_code == status, (url, reply.text)
    return reply.json()


def _urls(instance: str | None) -> list[str]:
    query = "" if instance is None else f"?instance={instance}"
    return [path.replace("{unified_id}", "latest") + query for path in REFLECTION_PATHS]


async def _sealed_twice(system: System, instance: str) -> None:
    async def sealed() -> bool:
        reply = await system.admin.get(f"/api/loop/witness?instance={instance}")
        return reply.status_code == 200 and len(reply.json()["sealed"]) >= 2

    await wait_until(f"{instance} sealed two loops", sealed)


async def test_anyone_reads_the_default_instance_and_the_answers_agree_with_its_own_routes(system: System) -> None:
    await _sealed_twice(system, "a")
    unified = await _json(system.admin, "/api/instances/a/unified-snapshots")  # none yet: mirror/complete is 404
    assert unified["unified"] == []
    async with system.client() as anonymous:
        missing = await _json(anonymous, "/api/mirror/complete", 404)
        assert missing["code"] == "not_found"
        assert "no unified snapshot" in missing["detail"]
        taken = (await system.admin.post("/api/instances/a/unified-snapshots", json={})).json()
        answers = {url: await _json(anonymous, url) for url in _urls(None)}

    loop = answers["/api/agents/loop"]
    agents = await _json(system.admin, "/api/instances/a/agents")
    assert loop["population"] == agents["total"] == 3
    assert [a["id"] for a in loop["agents"]] == [a["id"] for a in agents["agents"]]
    assert sum(loop["phases"].values()) == 3

    witness = answers["/api/loop/witness"]
    stored = system.engine.store.rituals.read("a", kinds=["loop_sealed"])
    by_loop = {r.data["loop"]: r.data for r in stored}
    assert witness["instance"] == "a"
    for seal in witness["sealed"]:
        assert (seal["digest"], seal["state_hash"]) == (by_loop[seal["loop"]]["digest"],
                                                         by_loop[seal["loop"]]["state_hash"])  # fmt: skip
        assert seal["end"] - seal["start"] == LOOP - 1  # its last tick
    assert witness["current"]["loop"] > witness["sealed"][-1]["loop"]
    assert witness["current"]["phase"] in ("listening", "reflecting", "responding", "evolving")
    seeds = await _json(system.admin, "/api/instances/a/mirror/seeds")
    last = witness["seeds"][-1]["loop"]  # the world went on ticking: a later read may hold a newer seed too
    assert witness["seeds"] == [seed for seed in seeds["seeds"] if seed["loop"] <= last]

    latest = await _json(system.admin, "/api/instances/a/unified-snapshots/latest")
    assert answers["/api/mirror/complete"] == latest
    assert answers["/api/mirror/snapshot/latest"] == latest
    assert latest["id"] == taken["id"]
    assert await _json(system.admin, f"/api/mirror/snapshot/{taken['id']}") == latest

    assert answers["/api/anomaly/echo"].keys() == {"tick", "anomalies"}
    assert answers["/api/ritual/log"].keys() == {"tick", "in_flight", "timeline"}
    threads = answers["/api/thread/state"]
    assert threads["open"] == len(threads["threads"])
    assert all(t["quiet"] == max(0, threads["tick"] - 1 - t["last_post"]) for t in threads["threads"])
    health = answers["/api/system/health"]
    assert (health["instance"], health["healthy"], health["state"]) == ("a", True, "running")
    assert sorted(health["platforms"]) == ["mirror", "protocol", "runtime", "surface"]


async def test_naming_an_instance_takes_a_viewer_token_that_covers_it(system: System) -> None:
    async with system.client() as anonymous:
        for url in _urls("b"):
            refused = await _json(anonymous, url, 401)
            assert refused["code"] == "unauthenticated"
    async with system.client(system.token("viewer")) as viewer:
        loop = await _json(viewer, "/api/agents/loop?instance=b")
        assert loop["population"] == 3 + 4
        health = await _json(viewer, "/api/system/health?instance=b")
        assert health["instance"] == "b"
        assert (await _json(viewer, "/api/loop/witness?instance=b"))["instance"] == "b"
        unknown = await _json(viewer, "/api/agents/loop?instance=nowhere", 404)
        assert unknown["code"] == "not_found"
        assert "nowhere" in unknown["detail"]
        assert (await _json(viewer, "/api/agents/loop?instance=", 422))["code"] == "invalid_request"
    async with system.client(system.token("admin", ["a"])) as scoped:
        for url in _urls("b"):
            hidden = await _json(scoped, url, 404)
            assert hidden["code"] == "not_found", url
        await _json(scoped, "/api/agents/loop?instance=b&instance=a", 404)  # every one named is checked
        await _json(scoped, "/api/agents/loop?instance=a")
        await _json(scoped, "/api/agents/loop")  # the default instance is public


async def test_one_agent_alone_with_its_phase_and_recent_actions(system: System) -> None:
    whole = await _json(system.admin, "/api/agents/loop?instance=b&limit=1000")
    last = whole["agents"][-1]["id"]
    one = await _json(system.admin, f"/api/agents/loop?instance=b&agent={last}")
    (row,) = one["agents"]
    assert (row["id"], one["offset"], one["population"]) == (last, whole["population"] - 1, whole["population"])
    assert set(row) >= {"phase", "last_action", "recent"}
    assert all(set(action) == {"tick", "action"} for action in row["recent"])
    if row["recent"]:
        assert (row["recent"][0]["tick"], row["recent"][0]["action"]) == (row["last_acted"], row["last_action"])
    missing = await _json(system.admin, "/api/agents/loop?instance=b&agent=nobody", 404)
    assert "nobody" in missing["detail"]
    assert (await _json(system.admin, "/api/agents/loop?agent=no%20such", 422))["code"] == "invalid_request"


async def test_an_unknown_unified_snapshot_is_404(system: System) -> None:
    missing = await _json(system.admin, "/api/mirror/snapshot/987654?instance=b", 404)
    assert missing["code"] == "not_found"
    await _json(system.admin, "/api/mirror/snapshot/nope", 422)


async def test_a_private_surface_takes_a_token_for_the_default_instance_too(tmp_path: Path, anyio_backend: str) -> None:
    access = AccessSettings.for_host("127.0.0.1", [TEST_HOST], private_surface=True)
    async for system in _system(tmp_path, access):
        async with system.client() as anonymous:
            assert (await _json(anonymous, "/api/agents/loop", 401))["code"] == "unauthenticated"
        async with system.client(system.token("viewer", ["b"])) as scoped:
            await _json(scoped, "/api/agents/loop?instance=a", 404)
            await _json(scoped, "/api/agents/loop?instance=b")


async def test_dark_whispers_sent_through_the_api_raise_a_mood_collapse(system: System) -> None:
    async def collapsed() -> list[dict[str, Any]]:
        anomalies = (await _json(system.admin, "/api/anomaly/echo?instance=b"))["anomalies"]
        return [a for a in anomalies if a["anomaly"] == "mood-collapse"]

    assert await collapsed() == []
    before = await _json(system.admin, "/api/vibe/weather?limit=1")  # the default instance's, for the shape only
    assert "weather" in before
    for _ in range(5):
        reply = await system.admin.post(
            "/api/instances/b/whispers", json={"text": "it is over", "target": "*", "tone": "dark"}
        )
        assert reply.status_code == 202, reply.text

    async def reported() -> bool:
        return bool(await collapsed())

    await wait_until("the mirror reported a mood collapse", reported)
    (collapse,) = await collapsed()
    assert collapse["drop"] > 0.25
    history = (await _json(system.admin, "/api/instances/b/vibe/weather?limit=256"))["history"]
    by_tick = {h["tick"]: h["temperature"] for h in history}
    assert by_tick.get(collapse["tick"] + 1, collapse["to"]) == pytest.approx(collapse["to"])  # the world's reading


async def test_a_conversation_left_for_another_thread_shows_as_stalled(system: System) -> None:
    admin = system.admin

    async def post(agent: str, topic: str) -> None:
        reply = await admin.post(f"/api/instances/a/agents/{agent}/act", json={"action": "post", "topic": topic,
                                                                               "text": topic})  # fmt: skip
        assert reply.status_code == 202, reply.text

    for agent in ("cal-riven", "arty", "agent-zero"):  # no agent posts on its own any more
        assert (await admin.post(f"/api/instances/a/agents/{agent}/possess", json={})).status_code == 202
    for agent in ("arty", "cal-riven", "arty", "cal-riven"):
        await post(agent, "harvest")
    for agent in ("arty", "cal-riven"):
        await post(agent, "stars")

    async def stalled() -> list[dict[str, Any]]:
        anomalies = (await _json(admin, "/api/anomaly/echo"))["anomalies"]
        return [a for a in anomalies if a["anomaly"] == "stalled-thread" and a["topic"] == "harvest"]

    async def reported() -> bool:
        return bool(await stalled())

    await wait_until("the mirror reported the harvest thread stalled", reported)
    (stall,) = await stalled()
    assert stall["active_elsewhere"] == ["arty", "cal-riven"]
    assert stall["posts"] >= 4
    threads = (await _json(admin, "/api/thread/state"))["threads"]
    harvest = [t for t in threads if t["id"] == stall["thread"]]
    assert harvest == [] or harvest[0]["last_post"] == stall["last_post"]  # unchanged, or closed since as stale
