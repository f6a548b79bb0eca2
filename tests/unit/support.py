"""Helpers the unit tests share: waiting, with a deadline, for a condition of a running engine or platform, and the
whole API over an engine, in process."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from soulfra.api import Gateway, create_app
from soulfra.api.access import AccessSettings
from soulfra.api.meta import meta_router
from soulfra.bus import InMemoryBus
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.meta.keys import KeyRing
from soulfra.meta.package import Limits
from soulfra.meta.service import LocalPuppetMaster
from soulfra.metrics import Metrics
from soulfra.platforms.instance import FourPlatformInstance, InstanceSettings
from soulfra.security.audit import AuditRecorder
from soulfra.security.tokens import TokenService
from soulfra.store import InMemoryStore
from soulfra.store.ports import Store

DEADLINE_S = 10.0
TEST_HOST = "soulfra.test"  # the in-process clients' Host, allowed as soulfra up allows its own


async def wait_until(
    what: str, check: Callable[[], bool] | Callable[[], Awaitable[bool]], deadline_s: float = DEADLINE_S
) -> None:
    """Poll ``check`` (plain or async) until it holds; fail with ``what`` when the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while True:
        held = check()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {deadline_s} s waiting until {what}")
        await asyncio.sleep(0.005)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    """A metric sample's value; 0 for a series that has not been made (nothing counted yet)."""
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def client_for(app: FastAPI, token: str | None = None) -> httpx.AsyncClient:
    """An in-process client of ``app`` sending ``token`` (None: no credentials)."""
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{TEST_HOST}", headers=headers)


@contextlib.asynccontextmanager
async def four_platforms(instance_id: str = "w") -> AsyncIterator[FourPlatformInstance]:
    """A new instance's four platforms on the in-memory bus and store, not ticking until told; all closed after."""
    store, bus = InMemoryStore(), InMemoryBus()
    instance = await FourPlatformInstance.open(store, bus, InstanceSettings(rate=None, instance_id=instance_id))
    try:
        yield instance
    finally:
        await instance.close()
        await bus.close()
        store.close()


@contextlib.asynccontextmanager
async def api_in_process(
    tmp_path: Path,
    default_instance: str,
    settings: EngineSettings,
    store: Store | None = None,
    access: AccessSettings | None = None,
) -> AsyncIterator[tuple[FastAPI, PuppetMasterEngine, httpx.AsyncClient]]:
    """An engine on the in-memory bus and ``store`` (None: a new in-memory one), its keys in ``tmp_path``, with the
    whole API over it as the composition root (``soulfra.system``) wires it (access control and the audit trail
    included: ``app.state.tokens``, ``app.state.recorder``), driven through httpx's ASGI transport by a client that
    sends an admin token (``app.state.admin_token``); all closed afterwards (a store given stays open: it belongs to
    the caller)."""
    own_store = store is None
    store = InMemoryStore() if store is None else store
    bus = InMemoryBus()
    recorder = AuditRecorder(store)
    engine = PuppetMasterEngine(store, bus, settings, recorder=recorder)
    master = LocalPuppetMaster(engine, default_instance)
    gateway = Gateway(bus, default_instance, store=store, lister=master.list_instances)
    tokens = TokenService(store)
    access = access or AccessSettings.for_host("127.0.0.1", [TEST_HOST])
    router = meta_router(master, gateway, KeyRing(tmp_path / "home"), Limits())
    app = create_app(
        gateway, extra=[router], tokens=tokens, recorder=recorder, access=access, metrics=engine.metrics, puppet=master
    )
    app.state.engine = engine
    app.state.tokens = tokens
    app.state.recorder = recorder
    _, app.state.admin_token = tokens.create(name=f"test-admin-{secrets.token_hex(4)}", role="admin", by="tests")
    http = client_for(app, app.state.admin_token)
    try:
        yield app, engine, http
    finally:
        try:
            await http.aclose()
            await engine.close()
        finally:
            await bus.close()
            if own_store:
                store.close()
