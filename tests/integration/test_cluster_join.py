"""A node joining a running cluster: ``soulfra cluster local --nodes 2`` (two Ray nodes on loopback, its worlds in
PostgreSQL, its streams on a NATS server of the test's own), then a third node joined with ``soulfra cluster join``
(loopback, the cluster's own Ray token). The cluster gives it a host and the next worlds go to it first; a world it
hosts streams its events and shows its dashboard page through the head's API; the node leaves, its worlds run again
on the others; and the lease log shows that no world ever had two writers at once."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from soulfra.store import SqlStore
from soulfra.store.lease_log import RELEASED, TAKEN_OVER, overlap_line, overlaps

from .support import free_port, wait_for
from .topology import Topology, admin_token, ok, require_ray, start_cluster_local, stop_process

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.cluster,
    pytest.mark.serial,  # alone: a Ray cluster of three nodes would slow every test beside it, and they it
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.xdist_group("cluster"),
]

BEFORE = 4  # worlds made before the node joins (with the default world: more on each old node than the new one has)
AFTER = 2  # worlds made after: every one goes to the new node


@pytest.fixture(autouse=True)
def _ray_installed() -> None:
    require_ray()


@dataclass
class Cluster:
    topology: Topology
    client: httpx.Client
    url: str
    token: str
    address: str  # the Ray cluster's GCS address, which a joining node names


@pytest.fixture
def cluster(topology: Topology) -> Iterator[Cluster]:
    """``soulfra cluster local --nodes 2`` serving the API, its Ray cluster behind a token this test knows (which
    ``soulfra cluster join`` needs too); a client with an admin token."""
    topology.env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    port = free_port()
    start_cluster_local(topology, port, "--nodes", "2", "--hosts-per-node", "2", "--rate", "4")
    url = f"http://127.0.0.1:{port}"
    found = re.search(r"soulfra: cluster at (\S+) serving on", topology.log("cluster"))
    assert found is not None, topology.log("cluster")
    token = admin_token(topology)
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=60.0) as client:
        yield Cluster(topology, client, url, token, found[1])


@contextlib.contextmanager
def joined_node(cluster: Cluster) -> Iterator[subprocess.Popen[bytes]]:
    """A Ray node of its own process joined to the cluster (``soulfra cluster join``: its raylet and workers end with
    it); stopped by its PID afterwards if the test has not stopped it."""
    topology = cluster.topology
    log = (topology.where / "joined.log").open("wb")
    topology.files.append(log)
    proc = subprocess.Popen(
        [sys.executable, "-m", "soulfra", "cluster", "join", "--address", cluster.address],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=topology.env,
    )  # fmt: skip
    try:
        yield proc
    finally:
        stop_process(proc, timeout=30.0)


def rows(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in ok(client.get("/api/instances"))["instances"]}


def hosts(topology: Topology) -> set[str]:
    """The nodes the cluster has started a host on, as its log says."""
    return set(re.findall(r"host on node (\w+)", topology.log("cluster")))


def test_a_node_that_joins_gets_the_next_worlds_streams_them_and_no_world_has_two_writers(cluster: Cluster) -> None:
    topology, client = cluster.topology, cluster.client
    for number in range(BEFORE):
        ok(client.post("/api/instances", json={"id": f"b{number}", "seed": number}), 201)
    old = {row["node"] for row in rows(client).values()}
    assert len(old) == 2 and None not in old, rows(client)
    with joined_node(cluster) as node:
        wait_for(lambda: len(hosts(topology)) == 3 or node.poll() is not None, timeout=90.0,
                 what="a host on the node that joined")  # fmt: skip
        assert node.poll() is None, topology.log("joined")
        (new,) = hosts(topology) - old
        for number in range(AFTER):
            ok(client.post("/api/instances", json={"id": f"a{number}", "seed": 100 + number}), 201)
        placed = rows(client)
        assert {placed[f"a{n}"]["node"] for n in range(AFTER)} == {new}  # the new node first: it had the fewest
        streamed_and_shown(cluster, "a0")
        stop_process(node, timeout=30.0)  # the node leaves: its worlds run again on the others
        assert node.returncode == 0, topology.log("joined")
        wait_for(
            lambda: all(row["state"] == "running" and row["node"] in old
                        for i, row in rows(client).items() if i.startswith("a")),
            timeout=90.0, what=f"the worlds of node {new} running again on the others",
        )  # fmt: skip
    codes = topology.stop()
    assert codes["cluster"] == 0, topology.log("cluster")
    no_two_writers(topology, moved=[f"a{n}" for n in range(AFTER)])


def streamed_and_shown(cluster: Cluster, instance: str) -> None:
    """A whisper to a world of the new node comes back as a live event through the head's API; its dashboard page
    answers a signed-in browser session."""
    client = cluster.client
    with client.stream("GET", f"/api/instances/{instance}/events", timeout=30.0) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        for line in lines:  # ``retry:``, then the position it starts from: the stream is on from now
            if line.startswith("id:"):
                break
        ack = ok(client.post(f"/api/instances/{instance}/whispers", json={"text": "from the head"}), 202)
        heard = _event(lines, lambda item: item["kind"] == "whisper_heard")
    assert heard["tick"] >= ack["tick"]
    assert heard["data"]["text"] == "from the head"
    with httpx.Client(base_url=cluster.url, timeout=30.0) as browser:  # no bearer token: the session signs it in
        signed = browser.post("/login", data={"token": cluster.token})
        assert signed.status_code == 303, signed.text
        assert "soulfra_session" in browser.cookies
        page = browser.get(f"/worlds/{instance}")
        assert page.status_code == 200, page.text
        assert instance in page.text


def _event(lines: Iterator[str], wanted: Any) -> dict[str, Any]:
    """The first event of a server-sent event stream whose data ``wanted`` accepts."""
    deadline = time.monotonic() + 30.0
    for line in lines:
        if line.startswith("data:"):
            item: dict[str, Any] = json.loads(line.removeprefix("data:"))
            if wanted(item):
                return item
        assert time.monotonic() < deadline, "no such event within 30 s"
    pytest.fail("the stream ended before the event came")


def no_two_writers(topology: Topology, *, moved: list[str]) -> None:
    """Every world's lease log: never two epochs held at once; each epoch ended once the cluster stopped; the worlds
    of the node that left taken over by another process."""
    store = SqlStore.open(topology.db_url)
    try:
        ids = [record.id for record in store.instances.list_instances()]
        history = [entry for instance in ids for entry in store.leases.history(instance)]
    finally:
        store.close()
    assert [overlap_line(a, b) for a, b in overlaps(history)] == []
    assert {e.key for e in history} == set(ids)
    assert [e for e in history if e.ended is None] == []  # a clean stop lets every lease go
    for instance in moved:
        epochs = [e for e in history if e.key == instance]
        assert len(epochs) >= 2, epochs
        assert epochs[0].ended in (TAKEN_OVER, RELEASED)
        assert epochs[0].pid != epochs[-1].pid
    read = subprocess.run(
        [sys.executable, "-m", "soulfra", "lease", "log", "--db", topology.db_url, "--json"],
        capture_output=True, text=True, env=topology.env, check=False,
    )  # fmt: skip
    assert read.returncode == 0, read.stderr  # the command says so too
    assert json.loads(read.stdout)["overlaps"] == []
