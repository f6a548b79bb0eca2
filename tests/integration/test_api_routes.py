"""The HTTP API of ``soulfra up`` as a client sees it, on one real server process shared by the module: health and
the OpenAPI document, the public surface, whispers, the event stream, snapshots, the protocol and errors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .api_support import (
    BASE,
    INSTANCE,
    PLATFORM_NAMES,
    REQUEST_TIMEOUT_S,
    echoes_once_heard,
    read_sse,
    runtime_tick,
    wait_past,
)
from .support import Server, assert_problem, running_server, wait_for

# The API's tests share an expensive module-scoped fixture: under pytest-xdist they all run in one worker.
pytestmark = pytest.mark.xdist_group("test_api")


PHASES = {"calm-bloom", "echo-storm", "trust-surge", "drift-wave", "chaos-bloom"}
WEATHER_KEYS = {
    "condition",
    "temperature",
    "pressure",
    "wind",
    "forecast",
    "frequency",
    "colour",
    "emotion",
    "narrative",
}


# -- the server process ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the read-only checks (and for writes that do not stop the world)."""
    with running_server(tmp_path_factory.mktemp("shared"), request_timeout=REQUEST_TIMEOUT_S) as server:
        yield server


@pytest.fixture
def api(shared: Server) -> Iterator[httpx.Client]:
    with shared.client() as client:
        yield client


# -- operations ----------------------------------------------------------------------------------------------------


