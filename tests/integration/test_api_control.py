"""The HTTP API of ``soulfra up`` stopping, possessing and restarting the world, each test on a server process of its
own: a stream from now, override, pause and resume, possession, and a restart that keeps the state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .api_support import (
    BASE,
    INSTANCE,
    PLATFORM_NAMES,
    REQUEST_TIMEOUT_S,
    WAIT_S,
    read_sse,
    runtime_tick,
    wait_past,
)
from .support import Server, assert_problem, start_server, wait_for

# In the xdist group of the API's tests, as when they were one module (whose shared server they ran beside).
pytestmark = pytest.mark.xdist_group("test_api")


# -- helpers -------------------------------------------------------------------------------------------------------


def assert_still(client: httpx.Client, tick: int, *, span: float = 0.6) -> None:
    """The runtime's tick stays ``tick`` over ``span`` seconds; at 20 ticks/s about a dozen ticks would have run."""
    start = time.monotonic()
    polls = 0
    while time.monotonic() - start < span or polls < 5:
        assert runtime_tick(client) == tick
        polls += 1
        time.sleep(0.05)


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
