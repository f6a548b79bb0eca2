"""Dashboard sessions across API processes: two apps over one database (SQLite and PostgreSQL), each with its own
store, token service and session table, as two ``soulfra serve api`` processes behind a load balancer have. The
browser is one httpx client whose requests a balancer hands to either app. A session opened at one is honoured by
the other, which checks its CSRF token; sign-out at one ends it at both; revoking its token through one ends it
at the other at once (no cache to wait out). The apps share the world server's bus, as the gateways of the
services topology share NATS; only one of them runs the worlds (one writer per database).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from soulfra.api import Gateway, create_app
from soulfra.api.access import AccessSettings
from soulfra.bus import InMemoryBus
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.meta.service import LocalPuppetMaster
from soulfra.platforms.instance import InstanceSettings
from soulfra.security.audit import AuditRecorder
from soulfra.security.sessions import SESSION_COOKIE
from soulfra.security.tokens import TokenService
from soulfra.store import SqlStore
from soulfra.world import DEFAULT_WORLD

pytestmark = pytest.mark.anyio
HOST = "soulfra.test"
FORM = {"content-type": "application/x-www-form-urlencoded"}


@dataclass
class Balancer(httpx.AsyncBaseTransport):
    """Hands each request to the app named by ``to`` (None: to each in turn), and notes who served it."""

    apps: dict[str, httpx.ASGITransport]
    to: str | None = None
    served: list[str] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        names = sorted(self.apps)
        name = self.to if self.to is not None else names[len(self.served) % len(names)]
        self.served.append(name)
        return await self.apps[name].handle_async_request(request)


@dataclass
class Pair:
    apps: dict[str, FastAPI]
    admin: str  # an admin token, sent as Bearer by ``api``

    @contextlib.asynccontextmanager
    async def signed_in(self, name: str, role: str, *, at: str) -> AsyncIterator[tuple[httpx.AsyncClient, Balancer]]:
        """A browser behind a balancer, signed in at the app ``at`` with a new token ``name`` of ``role``."""
        async with self.api("one") as api:
            made = await api.post("/api/tokens", json={"name": name, "role": role})
        assert made.status_code == 201, made.text
        balancer = Balancer({name: httpx.ASGITransport(app=app) for name, app in self.apps.items()}, to=at)
        async with httpx.AsyncClient(transport=balancer, base_url=f"http://{HOST}") as browser:
            signed = await browser.post("/login", content=f"token={made.json()['token']}".encode(), headers=FORM)
            assert signed.status_code == 303, signed.text
            assert browser.cookies.get(SESSION_COOKIE)
            yield browser, balancer

    def api(self, name: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.apps[name]), base_url=f"http://{HOST}",
            headers={"authorization": f"Bearer {self.admin}"},
        )  # fmt: skip


@pytest.fixture
async def pair(db_url: str, tmp_path: Path, anyio_backend: str) -> AsyncIterator[Pair]:
    del tmp_path
    access = AccessSettings.for_host("127.0.0.1", [HOST])
    bus = InMemoryBus()
    worlds, gateway_only = SqlStore.open(db_url), SqlStore.open(db_url)
    recorder = AuditRecorder(worlds)
    engine = PuppetMasterEngine(worlds, bus, EngineSettings(instance=InstanceSettings(rate=50.0)), recorder=recorder)
    try:
        gateway = Gateway(bus, "a", store=worlds, lister=LocalPuppetMaster(engine, "a").list_instances)
        tokens = TokenService(worlds)
        first = create_app(gateway, tokens=tokens, recorder=recorder, access=access, metrics=engine.metrics)
        second = create_app(
            Gateway(bus, "a", store=gateway_only), tokens=TokenService(gateway_only),
            recorder=AuditRecorder(gateway_only), access=access,
        )  # fmt: skip
        await engine.create_instance(seed=1, spec=DEFAULT_WORLD, agents=1, instance_id="a")
        _, admin = tokens.create(name=f"admin-{secrets.token_hex(3)}", role="admin", by="tests")
        yield Pair({"one": first, "two": second}, admin)
    finally:
        try:
            await engine.close()
        finally:
            await bus.close()
            worlds.close()
            gateway_only.close()


def _csrf(page: httpx.Response) -> str:
    marker = '<meta name="csrf-token" content="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]


async def test_a_session_from_one_process_is_honoured_and_csrf_checked_by_the_other(pair: Pair) -> None:
    async with pair.signed_in("olive", "operator", at="one") as (browser, balancer):
        csrf = _csrf(await browser.get("/"))
        balancer.to = "two"
        page = await browser.get("/worlds/a")
        assert page.status_code == 200, page.text
        assert "olive · operator" in page.text
        assert _csrf(page) == csrf  # the same token on every process: derived from the session, not stored
        whisper = {"text": "across", "target": "*"}
        missing = await browser.post("/api/instances/a/whispers", json=whisper)
        assert (missing.status_code, missing.json()["code"]) == (403, "csrf")
        wrong = await browser.post("/api/instances/a/whispers", json=whisper, headers={"x-csrf-token": csrf[:-1]})
        assert (wrong.status_code, wrong.json()["code"]) == (403, "csrf")
        sent = await browser.post("/api/instances/a/whispers", json=whisper, headers={"x-csrf-token": csrf})
        assert sent.status_code == 202, sent.text
        balancer.to = None  # now each in turn, as a balancer without affinity sends them
        answers = [(await browser.get("/api/instances")).status_code for _ in range(6)]
        assert answers == [200] * 6
        assert set(balancer.served[-6:]) == {"one", "two"}


async def test_signing_out_at_one_process_ends_the_session_at_the_other(pair: Pair) -> None:
    async with pair.signed_in("leaving", "viewer", at="two") as (browser, balancer):
        cookie = browser.cookies.get(SESSION_COOKIE)
        csrf = _csrf(await browser.get("/"))
        balancer.to = "one"
        assert (await browser.get("/api/instances")).status_code == 200
        out = await browser.post("/logout", content=f"csrf_token={csrf}".encode(), headers=FORM)
        assert out.status_code == 303
        assert browser.cookies.get(SESSION_COOKIE) is None
        browser.cookies.set(SESSION_COOKIE, cookie or "", domain=HOST)  # a copy of the cookie kept from before
        balancer.to = "two"
        ended = await browser.get("/api/instances")
        assert ended.status_code == 401
        assert "session has ended" in ended.json()["detail"]
        assert 'action="/login"' in (await browser.get("/")).text


async def test_revoking_the_token_at_one_process_ends_its_sessions_at_the_other_at_once(pair: Pair) -> None:
    async with pair.signed_in("brief", "viewer", at="two") as (browser, _):
        assert (await browser.get("/api/instances")).status_code == 200  # "two" has just checked the token
        async with pair.api("one") as api:
            assert (await api.delete("/api/tokens/brief")).status_code == 200
        refused = await browser.get("/api/instances")  # at once: no token cache second to wait out
        assert refused.status_code == 401
        assert "session has ended" in refused.json()["detail"]
