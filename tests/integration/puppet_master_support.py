"""Helpers the puppet master's integration tests share (``test_puppet_master_*``): reading what a CLI command printed,
and god-mode commands and reads over a server's HTTP API."""

from __future__ import annotations

import re
from typing import Any

import httpx

from .support import Result, wait_for

# -- the CLI -------------------------------------------------------------------------------------------------------


def group(pattern: str, text: str) -> str:
    """The first group of ``pattern`` matched against the whole of ``text``."""
    found = re.fullmatch(pattern, text)
    assert found is not None, (pattern, text)
    return found[1]


def ok_line(done: Result) -> str:
    """The one line a successful command printed."""
    assert done.returncode == 0, (done.args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    return lines[0]


# -- the API -------------------------------------------------------------------------------------------------------


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def god(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """POST /api/god; the command succeeded and its result names its type."""
    result = ok(api.post("/api/god", json=body))
    assert result["type"] == body["type"]
    assert result["ok"] is True
    return result


def create(api: httpx.Client, instance_id: str, seed: int, **extra: Any) -> dict[str, Any]:
    return ok(api.post("/api/instances", json={"id": instance_id, "seed": seed, **extra}), 201)


def show(api: httpx.Client, instance_id: str) -> dict[str, Any]:
    return ok(api.get(f"/api/instances/{instance_id}"))


def tick_of(api: httpx.Client, instance_id: str) -> int:
    return int(show(api, instance_id)["tick"])


def wait_tick(api: httpx.Client, instance_id: str, tick: int) -> int:
    """Wait until ``instance_id`` has reached ``tick``; returns the tick it is at."""
    return wait_for(lambda: (t := tick_of(api, instance_id)) >= tick and t, what=f"{instance_id} to reach tick {tick}")


def listed(api: httpx.Client) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in ok(api.get("/api/instances"))["instances"]}


def inputs(api: httpx.Client, instance_id: str) -> list[dict[str, Any]]:
    """The instance's whole input log, each input with its seq and tick."""
    rows: list[dict[str, Any]] = []
    while True:
        page = ok(api.get(f"/api/instances/{instance_id}/inputs", params={"after": len(rows) and rows[-1]["seq"]}))
        if not page["inputs"]:
            return rows
        rows.extend(page["inputs"])


def logged(api: httpx.Client, instance_id: str, **fields: Any) -> list[dict[str, Any]]:
    """The logged inputs of ``instance_id`` whose fields include ``fields``."""
    return [row["input"] for row in inputs(api, instance_id) if fields.items() <= row["input"].items()]


def marks(api: httpx.Client, instance_id: str) -> set[str]:
    return {item["command"] for item in logged(api, instance_id, type="mark")}


def agent(api: httpx.Client, instance_id: str, agent_id: str) -> dict[str, Any]:
    body = ok(api.get(f"/api/instances/{instance_id}/agents/{agent_id}"))
    assert body["agent"]["id"] == agent_id
    result: dict[str, Any] = body["agent"]
    return result


def heard(api: httpx.Client, instance_id: str, agent_id: str, text: str) -> bool:
    """Whether ``agent_id`` of ``instance_id`` has heard a whisper with ``text`` in it (its echoes say so)."""
    echoes = ok(api.get(f"/api/instances/{instance_id}/agents/echo", params={"limit": 1000}))["echoes"]
    return any(e["kind"] == "whisper_heard" and e["agent"] == agent_id and text in e["text"] for e in echoes)


def assert_ack(result: dict[str, Any], kind: str) -> dict[str, Any]:
    ack: dict[str, Any] = result["ack"]
    assert ack["type"] == kind
    assert isinstance(ack["seq"], int)
    assert isinstance(ack["tick"], int)
    return ack
