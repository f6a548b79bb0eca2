"""The OpenAPI document of the embedded app describes every answer, and the answers are what it describes.

Every 2xx response of every operation declares a named JSON schema (a response model), or a media type that is not
JSON (the event streams, package downloads). Then a sample of real requests, one or more per route, runs against an
engine on SQLite and the in-memory bus through httpx's ASGI transport: each body validates against its route's
declared model, and dumping the validated model gives the body back whole (no field dropped, none added or changed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from starlette.routing import BaseRoute

from soulfra.api.meta import PACKAGE_MEDIA_TYPE
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.platforms.instance import InstanceSettings

from .support import api_in_process, wait_until

pytestmark = pytest.mark.anyio

NOT_JSON = {"text/event-stream", "text/plain", PACKAGE_MEDIA_TYPE}  # text/plain: /metrics, Prometheus text


class System:
    def __init__(self, app: FastAPI, engine: PuppetMasterEngine, http: httpx.AsyncClient) -> None:
        self.app = app
        self.engine = engine
        self.http = http
        self.checked: set[tuple[str, str]] = set()  # (method, route path) of every answer checked

    async def call(self, method: str, url: str, status: int = 200, **kwargs: Any) -> Any:
        """One request; its body checked against the model its route declares. Returns the body."""
        response = await self.http.request(method, url, **kwargs)
        assert response.status_code == status, response.text
        route = self._route(method, url)
        assert route.response_model is not None, f"{method} {route.path} declares no response model"
        body = response.json()
        adapter: TypeAdapter[Any] = TypeAdapter(route.response_model)
        model = adapter.validate_python(body)
        assert adapter.dump_python(model, mode="json", by_alias=True, exclude_unset=True) == body, route.path
        self.checked.add((method, route.path))
        return body

    def _route(self, method: str, url: str) -> APIRoute:
        path = url.split("?", maxsplit=1)[0]
        for route in api_routes(self.app.routes):
            if method in (route.methods or ()) and route.path_regex.match(path):
                return route
        raise AssertionError(f"no route for {method} {path}")


def api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every route of the app, those of included routers too (FastAPI keeps an included router whole, as a route
    holding ``original_router``; the meta router is included without a prefix, so its paths are the app's)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes)


@pytest.fixture
async def system(tmp_path: Path, anyio_backend: str) -> AsyncIterator[System]:
    async with api_in_process(tmp_path, "a", EngineSettings(instance=InstanceSettings(rate=200.0))) as (
        app,
        engine,
        http,
    ):
        yield System(app, engine, http)


async def test_every_2xx_answer_declares_a_schema_or_a_media_type(system: System) -> None:
    document = (await system.http.get("/openapi.json")).json()
    operations = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            operations += 1
            answers = {code: answer for code, answer in operation["responses"].items() if code.startswith("2")}
            assert answers, f"{method.upper()} {path} documents no 2xx answer"
            for code, answer in answers.items():
                where = f"{method.upper()} {path} {code}"
                content = answer.get("content")
                assert content, f"{where} declares no body"
                for media_type, declared in content.items():
                    if media_type in NOT_JSON:
                        assert answer.get("description"), where
                        continue
                    assert media_type == "application/json", where
                    assert _named(declared.get("schema", {})), f"{where} has no response model: {declared}"
    assert operations > 40


async def test_the_streams_document_that_they_start_from_now(system: System) -> None:
    """A client reads the document to learn that leaving ``after`` out means "from now", and how to replay."""
    document = (await system.http.get("/openapi.json")).json()
    for path in ("/api/stream", "/api/instances/{instance_id}/events"):
        (after,) = (p for p in document["paths"][path]["get"]["parameters"] if p["name"] == "after")
        assert not after.get("required", False)
        assert "default" not in after["schema"] or after["schema"]["default"] is None
        description = after["description"]
        assert "from now" in description
        assert "0 replays" in description
        assert "Last-Event-ID" in description


def _named(schema: dict[str, Any]) -> bool:
    """A schema that names a model (or a choice of models), not a bare ``object``."""
    if "$ref" in schema:
        return True
    choices: list[dict[str, Any]] = schema.get("anyOf") or schema.get("oneOf") or []
    return bool(choices) and all("$ref" in choice for choice in choices)


async def test_real_answers_validate_against_their_models(system: System) -> None:
    call = system.call
    await call("POST", "/api/instances", 201, json={"id": "a", "seed": 1, "agents": 3})
    await call("POST", "/api/instances", 201, json={"id": "b", "seed": 2, "agents": 2})
    await wait_until("both worlds have run a loop", lambda: all(_tick(system, i) > 120 for i in "ab"))

    for url in (
        "/healthz", "/readyz", "/api/vibe/weather", "/api/agents/echo", "/api/ritual/traces", "/api/instances",
        "/api/instances/a", "/api/instances/a/status", "/api/instances/a/vibe/weather?limit=3",
        "/api/instances/a/agents/echo?limit=5", "/api/instances/a/ritual/traces?limit=5",
        "/api/instances/a/agents?limit=2", "/api/instances/a/protocol/rules", "/api/instances/a/snapshots",
        "/api/instances/a/mirror/anomalies", "/api/instances/a/mirror/seeds", "/api/agents/echo/arty",
        "/api/agents/echo/nobody", "/api/instances/a/agents/arty", "/api/instances/a/state?tick=5",
        "/api/instances/a/minds", "/api/instances/a/agents/arty/mind",
    ):  # fmt: skip
        await call("GET", url)
    await call("POST", "/api/instances/a/whispers", 202, json={"text": "hello", "target": "arty"})
    await call("GET", "/api/instances/a/inputs")
    # an input too large: a violation, so that the list of recent ones holds a row to check against its model
    await call("POST", "/api/instances/a/protocol/validate", json={"subject": "input", "input": {"text": "x" * 5000}})
    assert (await call("GET", "/api/instances/a/protocol/violations"))["recent"][0]["subject"] == "input"
    rules = await call("PUT", "/api/instances/b/protocol/rules", json={"max_agents": 50, "licence": {"max_forks": 3}})
    assert (rules["max_agents"], rules["licence"]["max_forks"], rules["licence"]["fork"]) == (50, 3, True)
    assert system.engine.store.instances.rules("b") == rules
    snapshot = await call("POST", "/api/instances/a/snapshots", 201, json={})
    await call("GET", f"/api/instances/a/snapshots/{snapshot['id']}")
    unified = await call("POST", "/api/instances/a/unified-snapshots", 201, json={})
    await call("GET", "/api/instances/a/unified-snapshots")
    await call("GET", f"/api/instances/a/unified-snapshots/{unified['id']}")
    for tail in (
        "agents/loop", "agents/loop?limit=2&offset=1", "ritual/log", "thread/state", "loop/witness", "anomaly/echo",
        "mirror/complete", f"mirror/snapshot/{unified['id']}", "mirror/snapshot/latest", "system/health",
    ):  # fmt: skip
        await call("GET", f"/api/{tail}{'&' if '?' in tail else '?'}instance=a")
    await call("GET", "/api/agents/loop")
    await call("GET", "/api/system/health")
    for action in ("possess", "release"):
        await call("POST", f"/api/instances/a/agents/arty/{action}", 202, json={})
    await call("POST", "/api/instances/a/agents/arty/act", 202, json={"action": "post", "text": "hi"})
    for action in ("pause", "resume", "override", "resume"):
        await call("POST", f"/api/instances/a/{action}", json={})

    await call("POST", "/api/god/freeze", json={"instances": ["a"], "duration": 600})
    await call("POST", "/api/god/thaw", json={})
    await call("POST", "/api/god/clone", json={"source": "a", "id": "c"})
    await call("POST", "/api/god/fork", json={"source": "a", "forks": [{"id": "f1"}, {"id": "f2"}]})
    await call("POST", "/api/god/merge/preview", json={"ours": "f1", "theirs": "f2"})
    await call("POST", "/api/god/merge", json={"ours": "f1", "theirs": "f2", "id": "m"})
    await call("POST", "/api/god/possess", json={"instance": "a", "agent": "arty"})
    for message in ({"action": "link"}, {"action": "whisper", "agent": "arty", "text": "hey"}, {"action": "unlink"}):
        await call("POST", "/api/god/communicate", json={"source": "a", "target": "b", **message})
    await call("POST", "/api/god/intervene", json={"instance": "a", "kind": "vibe", "condition": "echo-storm"})
    await call("POST", "/api/god/intervene", json={"instance": "a", "kind": "rewrite", "from_tick": 1, "id": "r"})
    await call("POST", "/api/god/revert", json={"instance": "a", "tick": 1})
    await call("POST", "/api/god", json={"type": "THAW_TIME", "instances": []})
    await call("GET", "/api/instances/a")  # with its children and abandoned branch

    package = await system.http.get("/api/instances/b/export")
    assert package.status_code == 200
    assert package.headers["content-type"] == PACKAGE_MEDIA_TYPE
    await call(
        "POST", "/api/import?as_id=imported&start=false", 201, content=package.content,
        headers={"content-type": PACKAGE_MEDIA_TYPE},
    )  # fmt: skip
    await call("GET", "/api/instances")  # a stored instance among live ones
    await call("DELETE", "/api/instances/imported")

    created = await call("POST", "/api/tokens", 201, json={"name": "v", "role": "viewer", "expires": "1d"})
    assert created["token"].startswith("sft_")
    await call("GET", "/api/tokens")
    await call("DELETE", "/api/tokens/v")
    for url in (
        "/api/audit?limit=5",
        "/api/audit/verify",
        "/api/leases",
        "/api/instances/a/agents?limit=2&view=compact",
    ):
        await call("GET", url)

    json_routes = {
        (method, route.path)
        for route in api_routes(system.app.routes)
        if route.response_model is not None
        for method in route.methods or ()
    }
    untried = json_routes - system.checked
    assert not untried, f"no sample answer checked for {sorted(untried)}"


def _tick(system: System, instance_id: str) -> int:
    instance = system.engine.live[instance_id]
    assert instance.runtime is not None
    return instance.runtime.world.tick
