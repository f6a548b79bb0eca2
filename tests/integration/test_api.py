"""The HTTP API of ``soulfra up`` as a client sees it: a real server process on a loopback port, real requests."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .support import Server, assert_problem, running_server, soulfra, soulfra_at, start_server, wait_for

# The module's tests share an expensive module-scoped fixture: under pytest-xdist they all run in one worker.
pytestmark = pytest.mark.xdist_group("test_api")

INSTANCE = "world-0"
BASE = f"/api/instances/{INSTANCE}"
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
PLATFORM_NAMES = {"runtime", "surface", "protocol", "mirror"}
WAIT_S = 10.0  # the deadline of every wait here
REQUEST_TIMEOUT_S = 10.0


# -- the server process ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the read-only checks (and for writes that do not stop the world)."""
    with running_server(tmp_path_factory.mktemp("shared"), request_timeout=REQUEST_TIMEOUT_S) as server:
        yield server


@pytest.fixture
def own(tmp_path: Path) -> Iterator[Server]:
    """A server of this test's own, for tests that stop, possess or restart the world."""
    with running_server(tmp_path, request_timeout=REQUEST_TIMEOUT_S) as server:
        yield server


@pytest.fixture
def api(shared: Server) -> Iterator[httpx.Client]:
    with shared.client() as client:
        yield client


# -- helpers -------------------------------------------------------------------------------------------------------


def runtime_tick(client: httpx.Client) -> int:
    response = client.get(f"{BASE}/status")
    assert response.status_code == 200, response.text
    return int(response.json()["platforms"]["runtime"]["tick"])


def wait_past(client: httpx.Client, tick: int) -> int:
    """Wait until the runtime has run tick ``tick`` (its tick counter is beyond it)."""
    return wait_for(
        lambda: (t := runtime_tick(client)) > tick and t, timeout=WAIT_S, what=f"the runtime to pass tick {tick}"
    )


def assert_still(client: httpx.Client, tick: int, *, span: float = 0.6) -> None:
    """The runtime's tick stays ``tick`` over ``span`` seconds; at 20 ticks/s about a dozen ticks would have run."""
    start = time.monotonic()
    polls = 0
    while time.monotonic() - start < span or polls < 5:
        assert runtime_tick(client) == tick
        polls += 1
        time.sleep(0.05)


def read_sse(source: httpx.Response | Iterator[str], count: int) -> list[dict[str, Any]]:
    """The first ``count`` numbered events of a server-sent event stream, as {"id", "event", "data"}; the bare
    ``id:`` line a stream from now opens with is no event. ``source`` is a response or the lines left of one."""
    events: list[dict[str, Any]] = []
    fields: dict[str, str] = {}
    for line in source.iter_lines() if isinstance(source, httpx.Response) else source:
        if line == "":
            if "id" in fields and "data" in fields:
                events.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
                if len(events) >= count:
                    return events
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
    return events


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
    echoes = api.get("/api/agents/echo/arty").json()["echoes"]
    assert {"tick": tick, "kind": "whisper_heard", "agent": "arty", "text": text, "tone": "playful"} in echoes
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
    echoes = api.get("/api/agents/echo/cal-riven").json()["echoes"]
    heard = [e for e in echoes if e["kind"] == "whisper_heard"]
    assert {"tick": at, "kind": "whisper_heard", "agent": "cal-riven", "text": "later", "tone": "gentle"} in heard


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


def surface_status(client: httpx.Client) -> dict[str, Any]:
    response = client.get(f"{BASE}/status")
    assert response.status_code == 200, response.text
    return dict(response.json()["platforms"]["surface"])


