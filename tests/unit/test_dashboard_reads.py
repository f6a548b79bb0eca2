"""What the dashboard's pages read, against the real app in process: the agents' compact view (only what a canvas
draws, the same agents as the full view, larger pages); gzip on large JSON replies when the client accepts it (and
not otherwise, nor on small ones, nor on package downloads, which are zip files); the audit chain's verification
route (it holds; a row edited behind the store's back is named), admin only; and the writer leases of the
instances a caller may see."""

from __future__ import annotations

import gzip
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from soulfra.store import SqlStore
from soulfra.world import DEFAULT_WORLD

from .support import api_in_process, client_for

pytestmark = pytest.mark.anyio
AGENTS = 1200  # past the full view's largest page
COMPACT_FIELDS = {"id", "name", "mind", "valence", "arousal", "energy"}


@pytest.fixture
async def system(tmp_path: Path, anyio_backend: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, Path]]:
    from soulfra.meta.engine import EngineSettings  # noqa: PLC0415
    from soulfra.platforms.instance import InstanceSettings  # noqa: PLC0415

    db = tmp_path / "soulfra.db"
    store = SqlStore.open(f"sqlite:///{db}")
    try:
        async with api_in_process(tmp_path, "w", EngineSettings(instance=InstanceSettings(rate=None)), store=store) as (
            app,
            engine,
            http,
        ):
            await engine.create_instance(seed=7, spec=DEFAULT_WORLD, agents=AGENTS, instance_id="w")
            assert (await http.post("/api/instances/w/pause", json={})).status_code == 200  # reads compare one tick
            yield app, http, db
    finally:
        store.close()


async def test_the_compact_view_has_only_what_a_canvas_draws(system: tuple[FastAPI, httpx.AsyncClient, Path]) -> None:
    _, http, _ = system
    full = (await http.get("/api/instances/w/agents", params={"limit": 1000})).json()
    compact = (await http.get("/api/instances/w/agents", params={"view": "compact", "limit": 1000})).json()
    assert set(compact) == {"tick", "total", "offset", "agents"}
    assert compact["tick"] == full["tick"] and compact["total"] == full["total"] >= AGENTS
    assert [a["id"] for a in compact["agents"]] == [a["id"] for a in full["agents"]]
    for brief, whole in zip(compact["agents"], full["agents"], strict=True):
        assert set(brief) == COMPACT_FIELDS
        assert (brief["name"], brief["mind"]) == (whole["name"], whole["mind"])
        assert (brief["valence"], brief["arousal"]) == (whole["mood"]["valence"], whole["mood"]["arousal"])
        assert brief["energy"] == whole["state"]["energy"] / whole["state"]["scale"]


async def test_the_compact_view_takes_larger_pages_and_the_full_view_does_not(
    system: tuple[FastAPI, httpx.AsyncClient, Path],
) -> None:
    _, http, _ = system
    whole = (await http.get("/api/instances/w/agents", params={"view": "compact", "limit": 10000})).json()
    assert len(whole["agents"]) == whole["total"] >= AGENTS
    tail = (await http.get("/api/instances/w/agents", params={"view": "compact", "offset": 1000})).json()
    assert [a["id"] for a in tail["agents"]] == [a["id"] for a in whole["agents"][1000:1100]]
    refused = await http.get("/api/instances/w/agents", params={"limit": 1001})
    assert refused.status_code == 422 and "full view" in refused.json()["detail"]
    assert (await http.get("/api/instances/w/agents", params={"view": "tiny"})).status_code == 422
    default = (await http.get("/api/instances/w/agents")).json()["agents"][0]
    assert {"personality", "state", "affinity"} <= set(default)  # the default is still the full view


