"""Blocking work never runs on the event loop: a world ticks durably (group commits, snapshots, unified snapshots)
while god commands, API calls and a dashboard session (kept in the store) run, on a store whose every commit is
slow, and no callback of the loop takes longer than a bound.

The store is a SQLite file made slow on purpose: each commit sleeps ``COMMIT_DELAY_S`` (a slow disk, or a remote
PostgreSQL). Any storage call made on the loop then holds it at least that long, so asyncio's debug mode reports
it ("Executing <Task ...> took 0.3 seconds"), which fails the test with the callbacks named. The bound sits just
under the delay, so any commit made on the loop is caught, while a callback that only waited for the CPU on a loaded
2-core machine (a request through the app takes about 40 ms on a quiet one, and was seen past 150 ms under a full
test run) is not taken for one. Before storage moved off the loop this test failed with 23 reports (the tick
loop's commits, instance creation, API handlers, closing), the longest 2.5 s.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from soulfra.durable import DurabilitySettings
from soulfra.meta.commands import AgentPossession, CloneInstance, FreezeTime, ThawTime, TimelineRevert
from soulfra.meta.engine import EngineSettings
from soulfra.offload import off_loop
from soulfra.platforms.instance import InstanceSettings
from soulfra.store import SqlStore
from soulfra.world import DEFAULT_WORLD

from .support import api_in_process, client_for, wait_until

COMMIT_DELAY_S = 0.3
BOUND_S = 0.25  # the longest a callback of the loop may run: less than any commit
DEADLINE_S = 60.0  # every commit is slow: the whole run makes a few dozen


class _SlowCallbacks(logging.Handler):
    """Keeps what asyncio's debug mode reports of callbacks slower than ``loop.slow_callback_duration``."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing "):
            self.reports.append(message)


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.is_success, response.text
    body: dict[str, Any] = response.json()
    return body


async def _workload(store: SqlStore, tmp_path: Path) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    loop.slow_callback_duration = 60.0  # building the app (its routes and schemas) is not the system at work
    settings = EngineSettings(
        instance=InstanceSettings(rate=20.0, durability=DurabilitySettings(snapshot_every=8, commit_every=4))
    )
    async with api_in_process(tmp_path, "w", settings, store) as (app, engine, http):
        base = "/api/instances/w"
        await asyncio.sleep(0)
        loop.slow_callback_duration = BOUND_S
        await engine.create_instance(seed=3, spec=DEFAULT_WORLD, agents=2, instance_id="w")
        runtime = engine.live["w"].runtime
        await wait_until("the world has ticked past a few snapshots", lambda: runtime.world.tick >= 9, DEADLINE_S)

        agent = _ok(await http.get(f"{base}/agents"))["agents"][0]["id"]
        _ok(await http.post(f"{base}/whispers", json={"text": "hold on", "target": "*"}))
        _ok(await http.post(f"{base}/snapshots", json={}))
        _ok(await http.post(f"{base}/unified-snapshots", json={}))
        _ok(await http.get(f"{base}/snapshots"))
        _ok(await http.get(f"{base}/unified-snapshots"))
        _ok(await http.get(f"{base}/inputs", params={"limit": 5}))
        _ok(await http.get(f"{base}/status"))
        _ok(await http.get("/api/instances"))
        _ok(await http.post(f"{base}/protocol/validate", json={"subject": "instance"}))
        await _dashboard_session(app, base)

        await engine.execute(FreezeTime(instances=["w"]))
        await engine.execute(ThawTime(instances=["w"]))
        await engine.execute(AgentPossession(instance="w", agent=agent))
        await engine.execute(CloneInstance(source="w", id="w-copy", start=False))
        await engine.execute(TimelineRevert(instance="w", tick=4))
        exported = await http.get(f"{base}/export")
        assert exported.is_success, exported.text

        reverted = engine.live["w"].world
        begun = reverted.tick
        await wait_until("the reverted world ticks on", lambda: reverted.tick >= begun + 2, DEADLINE_S)
        records = await off_loop(store.instances.list_instances)
        return {
            "snapshots": len(await off_loop(store.snapshots.list_snapshots, "w")),
            "inputs": sum([await off_loop(store.inputs.count, r.id) for r in records]),
            "instances": len(records),
        }


async def _dashboard_session(app: FastAPI, base: str) -> None:
    """A browser's session, kept in the store: sign in, a page, a change with its CSRF token, sign out."""
    form = {"content-type": "application/x-www-form-urlencoded"}
    async with client_for(app) as browser:
        signed = await browser.post("/login", content=f"token={app.state.admin_token}".encode(), headers=form)
        assert signed.status_code == 303, signed.text
        page = await browser.get("/worlds/w")
        marker = '<meta name="csrf-token" content="'
        start = page.text.index(marker) + len(marker)
        csrf = page.text[start : page.text.index('"', start)]
        _ok(await browser.post(f"{base}/whispers", json={"text": "from the page"}, headers={"x-csrf-token": csrf}))
        _ok(await browser.get("/api/instances"))
        assert 'action="/logout"' in (await browser.get("/")).text
        out = await browser.post("/logout", content=f"csrf_token={csrf}".encode(), headers=form)
        assert out.status_code == 303
        assert (await browser.get("/api/instances")).status_code == 401


@pytest.mark.slow
def test_no_callback_blocks_the_loop_while_worlds_write(tmp_path: Path) -> None:
    store = SqlStore.open(f"sqlite:///{tmp_path / 'slow.db'}")  # migrated at full speed, before the loop runs

    def slow_commit(connection: sa.Connection) -> None:
        del connection
        time.sleep(COMMIT_DELAY_S)

    sa.event.listen(store.engine, "commit", slow_commit)
    slow = _SlowCallbacks()
    logging.getLogger("asyncio").addHandler(slow)
    # A full collection of this process's heap can itself hold the loop for tens of milliseconds: the server freezes
    # what it has made at its start for that reason (``PuppetMasterEngine.start``). Not what this test measures.
    gc.disable()
    try:
        done = asyncio.run(_workload(store, tmp_path), debug=True)
    finally:
        gc.enable()
        logging.getLogger("asyncio").removeHandler(slow)
        store.close()
    # the workload really wrote: periodic and manual snapshots, the whisper and the marks, the clone and the branch
    assert done["snapshots"] >= 3
    assert done["inputs"] >= 2
    assert done["instances"] >= 3
    assert not slow.reports, f"{len(slow.reports)} callbacks held the event loop:\n" + "\n".join(slow.reports)
