"""Access control at the HTTP edge, checked against the real app's routes: every route has a policy; the role x
route matrix (401 for no, an invalid, an expired and a revoked token; 403 below the route's role; in for the role);
a token scoped to one instance meets 404 on every other; cross-site requests (form-encoded, text/plain, empty) are
refused with 415; no CORS allowance unless configured; a foreign Host gets 400; every mutating request, accepted or
refused, is one audit row with who sent it; rate limits per token and per failing address."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Route

from soulfra.api.access import POLICIES, AccessSettings, Policy, policy_for, routes_of
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.platforms.instance import InstanceSettings
from soulfra.security.identity import ROLES, rank
from soulfra.security.tokens import TokenService
from soulfra.store.ports import Store
from soulfra.world import DEFAULT_WORLD

from .support import TEST_HOST, api_in_process, client_for, wait_until

pytestmark = pytest.mark.anyio

# Path parameters filled in for the matrix: instance "a" exists (as does "b"), the rest are plausible values.
SAMPLES = {"instance_id": "a", "agent_id": "arty", "snapshot_id": "0", "unified_id": "latest", "name": "nobody"}
SKIP = {"HEAD", "OPTIONS"}
STREAMS = {"/api/stream", "/api/instances/{instance_id}/events"}  # never end: asked only for their refusals


@dataclass
class System:
    app: FastAPI
    engine: PuppetMasterEngine
    admin: httpx.AsyncClient
    tokens: TokenService
    store: Store

    def client(self, token: str | None) -> httpx.AsyncClient:
        return client_for(self.app, token)

    def token(self, role: str, *, instances: list[str] | None = None, name: str | None = None) -> str:
        name = name or f"{role}-{'-'.join(instances or ['all'])}"
        return self.tokens.create(name=name, role=role, by="tests", instances=instances)[1]


async def _system(tmp_path: Path, access: AccessSettings) -> AsyncIterator[System]:
    settings = EngineSettings(instance=InstanceSettings(rate=50.0))
    async with api_in_process(tmp_path, "a", settings, access=access) as (app, engine, admin):
        for seed, instance_id in enumerate("ab"):
            await engine.create_instance(seed=seed, spec=DEFAULT_WORLD, agents=1, instance_id=instance_id)
        yield System(app, engine, admin, app.state.tokens, engine.store)


def _access(**changes: object) -> AccessSettings:
    """The test host allowed, and failed authentications not locked out (the matrix fails hundreds on purpose)."""
    return AccessSettings.for_host("127.0.0.1", [TEST_HOST], **{"auth_failures": 1_000_000, **changes})


@pytest.fixture
async def system(tmp_path: Path, anyio_backend: str) -> AsyncIterator[System]:
    async for built in _system(tmp_path, _access()):
        yield built


def routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """Every (method, path template) the app answers."""
    for route in routes_of(app.routes):
        for method in sorted(getattr(route, "methods", None) or ()):
            if method not in SKIP:
                yield method, str(getattr(route, "path", ""))


def url(template: str, **given: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: given.get(m.group(1), SAMPLES[m.group(1)]), template)


async def ask(client: httpx.AsyncClient, method: str, path: str, policy: Policy) -> httpx.Response:
    """A request the route would take: its declared content type, an empty JSON object or an empty upload."""
    if method == "DELETE" or not policy.content_types:
        return await client.request(method, path)
    kind = policy.content_types[0]
    return await client.request(method, path, content=b"{}" if kind == "application/json" else b"", headers={
        "content-type": kind})  # fmt: skip


# -- every route has a policy ---------------------------------------------------------------------------------------


async def test_every_route_of_the_app_has_a_declared_policy(system: System) -> None:
    found = list(routes(system.app))
    assert len(found) > 50
    missing = [f"{method} {path}" for method, path in found if policy_for(method, path) is None]
    assert not missing, f"routes without an access policy: {missing}"
    for method, path in found:
        policy = policy_for(method, path)
        assert policy is not None
        assert policy.scoped == ("{instance_id}" in path), path
        assert policy.mutating == (method != "GET"), path
        assert policy.role is None or policy.role in ROLES


async def test_every_declared_policy_names_a_route_of_the_app(system: System) -> None:
    """No stale row: a route taken away (``/redoc``, say) takes its policy with it."""
    assert sorted(set(POLICIES) - set(routes(system.app))) == []


async def test_a_route_without_a_policy_fails_closed(system: System, caplog: pytest.LogCaptureFixture) -> None:
    async def endpoint(_request: object) -> None:
        raise AssertionError("an undeclared route must never run")

    system.app.router.routes.append(Route("/api/undeclared", endpoint, methods=["GET"]))
    with caplog.at_level(logging.ERROR, logger="soulfra.api.access"):
        response = await system.admin.get("/api/undeclared")
    assert response.status_code == 500
    assert "declares no access policy" in response.json()["detail"]
    assert any("no access policy for GET /api/undeclared" in r.getMessage() for r in caplog.records)


# -- the role x route matrix ----------------------------------------------------------------------------------------


async def test_the_role_by_route_matrix(system: System) -> None:
    tokens = {role: system.token(role) for role in ROLES}
    expired = system.tokens.create(name="expired", role="admin", by="tests", expires_in=timedelta(seconds=-1))[1]
    revoked = system.token("admin", name="revoked")
    system.tokens.revoke("revoked")
    bad = {"none": None, "invalid": "sft_not-a-token", "expired": expired, "revoked": revoked}
    checked = 0
    for method, template in routes(system.app):
        policy = policy_for(method, template)
        assert policy is not None
        if policy.role is None:
            assert template not in STREAMS or method == "GET"
            continue
        path = url(template)
        for why, token in bad.items():
            async with system.client(token) as client:
                response = await ask(client, method, path, policy)
            if policy.page and why == "none":  # a browser with no session: sent to the sign-in form
                assert (response.status_code, response.headers["location"]) == (303, "/"), (method, template)
                continue
            assert response.status_code == 401, (method, template, why, response.text)
            assert response.json()["code"] == "unauthenticated"
            assert response.headers["www-authenticate"].startswith("Bearer")
        for role in ROLES:
            if template in STREAMS and rank(role) >= rank(policy.role):
                continue  # an admitted stream never ends
            path = url(template, instance_id="ghost", name="ghost") if method == "DELETE" else path
            async with system.client(tokens[role]) as client:
                response = await ask(client, method, path, policy)
            if rank(role) < rank(policy.role):
                assert response.status_code == 403, (method, template, role, response.text)
                assert response.json()["code"] == "forbidden"
            else:
                assert response.status_code not in (401, 403, 415, 429, 500), (method, template, role, response.text)
        checked += 1
    assert checked > 40


async def test_a_token_scoped_to_one_instance_meets_404_on_every_other(system: System) -> None:
    scoped = system.token("admin", instances=["a"])
    async with system.client(scoped) as client:
        listed = (await client.get("/api/instances")).json()["instances"]
        assert [row["id"] for row in listed] == ["a"]
        for method, template in routes(system.app):
            policy = policy_for(method, template)
            assert policy is not None
            if not policy.scoped:
                continue
            for other in ("b", "nowhere"):  # one that exists and one that does not: the same answer
                response = await ask(client, method, url(template, instance_id=other), policy)
                assert response.status_code == 404, (method, template, other, response.text)
                assert response.json() == {"code": "not_found", "detail": f"no instance '{other}'"}
        export = await client.get("/api/export", params={"instance": "b"})
        assert export.status_code == 404
        assert (await client.get("/api/instances/a/status")).status_code == 200


async def test_a_private_surface_needs_a_viewer(tmp_path: Path, anyio_backend: str) -> None:
    async for system in _system(tmp_path, _access(private_surface=True)):
        for path in ("/api/vibe/weather", "/api/agents/echo", "/api/ritual/traces", "/healthz", "/readyz"):
            async with system.client(None) as anonymous:
                assert (await anonymous.get(path)).status_code == 401, path
            async with system.client(system.token("viewer", name=f"v{len(path)}")) as viewer:
                assert (await viewer.get(path)).status_code == 200, path


async def test_enforce_off_takes_access_control_away_whole(tmp_path: Path, anyio_backend: str) -> None:
    """The switch ``soulfra bench api`` measures access control's cost with: nothing is checked (so the comparison
    is fair), which is why no flag or variable sets it."""
    async for system in _system(tmp_path, _access(enforce=False)):
        async with system.client(None) as anonymous:
            reply = await anonymous.get("/api/instances")
            assert reply.status_code == 200
            assert "x-request-id" not in reply.headers


async def test_the_public_surface_is_anonymous(system: System) -> None:
    async with system.client(None) as anonymous:
        for path in ("/api/vibe/weather", "/api/agents/echo", "/api/ritual/traces", "/healthz", "/openapi.json"):
            response = await anonymous.get(path)
            assert response.status_code == 200, path
            assert "cache-control" not in response.headers


# -- browser and network safety -------------------------------------------------------------------------------------


async def test_cross_site_requests_to_every_mutating_route_are_refused(system: System) -> None:
    kinds = {
        "form": {"content-type": "application/x-www-form-urlencoded"},
        "text": {"content-type": "text/plain"},
        "empty": {},
    }
    checked = 0
    for method, template in routes(system.app):
        policy = policy_for(method, template)
        assert policy is not None
        if not policy.mutating:
            continue
        if "application/x-www-form-urlencoded" in policy.content_types:
            continue  # the dashboard's sign-in and sign-out forms: tests/unit/test_dashboard_access.py
        path = url(template)
        if method == "DELETE":
            response = await system.admin.request(method, path, content=b"x=1", headers=kinds["form"])
            assert response.status_code == 415, (template, response.text)
            continue
        for kind, headers in kinds.items():
            body = b"" if kind == "empty" else b"x=1"
            response = await system.admin.request(method, path, content=body, headers=headers)
            assert response.status_code == 415, (method, template, kind, response.text)
            assert response.json()["code"] == "unsupported_media_type"
        checked += 1
    assert checked > 20
    assert (await system.admin.get("/api/instances/a/status")).status_code == 200  # nothing was refused for long


async def test_no_cors_allowance_unless_origins_are_configured(system: System, tmp_path: Path) -> None:
    evil = {"origin": "https://evil.example"}
    response = await system.admin.get("/api/instances", headers=evil)
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    preflight = await system.admin.options(
        "/api/instances/a/pause", headers={**evil, "access-control-request-method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers
    async for allowed in _system(tmp_path / "cors", _access(cors_origins=("https://ops.example",))):
        good = await allowed.admin.get("/api/instances", headers={"origin": "https://ops.example"})
        assert good.headers["access-control-allow-origin"] == "https://ops.example"
        foreign = await allowed.admin.get("/api/instances", headers=evil)
        assert "access-control-allow-origin" not in foreign.headers


async def test_a_foreign_host_is_refused(system: System) -> None:
    token = system.token("admin", name="host-test")
    for host in ("evil.example", "attacker.test:8000"):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=system.app), base_url=f"http://{host}",
            headers={"authorization": f"Bearer {token}"},
        ) as foreign:  # fmt: skip
            for path in ("/api/instances", "/api/vibe/weather"):
                response = await foreign.get(path)
                assert response.status_code == 400, (host, path)
                assert response.json()["code"] == "bad_host"
            pause = await foreign.post("/api/instances/a/pause", json={})
            assert pause.status_code == 400
    assert (await system.admin.get("/api/instances/a/status")).json()["platforms"]["runtime"]["state"] == "running"


async def test_every_reply_carries_the_security_headers_and_a_request_id(system: System) -> None:
    async with system.client(None) as anonymous:
        replies = [await anonymous.get("/api/vibe/weather"), await anonymous.get("/api/instances")]
    replies.append(await system.admin.get("/api/instances", headers={"x-request-id": "trace-1"}))
    for response in replies:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert re.fullmatch(r"[A-Za-z0-9._\-]{1,64}", response.headers["x-request-id"])
        assert "strict-transport-security" not in response.headers  # plain HTTP here
    assert replies[2].headers["x-request-id"] == "trace-1"
    assert replies[2].headers["cache-control"] == "no-store"


# -- the audit trail ------------------------------------------------------------------------------------------------


async def test_every_mutating_request_is_one_audit_row_with_who_sent_it(system: System) -> None:
    operator = system.token("operator", name="olga")
    viewer = system.token("viewer", name="vic")
    before = system.store.audit.head()[0]
    async with system.client(operator) as client:
        ok = await client.post("/api/instances/a/whispers", json={"text": "hello"}, headers={"x-request-id": "r-ok"})
        assert ok.status_code == 202
        plain = {"content-type": "text/plain", "x-request-id": "r-415"}
        typed = await client.post("/api/instances/a/pause", content=b"x", headers=plain)
        assert typed.status_code == 415
        missing = await client.post("/api/instances/zz/pause", json={}, headers={"x-request-id": "r-404"})
        assert missing.status_code == 404
        invalid = await client.post("/api/instances/a/whispers", json={}, headers={"x-request-id": "r-422"})
        assert invalid.status_code == 422
    async with system.client(viewer) as client:
        low = await client.post("/api/instances/a/pause", json={}, headers={"x-request-id": "r-403"})
        assert low.status_code == 403
    async with system.client(None) as client:
        anonymous = await client.post("/api/instances/a/pause", json={}, headers={"x-request-id": "r-401"})
        assert anonymous.status_code == 401
    god = await system.admin.post("/api/god/freeze", json={"instances": ["b"]}, headers={"x-request-id": "r-god"})
    assert god.status_code == 200, god.text
    await system.admin.get("/api/instances")  # a read is not audited

    rows = [r for r in system.store.audit.read(after_id=before) if r.request_id and r.request_id.startswith("r-")]
    by_id = {r.request_id: r for r in rows}
    assert len(rows) == len(by_id) == 7, [(r.request_id, r.action) for r in rows]
    expected = {
        "r-ok": ("olga", "operator", "ok"), "r-415": ("olga", "operator", "unsupported_media_type"),
        "r-404": ("olga", "operator", "not_found"), "r-422": ("olga", "operator", "invalid_request"),
        "r-403": ("vic", "viewer", "forbidden"), "r-401": ("anonymous", "anonymous", "unauthenticated"),
    }  # fmt: skip
    for request_id, (actor, role, outcome) in expected.items():
        row = by_id[request_id]
        assert (row.actor, row.role, row.outcome) == (actor, role, outcome), row
        assert row.source == "127.0.0.1"
    assert by_id["r-ok"].action == "POST /api/instances/{instance_id}/whispers"
    assert by_id["r-ok"].instance_id == "a"
    assert by_id["r-ok"].detail["text"] == "hello"
    assert "seq" in by_id["r-ok"].detail
    assert by_id["r-god"].actor.startswith("test-admin")
    assert by_id["r-god"].role == "admin"
    assert by_id["r-god"].outcome == "ok"
    listed = await system.admin.get("/api/audit", params={"actor": "olga", "after": before})
    assert [row["request_id"] for row in listed.json()["entries"]] == ["r-ok", "r-415", "r-404", "r-422"]
    assert all(
        "token" not in str(row["detail"]) or "sft_" not in str(row["detail"]) for row in listed.json()["entries"]
    )


# -- tokens over HTTP -----------------------------------------------------------------------------------------------


async def test_tokens_are_created_listed_and_revoked_over_http(system: System) -> None:
    created = await system.admin.post(
        "/api/tokens", json={"name": "ci", "role": "operator", "expires": "30d", "instances": ["a"]}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["token"].startswith("sft_")
    assert (body["name"], body["role"], body["instances"]) == ("ci", "operator", ["a"])
    async with system.client(body["token"]) as ci:
        assert (await ci.post("/api/instances/a/pause", json={})).status_code == 200
        assert (await ci.post("/api/instances/a/resume", json={})).status_code == 200
        listed = (await system.admin.get("/api/tokens")).json()["tokens"]
        assert "ci" in [row["name"] for row in listed]
        assert body["token"] not in str(listed)
        assert all("hash" not in key for row in listed for key in row)
        assert (await system.admin.delete("/api/tokens/ci")).json()["revoked_at"]
        assert (await ci.get("/api/instances")).status_code == 401
    assert (await system.admin.post("/api/tokens", json={"name": "x", "role": "god"})).status_code == 422
    assert (await system.admin.delete("/api/tokens/nobody")).status_code == 404


async def test_a_token_revoked_elsewhere_is_refused_within_a_second(system: System) -> None:
    token = system.token("viewer", name="elsewhere")
    async with system.client(token) as client:
        assert (await client.get("/api/instances")).status_code == 200
        other = TokenService(system.store)  # another server on the same database revokes it
        other.revoke("elsewhere")

        async def refused() -> bool:
            return (await client.get("/api/instances")).status_code == 401

        await wait_until("the revoked token is refused", refused, deadline_s=1.5)


# -- limits ---------------------------------------------------------------------------------------------------------


async def test_changes_are_rate_limited_per_token(tmp_path: Path, anyio_backend: str) -> None:
    async for system in _system(tmp_path, _access(mutation_rate=0.01, mutation_burst=2)):
        async with system.client(system.token("operator", name="busy")) as busy:
            for _ in range(2):
                assert (await busy.post("/api/instances/a/snapshots", json={})).status_code == 201
            limited = await busy.post("/api/instances/a/snapshots", json={})
            assert limited.status_code == 429
            assert limited.json()["code"] == "rate_limited"
            assert int(limited.headers["retry-after"]) >= 1
            assert (await busy.get("/api/instances/a/snapshots")).status_code == 200  # reads are not limited
        async with system.client(system.token("operator", name="calm")) as calm:
            assert (await calm.post("/api/instances/a/snapshots", json={})).status_code == 201  # its own bucket


async def test_failed_authentications_lock_the_address_out(tmp_path: Path, anyio_backend: str) -> None:
    async for system in _system(tmp_path, _access(auth_failures=3)):
        async with system.client("sft_guess") as guesser:
            for _ in range(3):
                assert (await guesser.get("/api/instances")).status_code == 401
        async with system.client(system.token("viewer", name="innocent")) as good:
            locked = await good.get("/api/instances")
            assert locked.status_code == 429
            assert int(locked.headers["retry-after"]) >= 1
            assert (await good.get("/api/vibe/weather")).status_code == 200  # the public surface stays open


async def test_an_admin_sets_an_instance_s_rules_and_it_is_audited(system: System) -> None:
    operator = system.token("operator", name="op")
    async with system.client(operator) as client:
        refused = await client.put("/api/instances/a/protocol/rules", json={"licence": {"fork": False}})
        assert refused.status_code == 403
    assert system.store.instances.rules("a") is None
    bad = await system.admin.put("/api/instances/a/protocol/rules", json={"rules": ["no-such-rule"]})
    assert bad.status_code == 422
    done = await system.admin.put(
        "/api/instances/a/protocol/rules", json={"licence": {"fork": False}}, headers={"x-request-id": "rules-1"}
    )
    assert done.status_code == 200, done.text
    stored = system.store.instances.rules("a")
    assert stored is not None
    assert stored["licence"] == {"fork": False, "export": True, "max_forks": None}
    [row] = system.store.audit.read(action="PUT /api/instances/{instance_id}/protocol/rules", outcome="ok")
    assert (row.request_id, row.instance_id, row.role) == ("rules-1", "a", "admin")
    assert row.detail["rules"]["licence"]["fork"] is False