async def test_the_openapi_document_describes_both_views(system: tuple[FastAPI, httpx.AsyncClient, Path]) -> None:
    _, http, _ = system
    document = (await http.get("/openapi.json")).json()
    route = document["paths"]["/api/instances/{instance_id}/agents"]["get"]
    assert {p["name"] for p in route["parameters"]} >= {"view", "limit", "offset"}
    assert "AgentBrief" in document["components"]["schemas"]
    assert set(document["components"]["schemas"]["AgentBrief"]["properties"]) == COMPACT_FIELDS


async def test_a_large_reply_is_gzipped_when_the_client_accepts_it(
    system: tuple[FastAPI, httpx.AsyncClient, Path],
) -> None:
    app, http, _ = system
    path = "/api/instances/w/agents?limit=1000"
    plain = await http.get(path, headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    # httpx would undo the gzip itself: read the raw bytes of the reply to see what was sent
    async with http.stream("GET", path, headers={"accept-encoding": "gzip"}) as zipped:
        raw = b"".join([chunk async for chunk in zipped.aiter_raw()])
    assert zipped.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in zipped.headers["vary"].lower()
    assert len(raw) < len(plain.content) / 4
    assert gzip.decompress(raw) == plain.content
    small = await http.get("/api/instances/w/status", headers={"accept-encoding": "gzip"})
    assert len(small.content) < 1024 and "content-encoding" not in small.headers
    async with client_for(app) as anonymous:  # the fast path's replies and access control's refusals go through it
        weather = await anonymous.get("/api/vibe/weather", headers={"accept-encoding": "gzip"})
        assert weather.status_code == 200 and weather.json()["weather"] is not None


async def test_a_package_download_is_not_gzipped_again(system: tuple[FastAPI, httpx.AsyncClient, Path]) -> None:
    _, http, _ = system
    package = await http.get("/api/instances/w/export", headers={"accept-encoding": "gzip"})
    assert package.status_code == 200 and package.headers["content-type"] == "application/vnd.soulfra.package+zip"
    assert len(package.content) > 1024 and "content-encoding" not in package.headers  # a zip file already


async def test_the_audit_chain_verifies_and_a_tampered_row_is_named(
    system: tuple[FastAPI, httpx.AsyncClient, Path],
) -> None:
    _, http, db = system
    for n in range(3):
        assert (await http.post("/api/instances/w/whispers", json={"text": f"hello {n}"})).status_code == 202
    report = (await http.get("/api/audit/verify")).json()
    assert report["ok"] is True and report["problem"] is None and report["bad_row"] is None
    assert report["rows"] >= 3 and report["head_id"] == report["rows"]
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit_log SET outcome = 'ok', actor = 'mallory' WHERE id = 2")
    report = (await http.get("/api/audit/verify")).json()
    assert report["ok"] is False
    assert report["bad_row"] == 2 and "does not match its hash" in report["problem"]


async def test_only_an_admin_verifies_the_audit_chain(system: tuple[FastAPI, httpx.AsyncClient, Path]) -> None:
    app, _, _ = system
    for role, status in (("viewer", 403), ("operator", 403), ("puppet-master", 403), ("admin", 200)):
        _, token = app.state.tokens.create(name=f"a-{role}", role=role, by="tests")
        async with client_for(app, token) as client:
            assert (await client.get("/api/audit/verify")).status_code == status, role
    async with client_for(app) as anonymous:
        assert (await anonymous.get("/api/audit/verify")).status_code == 401


async def test_leases_name_the_holder_of_each_instance_the_caller_sees(
    system: tuple[FastAPI, httpx.AsyncClient, Path],
) -> None:
    app, http, _ = system
    reply = (await http.get("/api/leases")).json()
    assert reply["kept"] is True
    held = {lease["key"]: lease for lease in reply["leases"]}
    assert held["w"]["live"] is True and held["w"]["pid"] == os.getpid()
    _, scoped = app.state.tokens.create(name="elsewhere", role="viewer", by="tests", instances=["other"])
    async with client_for(app, scoped) as viewer:
        seen = (await viewer.get("/api/leases")).json()
    assert "w" not in {lease["key"] for lease in seen["leases"]}