def test_healthz_and_readyz(api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["instance"] == INSTANCE
    assert isinstance(body["tick"], int)
    assert body["tick"] >= 0


def test_openapi_lists_the_public_routes(api: httpx.Client) -> None:
    response = api.get("/openapi.json")
    assert response.status_code == 200
    paths = set(response.json()["paths"])
    assert {"/api/vibe/weather", "/api/agents/echo", "/api/ritual/traces", "/api/stream"} <= paths
    for suffix in (
        "status",
        "vibe/weather",
        "agents/echo",
        "ritual/traces",
        "events",
        "whispers",
        "pause",
        "resume",
        "override",
        "agents/{agent_id}",
        "agents/{agent_id}/possess",
        "inputs",
        "protocol/validate",
        "snapshots",
        "unified-snapshots",
    ):
        assert f"/api/instances/{{instance_id}}/{suffix}" in paths


def test_instances_lists_the_default(api: httpx.Client) -> None:
    body = api.get("/api/instances").json()
    assert body["default"] == INSTANCE
    assert INSTANCE in json.dumps(body["instances"])


# -- the public surface --------------------------------------------------------------------------------------------


def assert_weather(body: dict[str, Any]) -> None:
    assert set(body) == {"tick", "weather", "history"}
    assert isinstance(body["tick"], int)
    weather = body["weather"]
    assert set(weather) >= WEATHER_KEYS
    assert weather["condition"] in PHASES
    assert weather["forecast"] in PHASES
    for key in ("temperature", "pressure", "wind"):
        assert isinstance(weather[key], int | float)
    assert isinstance(weather["frequency"], int)
    assert re.fullmatch(r"#[0-9a-f]{6}", weather["colour"])
    assert isinstance(weather["emotion"], str)
    assert isinstance(weather["narrative"], str)
    assert weather["narrative"]
    assert isinstance(body["history"], list)
    assert body["history"]
    for entry in body["history"]:
        assert isinstance(entry["tick"], int)
        assert entry["condition"] in PHASES


@pytest.mark.parametrize("prefix", ["/api", BASE])
def test_vibe_weather(api: httpx.Client, prefix: str) -> None:
    wait_past(api, 3)
    response = api.get(f"{prefix}/vibe/weather")
    assert response.status_code == 200
    assert_weather(response.json())
    limited = api.get(f"{prefix}/vibe/weather", params={"limit": 1}).json()
    assert len(limited["history"]) == 1


@pytest.mark.parametrize("prefix", ["/api", BASE])
def test_agent_echoes(api: httpx.Client, prefix: str) -> None:
    body = wait_for(
        lambda: (b := api.get(f"{prefix}/agents/echo").json())["echoes"] and b, timeout=20, what="the first echoes"
    )
    assert set(body) == {"tick", "echoes"}
    assert isinstance(body["tick"], int)
    agents = {"cal-riven", "arty", "agent-zero"}
    for echo in body["echoes"]:
        assert echo["agent"] in agents
        assert isinstance(echo["tick"], int)
        assert echo["tick"] < body["tick"] + 1
        assert echo["kind"] in {"post_made", "whisper_heard", "operator_acted", "artifact_produced"}
    ticks = [echo["tick"] for echo in body["echoes"]]
    assert ticks == sorted(ticks)


@pytest.mark.parametrize("prefix", ["/api", BASE])
def test_ritual_traces(api: httpx.Client, prefix: str) -> None:
    body = api.get(f"{prefix}/ritual/traces").json()
    assert set(body) == {"tick", "traces"}
    assert isinstance(body["tick"], int)
    assert isinstance(body["traces"], list)
    for trace in body["traces"]:
        assert isinstance(trace["kind"], str)
        assert isinstance(trace["tick"], int)


def test_agent_echo_of_one_agent(api: httpx.Client) -> None:
    body = api.get("/api/agents/echo/arty").json()
    assert body["agent"] == "arty"
    assert all(echo["agent"] == "arty" for echo in body["echoes"])


# -- whispers ------------------------------------------------------------------------------------------------------


def test_a_whisper_is_logged_and_heard_at_its_tick(api: httpx.Client) -> None:
    text = "sing of the tides"
    response = api.post(f"{BASE}/whispers", json={"text": text, "target": "arty", "tone": "playful"})
    assert response.status_code == 202, response.text
    ack = response.json()
    seq, tick = ack["seq"], ack["tick"]
    assert isinstance(seq, int)
    assert isinstance(tick, int)
    assert ack["instance"] == INSTANCE
    assert ack["type"] == "whisper"

    logged = api.get(f"{BASE}/inputs", params={"after": seq - 1, "limit": 1}).json()["inputs"]
    assert logged == [
        {
            "seq": seq,
            "tick": tick,
            "input": {"tick": tick, "type": "whisper", "target": "arty", "text": text, "tone": "playful"},
        }
    ]

    wait_past(api, tick)
    heard = {"tick": tick, "kind": "whisper_heard", "agent": "arty", "text": text, "tone": "playful"}
    echoes = echoes_once_heard(api, "arty", heard)
    # The whisper forces arty to act at that very tick, and it takes the whisper up in a post.
    replies = [e for e in echoes if e["kind"] == "post_made" and e["tick"] == tick]
    assert len(replies) == 1
    assert text in replies[0]["text"]
    memory = api.get(f"{BASE}/agents/arty").json()["agent"]["state"]["memory"]
    assert any(entry.startswith(f"{tick}:post:") for entry in memory)


def test_a_whisper_for_a_later_tick_applies_then(api: httpx.Client) -> None:
    at = runtime_tick(api) + 10
    ack = api.post(f"{BASE}/whispers", json={"text": "later", "target": "cal-riven", "tick": at}).json()
    assert ack["tick"] == at
    wait_past(api, at)
    heard = {"tick": at, "kind": "whisper_heard", "agent": "cal-riven", "text": "later", "tone": "gentle"}
    echoes_once_heard(api, "cal-riven", heard)  # fails unless heard at exactly that tick


# -- the event stream ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/stream", f"{BASE}/events"])
def test_the_stream_is_ordered_and_resumes(api: httpx.Client, path: str) -> None:
    with api.stream("GET", path) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        first = read_sse(response, 12)
    assert len(first) == 12
    ids = [e["id"] for e in first]
    assert ids == list(range(ids[0], ids[0] + 12))
    ticks = [e["data"]["tick"] for e in first]
    assert ticks == sorted(ticks)
    for event in first:
        assert event["data"]["seq"] == event["id"]
        assert event["data"]["channel"] == event["event"]

    last = ids[-1]
    with api.stream("GET", path, headers={"Last-Event-ID": str(last)}) as response:
        again = read_sse(response, 5)
    assert [e["id"] for e in again] == list(range(last + 1, last + 6))
    assert again[0]["data"]["tick"] >= ticks[-1]

    with api.stream("GET", path, params={"after": last}) as response:
        by_query = read_sse(response, 1)
    assert by_query[0]["id"] == last + 1


# -- snapshots and the protocol ------------------------------------------------------------------------------------


def test_manual_snapshots(api: httpx.Client) -> None:
    response = api.post(f"{BASE}/snapshots", json={})
    assert response.status_code == 201, response.text
    snap = response.json()
    assert isinstance(snap["id"], int)
    # a tick that already has a snapshot (every 20th, or a loop seal) answers with that one, under its first type
    assert snap["type"] == "manual" or (snap["type"] in ("periodic", "loop-seal") and snap["tick"] % 20 == 0)
    assert snap["state_hash"].startswith("b2:")
    listed = api.get(f"{BASE}/snapshots").json()["snapshots"]
    assert snap in listed
    one = api.get(f"{BASE}/snapshots/{snap['id']}").json()
    assert one["id"] == snap["id"]
    assert one["state_hash"] == snap["state_hash"]
    assert one["tick"] == snap["tick"]
    assert one["agents"] == 3

    verdict = api.post(f"{BASE}/protocol/validate", json={"subject": "snapshot", "snapshot": snap["id"]})
    assert verdict.status_code == 200
    assert verdict.json()["valid"] is True
    assert verdict.json()["violations"] == []


def test_unified_snapshots(api: httpx.Client) -> None:
    response = api.post(f"{BASE}/unified-snapshots", json={})
    assert response.status_code == 201, response.text
    record = response.json()
    assert isinstance(record["tick"], int)
    assert re.fullmatch(r"[0-9a-f]{64}", record["system_hash"])
    assert isinstance(record["conflicts"], list)
    assert isinstance(record["pause_ns"], int)
    assert record["pause_ns"] >= 0
    assert set(record["views"]) >= PLATFORM_NAMES
    assert record["views"]["runtime"]["tick"] == record["tick"]

    latest = api.get(f"{BASE}/unified-snapshots/latest")
    assert latest.status_code == 200
    assert latest.json()["id"] == record["id"]
    assert latest.json()["system_hash"] == record["system_hash"]
    by_id = api.get(f"{BASE}/unified-snapshots/{record['id']}").json()
    assert by_id["system_hash"] == record["system_hash"]
    listed = json.dumps(api.get(f"{BASE}/unified-snapshots").json())
    assert record["system_hash"] in listed


def test_protocol_rejects_an_oversized_input(api: httpx.Client) -> None:
    response = api.post(f"{BASE}/protocol/validate", json={"subject": "input", "input": {"text": "x" * 5000}})
    assert response.status_code == 200, response.text
    verdict = response.json()
    assert verdict["valid"] is False
    assert "input-size" in [v["rule"] for v in verdict["violations"]]
    small = api.post(f"{BASE}/protocol/validate", json={"subject": "input", "input": {"text": "x"}}).json()
    assert small["valid"] is True


def test_protocol_rules(api: httpx.Client) -> None:
    response = api.get(f"{BASE}/protocol/rules")
    assert response.status_code == 200
    assert isinstance(response.json(), dict)


# -- errors --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/api/instances/nowhere/status", None, 404, "not_found"),
        ("GET", "/api/instances/nowhere/vibe/weather", None, 404, "not_found"),
        ("POST", "/api/instances/nowhere/whispers", {"text": "hi"}, 404, "not_found"),
        ("GET", "/no/such/route", None, 404, "not_found"),
        ("GET", f"{BASE}/agents/nobody", None, 404, "unknown_agent"),
        ("POST", f"{BASE}/whispers", {}, 422, "invalid_request"),
        ("POST", f"{BASE}/whispers", {"text": ""}, 422, "invalid_request"),
        ("POST", f"{BASE}/whispers", {"text": "hi", "tone": "angry"}, 422, "invalid_request"),
        ("POST", f"{BASE}/agents/arty/act", {"action": "dance"}, 422, "invalid_request"),
        ("POST", f"{BASE}/protocol/validate", {"subject": "nothing"}, 422, "invalid_request"),
        ("GET", "/api/vibe/weather?limit=0", None, 422, "invalid_request"),
        ("GET", "/api/instances/bad%20id/status", None, 422, "invalid_request"),
        ("GET", f"{BASE}/unified-snapshots/oldest", None, 422, "invalid_request"),
        ("DELETE", "/healthz", None, 405, "method_not_allowed"),
    ],
)
def test_errors_are_code_and_detail(
    api: httpx.Client, method: str, path: str, body: dict[str, Any] | None, status: int, code: str
) -> None:
    assert_problem(api.request(method, path, json=body), status, code)


def test_a_body_that_is_not_json_is_invalid(api: httpx.Client) -> None:
    response = api.post(f"{BASE}/whispers", content=b"{not json", headers={"content-type": "application/json"})
    assert_problem(response, 422, "invalid_request")