def opening_id(lines: Iterator[str]) -> int:
    """The position a stream from now goes on after: the bare ``id:`` line that comes before any event."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            assert "data" not in fields, f"an event came before the stream's opening id: {fields}"
            if "id" in fields:
                return int(fields["id"])
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    pytest.fail("the stream ended before its opening id")


def test_a_stream_starts_from_now_unless_told_to_replay(own: Server) -> None:
    """A client that names no position gets none of the events the world made before it came, and the next one; the
    id its stream opens with is where a reconnect with Last-Event-ID resumes, losing nothing made while it was
    away; ``after=0`` replays the events still kept."""
    with own.client() as api:
        wait_past(api, 5)
        paused = api.post(f"{BASE}/pause", json={}).json()["tick"]
        wait_for(
            lambda: surface_status(api)["tick"] >= paused, timeout=WAIT_S, what="the surface to project the last tick"
        )
        made = int(surface_status(api)["stream_seq"])
        assert made > 0
        for path in ("/api/stream", f"{BASE}/events"):
            with api.stream("GET", path) as response:
                assert response.status_code == 200
                # None of the events made so far is sent (a mirror's note may still come in while the world is paused).
                assert opening_id(response.iter_lines()) >= made
        with api.stream("GET", f"{BASE}/events", params={"after": 0}) as response:
            replayed = read_sse(response, made)
        assert [e["id"] for e in replayed] == list(range(1, made + 1))

        with api.stream("GET", "/api/stream") as response:
            lines = response.iter_lines()
            now = opening_id(lines)
            assert api.post(f"{BASE}/resume", json={}).status_code == 200
            first = read_sse(lines, 3)
        assert [e["id"] for e in first] == [now + 1, now + 2, now + 3]
        assert first[0]["data"]["tick"] >= paused

        # A client gone before its first event comes back with the opening id: it gets everything made meanwhile.
        api.post(f"{BASE}/pause", json={})
        with api.stream("GET", "/api/stream") as response:
            now = opening_id(response.iter_lines())
        api.post(f"{BASE}/resume", json={})
        wait_for(
            lambda: int(surface_status(api)["stream_seq"]) > now + 5,
            timeout=WAIT_S,
            what="events after the client left",
        )
        with api.stream("GET", "/api/stream", headers={"Last-Event-ID": str(now)}) as response:
            again = read_sse(response, 5)
        assert [e["id"] for e in again] == list(range(now + 1, now + 6))


# -- override, pause, resume ---------------------------------------------------------------------------------------


def test_override_stops_every_platform_until_resumed(own: Server) -> None:
    with own.client() as api:
        wait_past(api, 3)
        response = api.post(f"{BASE}/override", json={"reason": "integration test"})
        assert response.status_code == 200, response.text
        reply = response.json()
        assert reply["overridden"] is True
        stopped = reply["tick"]
        assert_still(api, stopped)

        def all_halted() -> dict[str, Any] | None:
            platforms: dict[str, Any] = api.get(f"{BASE}/status").json()["platforms"]
            return platforms if all(p.get("halted") is True for p in platforms.values()) else None

        platforms = wait_for(all_halted, timeout=WAIT_S, what="every platform to report halted")
        assert set(platforms) == PLATFORM_NAMES
        assert platforms["runtime"]["state"] == "overridden"
        assert platforms["runtime"]["halted_at"] == stopped

        assert_problem(api.post(f"{BASE}/whispers", json={"text": "hello", "target": "arty"}), 409, "override_active")
        assert api.get(f"{BASE}/vibe/weather").status_code == 200  # reads go on being served
        assert runtime_tick(api) == stopped

        resumed = api.post(f"{BASE}/resume", json={})
        assert resumed.status_code == 200
        assert resumed.json()["overridden"] is False
        wait_past(api, stopped + 2)
        wait_for(
            lambda: all(p.get("halted") is False for p in api.get(f"{BASE}/status").json()["platforms"].values()),
            timeout=WAIT_S,
            what="every platform to be released",
        )
        assert api.post(f"{BASE}/whispers", json={"text": "hello", "target": "arty"}).status_code == 202


def test_pause_stops_ticks_but_not_the_other_platforms(own: Server) -> None:
    with own.client() as api:
        wait_past(api, 3)
        response = api.post(f"{BASE}/pause", json={})
        assert response.status_code == 200
        reply = response.json()
        assert reply["paused"] is True
        paused = reply["tick"]
        assert_still(api, paused)
        platforms = api.get(f"{BASE}/status").json()["platforms"]
        assert platforms["runtime"]["state"] == "paused"
        assert platforms["runtime"]["paused"] is True
        assert not any(p["halted"] for p in platforms.values())
        # While paused, the surface still serves and whispers are still stored, for the next tick.
        assert api.get("/api/vibe/weather").status_code == 200
        # with the world still, the short path (no query) and the routed path answer the same bytes
        for path, limit in (("/api/vibe/weather", 32), ("/api/agents/echo", 50), ("/api/ritual/traces", 100)):
            short, routed = api.get(path), api.get(path, params={"limit": limit})
            assert short.status_code == routed.status_code == 200
            assert short.content == routed.content
            assert short.headers["content-type"] == routed.headers["content-type"] == "application/json"
        ack = api.post(f"{BASE}/whispers", json={"text": "wait", "target": "arty"})
        assert ack.status_code == 202
        assert ack.json()["tick"] == paused

        resumed = api.post(f"{BASE}/resume", json={})
        assert resumed.status_code == 200
        assert resumed.json()["paused"] is False
        wait_past(api, paused + 2)
        assert api.get(f"{BASE}/status").json()["platforms"]["runtime"]["state"] == "running"
        echoes = api.get("/api/agents/echo/arty").json()["echoes"]
        assert {"tick": paused, "kind": "whisper_heard", "agent": "arty", "text": "wait", "tone": "gentle"} in echoes


# -- possession ----------------------------------------------------------------------------------------------------


def test_possess_act_and_release(own: Server) -> None:
    with own.client() as api:
        response = api.post(f"{BASE}/agents/arty/possess", json={"operator": "tester"})
        assert response.status_code == 202, response.text
        ack = response.json()
        assert ack["type"] == "possess"
        assert isinstance(ack["seq"], int)
        wait_past(api, ack["tick"])
        assert api.get(f"{BASE}/agents/arty").json()["agent"]["state"]["possessed_by"] == "tester"

        acted = api.post(f"{BASE}/agents/arty/act", json={"action": "post", "text": "the operator speaks"})
        assert acted.status_code == 202, acted.text
        act = acted.json()
        assert act["type"] == "act"
        assert act["seq"] > ack["seq"]
        wait_past(api, act["tick"])
        echoes = api.get("/api/agents/echo/arty").json()["echoes"]
        assert {"tick": act["tick"], "kind": "operator_acted", "agent": "arty", "action": "post"} in echoes
        assert any(
            e["kind"] == "post_made" and e["tick"] == act["tick"] and e["text"] == "the operator speaks" for e in echoes
        )

        released = api.post(f"{BASE}/agents/arty/release", json={})
        assert released.status_code == 202
        rel = released.json()
        assert rel["type"] == "release"
        wait_past(api, rel["tick"])
        assert api.get(f"{BASE}/agents/arty").json()["agent"]["state"]["possessed_by"] is None

        logged = api.get(f"{BASE}/inputs").json()["inputs"]
        assert [row["input"]["type"] for row in logged] == ["possess", "act", "release"]


def test_possess_without_a_body_uses_the_default_operator(own: Server) -> None:
    with own.client() as api:
        ack = api.post(f"{BASE}/agents/agent-zero/possess", headers={"content-type": "application/json"}).json()
        wait_past(api, ack["tick"])
        state = api.get(f"{BASE}/agents/agent-zero").json()["agent"]["state"]
        assert state["possessed_by"] == "puppet-master"


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


# -- restart -------------------------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_a_restart_keeps_the_state(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_server(tmp_path, log="first.log", request_timeout=REQUEST_TIMEOUT_S)
    try:
        with first.client() as api:
            wait_for(lambda: runtime_tick(api) >= 10, timeout=WAIT_S, what="tick 10")
            ack = api.post(f"{BASE}/whispers", json={"text": "remember me", "target": "arty"}).json()
            wait_past(api, ack["tick"])
            before_id = api.get("/readyz").json()["instance"]
            before = runtime_tick(api)
    finally:
        first_code = first.stop()
    assert (data / "soulfra.db").exists()

    second = start_server(tmp_path, log="second.log", request_timeout=REQUEST_TIMEOUT_S)
    try:
        with second.client() as api:
            assert runtime_tick(api) >= before
            assert api.get("/readyz").json()["instance"] == before_id == INSTANCE
            assert api.get("/api/instances").json()["default"] == before_id
            logged = api.get(f"{BASE}/inputs").json()["inputs"]
            whisper = {
                "tick": ack["tick"],
                "type": "whisper",
                "target": "arty",
                "text": "remember me",
                "tone": "gentle",
            }
            assert {"seq": ack["seq"], "tick": ack["tick"], "input": whisper} in logged
            # New inputs continue the sequence.
            later = api.post(f"{BASE}/whispers", json={"text": "again", "target": "arty"}).json()
            assert later["seq"] > ack["seq"]
            assert later["tick"] >= before
    finally:
        second_code = second.stop()
    assert first_code == 0, first.output()
    assert second_code == 0, second.output()


# -- the CLI client ------------------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_cli_client_commands(own: Server) -> None:
    url = own.url
    status = soulfra_at(own.home, "status", "--url", url)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0] == f"instance {INSTANCE}"
    for name in PLATFORM_NAMES:
        assert re.search(rf"^  {name}\s+\S+", status.stdout, re.MULTILINE)
    assert re.search(r"^  runtime\s+running\s+tick \d+", status.stdout, re.MULTILINE)
    assert re.search(r"^  protocol\s+\S+\s+\(no ticks of its own\)", status.stdout, re.MULTILINE)

    whispered = soulfra_at(own.home, "whisper", "hello from the cli", "--to", "arty", "--url", url)
    assert whispered.returncode == 0, whispered.stderr
    match = re.fullmatch(r"whisper (\d+) stored; applies at tick (\d+)\n", whispered.stdout)
    assert match, whispered.stdout
    seq, tick = int(match[1]), int(match[2])
    with own.client() as api:
        logged = api.get(f"{BASE}/inputs").json()["inputs"]
    assert {"seq": seq, "tick": tick, "type": "whisper", "text": "hello from the cli"} in [
        {"seq": r["seq"], "tick": r["tick"], "type": r["input"]["type"], "text": r["input"].get("text")} for r in logged
    ]

    paused = soulfra_at(own.home, "pause", "--url", url)
    assert paused.returncode == 0, paused.stderr
    assert re.fullmatch(rf"{INSTANCE} paused at tick \d+\n", paused.stdout)
    resumed = soulfra_at(own.home, "resume", "--url", url)
    assert resumed.returncode == 0, resumed.stderr
    assert re.fullmatch(rf"{INSTANCE} resumed at tick \d+\n", resumed.stdout)

    snap = soulfra_at(own.home, "snapshot", "--url", url)
    assert snap.returncode == 0, snap.stderr
    assert re.fullmatch(r"snapshot \d+ at tick \d+: b2:[0-9a-f]{64}\n", snap.stdout), snap.stdout
    unified = soulfra_at(own.home, "snapshot", "--unified", "--url", url)
    assert unified.returncode == 0, unified.stderr
    assert re.fullmatch(
        r"unified snapshot \d+ at tick \d+: system hash [0-9a-f]{16}, \d+ conflicts, runtime paused [0-9.]+ ms\n",
        unified.stdout,
    ), unified.stdout
    as_json = soulfra_at(own.home, "snapshot", "--json", "--url", url)
    assert as_json.returncode == 0, as_json.stderr
    taken = json.loads(as_json.stdout)
    assert taken["type"] == "manual" or (taken["type"] in ("periodic", "loop-seal") and taken["tick"] % 20 == 0)

    overridden = soulfra_at(own.home, "override", "--reason", "cli test", "--url", url)
    assert overridden.returncode == 0, overridden.stderr
    assert re.fullmatch(rf"{INSTANCE} stopped by emergency override at tick \d+\n", overridden.stdout)
    refused = soulfra_at(own.home, "whisper", "x", "--url", url)
    assert refused.returncode == 75, (refused.stdout, refused.stderr)
    assert refused.stdout == ""
    assert refused.stderr.startswith("soulfra: error:")
    assert "Traceback" not in refused.stderr
    halted = soulfra_at(own.home, "status", "--url", url)
    assert halted.returncode == 0, halted.stderr
    assert re.search(r"^  runtime\s+overridden", halted.stdout, re.MULTILINE)
    assert soulfra_at(own.home, "resume", "--url", url).returncode == 0
    again = soulfra_at(own.home, "whisper", "x", "--url", url)
    assert again.returncode == 0, again.stderr


def test_cli_without_a_server_exits_69() -> None:
    done = soulfra("status", "--url", "http://127.0.0.1:1")
    assert done.returncode == 69
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("soulfra: error:")
    assert "Traceback" not in done.stderr
