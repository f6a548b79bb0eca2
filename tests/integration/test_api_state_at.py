"""``GET /api/instances/{id}/state?tick=T`` against a real ``soulfra up``: the state rebuilt at a tick has the hash
the history recorded there (a snapshot's, a fork's genesis) and the CLI's ``soulfra state --tick`` prints; a tick
outside the instance's own history is a 404 with the API's error shape; a viewer may read it, nobody anonymous."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .support import Server, running_server, soulfra, wait_for

pytestmark = [pytest.mark.xdist_group("test_api_state_at"), pytest.mark.timeout(120)]

DEFAULT = "world-0"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("state-at"), rate="50", extra=["--agents", "40"]) as running:
        yield running


def head(client: httpx.Client, instance: str) -> int:
    return int(client.get(f"/api/instances/{instance}").json()["head_tick"])


def state(client: httpx.Client, instance: str, tick: int | None = None) -> dict[str, Any]:
    reply = client.get(f"/api/instances/{instance}/state", params={} if tick is None else {"tick": tick})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def test_the_state_at_a_snapshot_s_tick_has_the_snapshot_s_hash(server: Server) -> None:
    with server.client() as client:
        wait_for(lambda: head(client, DEFAULT) >= 45, what="a few durable snapshots")
        snapshots = client.get(f"/api/instances/{DEFAULT}/snapshots").json()["snapshots"]
        for snapshot in snapshots[:3]:
            rebuilt = state(client, DEFAULT, snapshot["tick"])
            assert rebuilt["tick"] == snapshot["tick"]
            assert rebuilt["state_hash"] == snapshot["state_hash"]
            assert rebuilt["snapshot_tick"] == snapshot["tick"]
            assert rebuilt["replayed_ticks"] == 0
        between = state(client, DEFAULT, snapshots[1]["tick"] + 7)  # a snapshot plus seven ticks of replay
    assert between["snapshot_tick"] == snapshots[1]["tick"]
    assert between["replayed_ticks"] == 7
    assert len(between["agents"]["ids"]) == len(between["agents"]["energy"]) == 43  # the three named and the extras
    assert {"arty", "cal-riven", "agent-zero"} <= set(between["agents"]["ids"])


def test_the_api_and_the_cli_rebuild_the_same_state(server: Server) -> None:
    with server.client() as client:
        wait_for(lambda: head(client, DEFAULT) >= 30, what="thirty durable ticks")
        api = state(client, DEFAULT, 23)
    result = soulfra("state", "--db", server.db_url, "--instance", DEFAULT, "--tick", "23", "--json")
    assert result.returncode == 0, result.stderr
    cli = json.loads(result.stdout)
    assert (api["tick"], api["state_hash"], api["loop"]) == (cli["tick"], cli["state_hash"], cli["loop"])
    assert api["mood"] == cli["mood"]


def test_without_a_tick_it_is_the_head_and_a_tick_past_it_is_a_404(server: Server) -> None:
    with server.client() as client:
        latest = state(client, DEFAULT)
        assert latest["tick"] == latest["head_tick"]
        beyond = client.get(f"/api/instances/{DEFAULT}/state", params={"tick": 10**9})
        unknown = client.get("/api/instances/no-such-world/state", params={"tick": 0})
    assert beyond.status_code == 404
    assert beyond.json()["code"] == "not_found"
    assert "no tick 1000000000" in beyond.json()["detail"]
    assert unknown.status_code == 404


def test_a_fork_holds_ticks_from_its_fork_tick_and_starts_with_its_genesis_hash(server: Server) -> None:
    with server.client() as client:
        made = client.post("/api/god/fork", json={"source": DEFAULT, "forks": [{"id": "state-fork"}], "start": False})
        assert made.status_code == 200, made.text
        (fork,) = made.json()["forks"]
        at_fork = state(client, "state-fork", fork["tick"])
        before = client.get("/api/instances/state-fork/state", params={"tick": fork["tick"] - 1})
        parent = state(client, DEFAULT, fork["tick"])
    assert at_fork["state_hash"] == fork["state_hash"] == parent["state_hash"]
    assert at_fork["start_tick"] == fork["tick"]
    assert before.status_code == 404
    assert f"holds ticks {fork['tick']} to" in before.json()["detail"]


def test_a_viewer_may_read_it_and_nobody_anonymous(server: Server) -> None:
    with server.client() as client:
        wait_for(lambda: head(client, DEFAULT) >= 1, what="a first durable tick")
        made = client.post("/api/tokens", json={"name": "state-viewer", "role": "viewer"})
        assert made.status_code == 201, made.text
        viewer = made.json()["token"]
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {viewer}"}) as client:
        seen = client.get(f"/api/instances/{DEFAULT}/state", params={"tick": 1})
        assert seen.status_code == 200, seen.text
    with server.client(anonymous=True) as client:
        assert client.get(f"/api/instances/{DEFAULT}/state", params={"tick": 1}).status_code == 401
