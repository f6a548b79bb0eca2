"""The public reflection paths of a real ``soulfra up``: every one answers for the default instance without a token
and for a second instance with ``?instance=`` and a token; the answers agree with the instance's own routes (loop
seals with the stored ``loop_sealed`` events, ``mirror/complete`` with the latest unified snapshot, the population
with the agents list); a token scoped to one instance meets 404 for the other, as it does on its own routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .support import Server, assert_problem, running_server, wait_for

PATHS = (
    "/api/agents/loop", "/api/ritual/log", "/api/thread/state", "/api/loop/witness", "/api/anomaly/echo",
    "/api/mirror/complete", "/api/mirror/snapshot/latest", "/api/system/health",
)  # fmt: skip
PHASES = {"listening", "reflecting", "responding", "evolving"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("reflection"), rate="200") as running:
        yield running


def _get(client: httpx.Client, url: str, status: int = 200) -> Any:
    reply = client.get(url)
    assert reply.status_code == status, (url, reply.text)
    return reply.json()


def _sealed(client: httpx.Client, query: str) -> dict[str, Any] | None:
    witness = _get(client, f"/api/loop/witness{query}")
    return witness if witness["sealed"] else None


def _stored_seals(client: httpx.Client, instance: str) -> dict[int, dict[str, Any]]:
    """The loop seals among the instance's ritual traces, as its own route serves them."""
    traces = _get(client, f"/api/instances/{instance}/ritual/traces?limit=512")["traces"]
    return {t["loop"]: t for t in traces if t["kind"] == "loop_sealed"}


def _check(client: httpx.Client, instance: str, query: str) -> None:
    """Every reflection path of ``instance`` (asked with ``query``) against the instance's own routes."""
    wait_for(lambda: _sealed(client, query), timeout=30.0, what=f"a loop of {instance} sealed")
    taken = client.post(f"/api/instances/{instance}/unified-snapshots", json={})
    assert taken.status_code == 201, taken.text
    answers = {path: _get(client, path + query) for path in PATHS}

    loop = answers["/api/agents/loop"]
    agents = _get(client, f"/api/instances/{instance}/agents?limit=1000")
    assert loop["population"] == agents["total"] == sum(loop["phases"].values())
    assert [a["id"] for a in loop["agents"]] == [a["id"] for a in agents["agents"]][:100]
    assert {a["phase"] for a in loop["agents"]} <= PHASES

    witness = answers["/api/loop/witness"]
    assert witness["instance"] == instance
    assert witness["current"]["phase"] in PHASES
    stored = _stored_seals(client, instance)
    for seal in witness["sealed"]:
        if seal["loop"] in stored:  # the traces route keeps the latest 256 traces
            assert (seal["digest"], seal["state_hash"]) == (stored[seal["loop"]]["digest"],
                                                             stored[seal["loop"]]["state_hash"])  # fmt: skip
    assert set(stored) & {s["loop"] for s in witness["sealed"]}, "no loop seal to compare"
    latest = _get(client, f"/api/instances/{instance}/unified-snapshots/latest")
    assert answers["/api/mirror/complete"] == latest
    assert answers["/api/mirror/snapshot/latest"] == latest
    assert latest["id"] == taken.json()["id"]
    assert _get(client, f"/api/mirror/snapshot/{latest['id']}{query}") == latest

    assert answers["/api/anomaly/echo"].keys() == {"tick", "anomalies"}
    own = _get(client, f"/api/instances/{instance}/mirror/anomalies")["anomalies"]
    assert own[: len(answers["/api/anomaly/echo"]["anomalies"])] == answers["/api/anomaly/echo"]["anomalies"]
    assert answers["/api/ritual/log"].keys() == {"tick", "in_flight", "timeline"}
    assert all(t["kind"].startswith("ritual_") for t in answers["/api/ritual/log"]["timeline"])
    threads = answers["/api/thread/state"]
    assert threads["open"] == len(threads["threads"])
    health = answers["/api/system/health"]
    assert (health["instance"], health["healthy"]) == (instance, True)
    assert sorted(health["platforms"]) == ["mirror", "protocol", "runtime", "surface"]


def test_every_reflection_path_of_the_default_instance_answers_anyone(server: Server) -> None:
    with server.client() as admin, server.client(anonymous=True) as anonymous:
        default = _get(admin, "/api/instances")["default"]
        wait_for(lambda: _sealed(anonymous, ""), timeout=30.0, what="a loop sealed")
        _check(admin, default, "")
        for path in PATHS:
            _get(anonymous, path)


def test_every_reflection_path_of_another_instance_with_a_token(server: Server) -> None:
    with server.client() as admin, server.client(anonymous=True) as anonymous:
        created = admin.post("/api/instances", json={"id": "second", "seed": 5, "agents": 2})
        assert created.status_code == 201, created.text
        _check(admin, "second", "?instance=second")
        assert _get(admin, "/api/agents/loop?instance=second")["population"] == 3 + 2
        for path in PATHS:
            assert_problem(anonymous.get(path + "?instance=second"), 401, "unauthenticated")
        assert_problem(admin.get("/api/agents/loop?instance=nowhere"), 404, "not_found")
        assert_problem(admin.get("/api/mirror/snapshot/424242?instance=second"), 404, "not_found")

        default = _get(admin, "/api/instances")["default"]
        made = admin.post("/api/tokens", json={"name": "default-only", "role": "viewer", "instances": [default]})
        assert made.status_code == 201, made.text
        scoped = {"authorization": f"Bearer {made.json()['token']}"}
        with httpx.Client(base_url=server.url, timeout=15.0, headers=scoped) as client:
            for path in PATHS:
                assert_problem(client.get(path + "?instance=second"), 404, "not_found")
            assert_problem(client.get("/api/instances/second/status"), 404, "not_found")  # as on its own routes
            _get(client, f"/api/agents/loop?instance={default}")
            _get(client, "/api/system/health")
