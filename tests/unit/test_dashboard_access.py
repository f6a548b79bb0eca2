"""The dashboard's sign-in and its session against the real app in process: a token typed into the form opens a
session whose cookie (HttpOnly, SameSite=Strict, Secure over TLS, not the token) authenticates the API as that
token's identity (role, scope, audit name), a change from it needs the session's CSRF token, a revoked token ends it
within a second, sign-out ends it, and Bearer clients are unchanged. The sign-in form refuses other sites' posts,
counts wrong tokens toward the lockout, and every page carries a CSP that allows only this server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from soulfra.api.access import AccessSettings
from soulfra.security.sessions import SESSION_COOKIE
from soulfra.security.tokens import TokenService
from soulfra.store.ports import Store
from soulfra.world import DEFAULT_WORLD

from .support import TEST_HOST, api_in_process, wait_until

pytestmark = pytest.mark.anyio
FORM = {"content-type": "application/x-www-form-urlencoded"}


@dataclass
class System:
    app: FastAPI
    tokens: TokenService
    store: Store

    def token(self, role: str, name: str, instances: list[str] | None = None) -> str:
        return self.tokens.create(name=name, role=role, by="tests", instances=instances)[1]

    def browser(self, scheme: str = "http") -> httpx.AsyncClient:
        """A client with no credentials but the cookies it is given, as a browser is."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=f"{scheme}://{TEST_HOST}")


async def _system(tmp_path: Path, **access: object) -> AsyncIterator[System]:
    from soulfra.meta.engine import EngineSettings  # noqa: PLC0415
    from soulfra.platforms.instance import InstanceSettings  # noqa: PLC0415

    settings = AccessSettings.for_host("127.0.0.1", [TEST_HOST], **access)
    async with api_in_process(tmp_path, "a", EngineSettings(instance=InstanceSettings(rate=50.0)), access=settings) as (
        app,
        engine,
        _,
    ):
        for seed, instance_id in enumerate("ab"):
            await engine.create_instance(seed=seed, spec=DEFAULT_WORLD, agents=1, instance_id=instance_id)
        yield System(app, app.state.tokens, engine.store)


@pytest.fixture
async def system(tmp_path: Path, anyio_backend: str) -> AsyncIterator[System]:
    async for built in _system(tmp_path):
        yield built


async def sign_in(browser: httpx.AsyncClient, token: str) -> httpx.Response:
    return await browser.post("/login", content=f"token={token}".encode(), headers=FORM)


def csrf_of(page: httpx.Response) -> str:
    marker = '<meta name="csrf-token" content="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]


async def test_without_a_session_the_page_is_the_sign_in_form(system: System) -> None:
    async with system.browser() as browser:
        page = await browser.get("/")
        assert page.status_code == 200
        assert 'action="/login"' in page.text
        assert "csrf-token" not in page.text
        assert (await browser.get("/api/instances")).status_code == 401


async def test_signing_in_sets_a_strict_http_only_cookie_that_is_not_the_token(system: System) -> None:
    token = system.token("admin", "alice")
    async with system.browser() as browser:
        answer = await sign_in(browser, token)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/"
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=")
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # plain HTTP on loopback: a Secure cookie would never come back
        assert token not in cookie
        assert token.removeprefix("sft_")[:16] not in cookie
        page = await browser.get("/")
        assert "alice · admin" in page.text
        assert csrf_of(page)
    async with system.browser("https") as browser:
        assert "Secure" in (await sign_in(browser, token)).headers["set-cookie"]


async def test_a_wrong_token_is_refused_and_counts_toward_the_lockout(tmp_path: Path, anyio_backend: str) -> None:
    async for system in _system(tmp_path, auth_failures=3):
        async with system.browser() as browser:
            for _ in range(3):
                refused = await sign_in(browser, "sft_wrong")
                assert refused.status_code == 401
                assert "not signed in" in refused.text
                assert SESSION_COOKIE not in refused.headers.get("set-cookie", "")
            locked = await sign_in(browser, system.token("admin", "real"))
            assert locked.status_code == 429


