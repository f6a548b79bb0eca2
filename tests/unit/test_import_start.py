"""Importing a package with ``start=true`` starts the instances it imported, and only those: a stored instance that
is not live (its launch was skipped, or it was written by another process) stays as it is.

The engine runs on the in-memory store and bus; the API is driven in process through httpx's ASGI transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from soulfra.durable import DurableWorld
from soulfra.limits import MAX_GENERATED_AGENTS
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.platforms.instance import InstanceSettings
from soulfra.world import DEFAULT_WORLD

from .support import api_in_process


@pytest.fixture
async def system(tmp_path: Path, anyio_backend: str) -> AsyncIterator[tuple[PuppetMasterEngine, httpx.AsyncClient]]:
    settings = EngineSettings(instance=InstanceSettings(rate=None))
    async with api_in_process(tmp_path, "source", settings) as (_, engine, http):
        yield engine, http


@pytest.mark.anyio
async def test_an_import_starts_only_the_imported_instances(
    system: tuple[PuppetMasterEngine, httpx.AsyncClient],
) -> None:
    engine, http = system
    await engine.create_instance(seed=4, spec=DEFAULT_WORLD, agents=1, instance_id="source")
    # Stored while the server runs, by someone else: the engine has not started it, and an import must not either.
    dormant = DurableWorld.open_or_create(engine.store, 9, DEFAULT_WORLD, agents=1, fresh=True)
    dormant_id = dormant.instance_id
    dormant.close()
    assert dormant_id not in engine.live

    package = await http.get("/api/instances/source/export")
    assert package.status_code == 200, package.text
    reply = await http.post(
        "/api/import",
        params={"as_id": "copy"},
        content=package.content,
        headers={"content-type": "application/vnd.soulfra.package+zip"},
    )
    assert reply.status_code == 201, reply.text

    assert [row["id"] for row in reply.json()["imported"]] == ["copy"]
    assert "copy" in engine.live
    assert dormant_id not in engine.live
    assert {r["id"] for r in engine.list_instances()} >= {"source", "copy", dormant_id}


@pytest.mark.anyio
async def test_an_instance_created_at_rate_0_ticks_as_fast_as_it_goes_and_a_rate_below_the_least_is_refused(
    system: tuple[PuppetMasterEngine, httpx.AsyncClient],
) -> None:
    engine, http = system
    made = await http.post("/api/instances", json={"id": "fast", "seed": 2, "rate": 0})
    assert made.status_code == 201, made.text
    assert engine.live["fast"].runtime.rate is None  # unthrottled, as `soulfra up --rate 0`
    paced = await http.post("/api/instances", json={"id": "slow", "seed": 3, "rate": 0.5})
    assert paced.status_code == 201, paced.text
    assert engine.live["slow"].runtime.rate == 0.5
    quick = await http.post("/api/instances", json={"id": "quick", "seed": 5, "rate": 5000})  # the runtime's bound,
    assert quick.status_code == 201, quick.text  # not a tighter one of the API's own
    assert engine.live["quick"].runtime.rate == 5000
    for body in ({"rate": 1e-300}, {"rate": 2e9}, {"agents": MAX_GENERATED_AGENTS + 1}):
        refused = await http.post("/api/instances", json={"id": "refused", "seed": 4, **body})
        assert refused.status_code == 422, body
        assert ("0.001 to 1e+09" if "rate" in body else "100000") in refused.json()["detail"], refused.text
    assert "refused" not in engine.live
