"""Helpers the integration tests of ``soulfra up``'s HTTP API share (``test_api_*``): the default instance's routes,
the deadlines, the runtime's tick and a wait past it, and the events of a server-sent event stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from .support import wait_for

INSTANCE = "world-0"
BASE = f"/api/instances/{INSTANCE}"
PLATFORM_NAMES = {"runtime", "surface", "protocol", "mirror"}
WAIT_S = 10.0  # the deadline of every wait here
REQUEST_TIMEOUT_S = 10.0


def runtime_tick(client: httpx.Client) -> int:
    response = client.get(f"{BASE}/status")
    assert response.status_code == 200, response.text
    return int(response.json()["platforms"]["runtime"]["tick"])


def wait_past(client: httpx.Client, tick: int) -> int:
    """Wait until the runtime has run tick ``tick`` (its tick counter is beyond it)."""
    return wait_for(
        lambda: (t := runtime_tick(client)) > tick and t, timeout=WAIT_S, what=f"the runtime to pass tick {tick}"
    )


def echoes_once_heard(client: httpx.Client, agent: str, heard: dict[str, Any]) -> list[dict[str, Any]]:
    """The agent's echoes on the surface once they hold ``heard``: the surface follows the runtime's events, so it
    may be a moment behind the tick the runtime has passed."""

    def echoes() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = client.get(f"/api/agents/echo/{agent}").json()["echoes"]
        return found if heard in found else None

    return wait_for(
        echoes, timeout=WAIT_S, what=f"the surface to show {agent} hearing the whisper of tick {heard['tick']}"
    )


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