async def test_a_stale_session_cookie_is_refused_without_locking_the_address_out(
    tmp_path: Path, anyio_backend: str
) -> None:
    async for system in _system(tmp_path, auth_failures=3):
        async with system.browser() as browser:
            browser.cookies.set(SESSION_COOKIE, "from-before-a-restart", domain=TEST_HOST)
            for _ in range(5):
                stale = await browser.get("/api/instances")
                assert stale.status_code == 401
                assert "session has ended" in stale.json()["detail"]
            assert (await sign_in(browser, system.token("viewer", "back"))).status_code == 303
            assert (await browser.get("/api/instances")).status_code == 200


async def test_the_session_is_the_token_s_identity_with_its_role_and_scope(system: System) -> None:
    token = system.token("viewer", "scoped", instances=["b"])
    async with system.browser() as browser:
        await sign_in(browser, token)
        listed = await browser.get("/api/instances")
        assert listed.status_code == 200
        assert [row["id"] for row in listed.json()["instances"]] == ["b"]
        assert (await browser.get("/api/instances/a/status")).status_code == 404  # out of its scope
        assert (await browser.get("/api/tokens")).status_code == 403  # admin only
        fragment = await browser.get("/ui/instances")
        assert 'data-instance="b"' in fragment.text
        assert 'data-instance="a"' not in fragment.text
        assert (await browser.get("/worlds/a")).status_code == 404


async def test_a_change_from_a_session_needs_its_csrf_token_and_is_audited_as_the_token(system: System) -> None:
    before = system.store.audit.head()[0]
    async with system.browser() as browser:
        await sign_in(browser, system.token("operator", "olive"))
        csrf = csrf_of(await browser.get("/"))
        whisper = {"text": "hello", "target": "*"}
        missing = await browser.post("/api/instances/a/whispers", json=whisper, headers={"x-request-id": "r-none"})
        assert missing.status_code == 403
        assert missing.json()["code"] == "csrf"
        wrong = await browser.post("/api/instances/a/whispers", json=whisper, headers={"x-csrf-token": csrf[:-2]})
        assert wrong.json()["code"] == "csrf"
        ok = await browser.post(
            "/api/instances/a/whispers", json=whisper, headers={"x-csrf-token": csrf, "x-request-id": "r-ok"}
        )
        assert ok.status_code == 202, ok.text
    by_id = {r.request_id: r for r in system.store.audit.read(after_id=before)}
    assert (by_id["r-ok"].actor, by_id["r-ok"].role, by_id["r-ok"].outcome) == ("olive", "operator", "ok")
    assert (by_id["r-none"].actor, by_id["r-none"].outcome) == ("olive", "csrf")
    signed_in = [r for r in by_id.values() if r.action == "POST /login"]
    assert [(r.actor, r.outcome) for r in signed_in] == [("olive", "ok")]


async def test_a_viewer_session_cannot_change_anything_even_with_its_csrf_token(system: System) -> None:
    async with system.browser() as browser:
        await sign_in(browser, system.token("viewer", "vera"))
        page = await browser.get("/worlds/a")
        assert page.status_code == 200
        assert 'id="controls"' not in page.text
        forged = await browser.post(
            "/api/instances/a/whispers", json={"text": "x"}, headers={"x-csrf-token": csrf_of(page)}
        )
        assert forged.status_code == 403
        assert forged.json()["code"] == "forbidden"
    async with system.browser() as browser:
        await sign_in(browser, system.token("puppet-master", "pam"))
        page = await browser.get("/worlds/a")
        assert 'id="controls"' in page.text
        assert 'id="freeze-button"' in page.text


async def test_a_revoked_token_ends_its_sessions_within_a_second(system: System) -> None:
    async with system.browser() as browser:
        await sign_in(browser, system.token("viewer", "brief"))
        assert (await browser.get("/api/instances")).status_code == 200
        TokenService(system.store).revoke("brief")  # another server on the same database

        async def refused() -> bool:
            return (await browser.get("/api/instances")).status_code == 401

        await wait_until("the revoked token's session is refused", refused, deadline_s=1.5)
        assert 'action="/login"' in (await browser.get("/")).text


async def test_signing_out_needs_the_csrf_token_and_ends_the_session(system: System) -> None:
    async with system.browser() as browser:
        await sign_in(browser, system.token("viewer", "leaving"))
        csrf = csrf_of(await browser.get("/"))
        forged = await browser.post("/logout", content=b"csrf_token=nope", headers=FORM)
        assert forged.status_code == 403
        assert forged.json()["code"] == "csrf"
        assert (await browser.get("/api/instances")).status_code == 200
        out = await browser.post("/logout", content=f"csrf_token={csrf}".encode(), headers=FORM)
        assert out.status_code == 303
        assert (await browser.get("/api/instances")).status_code == 401


async def test_the_forms_refuse_other_sites_and_other_content_types(system: System) -> None:
    token = system.token("admin", "target")
    async with system.browser() as browser:
        for headers in ({"sec-fetch-site": "cross-site"}, {"origin": "https://evil.example"}):
            refused = await browser.post("/login", content=f"token={token}".encode(), headers={**FORM, **headers})
            assert refused.status_code == 403
            assert refused.json()["code"] == "csrf"
        own = {"origin": "null", "sec-fetch-site": "same-origin"}  # a browser's own form under no-referrer
        assert (await browser.post("/login", content=b"token=x", headers={**FORM, **own})).status_code == 401
        plain = await browser.post("/login", content=f"token={token}".encode(), headers={"content-type": "text/plain"})
        assert plain.status_code == 415
        same = {"origin": f"http://{TEST_HOST}", "sec-fetch-site": "same-origin"}
        assert (
            await browser.post("/login", content=f"token={token}".encode(), headers={**FORM, **same})
        ).status_code == 303


async def test_bearer_clients_are_unchanged_and_win_over_a_cookie(system: System) -> None:
    async with system.browser() as browser:
        await sign_in(browser, system.token("viewer", "cookie-viewer"))
        operator = system.token("operator", "bearer-operator")
        sent = await browser.post(
            "/api/instances/a/whispers", json={"text": "hi"}, headers={"authorization": f"Bearer {operator}"}
        )
        assert sent.status_code == 202, sent.text  # no CSRF token: a Bearer token is no ambient credential


async def test_pages_and_assets_allow_only_this_server(system: System) -> None:
    async with system.browser() as browser:
        for path in ("/",):
            page = await browser.get(path)
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp
            assert "default-src 'none'" in csp
            assert "unsafe-inline" not in csp
            assert page.headers["cache-control"] == "no-store"
        script = await browser.get("/static/vendor/htmx.min.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        again = await browser.get("/static/vendor/htmx.min.js", headers={"if-none-match": script.headers["etag"]})
        assert again.status_code == 304
        assert (await browser.get("/static/../routes.py")).status_code == 404
        assert (await browser.get("/static/nothing.js")).status_code == 404


async def test_a_page_opened_without_a_session_sends_the_browser_to_sign_in(system: System) -> None:
    async with system.browser() as browser:
        for path in ("/worlds/a", "/merge", "/packages", "/health", "/audit"):
            page = await browser.get(path)
            assert (page.status_code, page.headers["location"]) == (303, "/"), path
        assert (await browser.get("/")).status_code == 200  # the sign-in form itself
        data = await browser.get("/api/instances/a/status")  # a client's read is still refused as JSON
        assert data.status_code == 401
        assert data.json()["code"] == "unauthenticated"
        fragment = await browser.get("/ui/instances")  # htmx's refresh: a 401 it turns into the sign-in form
        assert fragment.status_code == 401
