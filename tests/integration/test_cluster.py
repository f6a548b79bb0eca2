"""The cluster topology on a real local Ray cluster: ``soulfra cluster local --nodes 2`` (two Ray nodes on
loopback) with its worlds in PostgreSQL and its streams on a NATS server of the test's own. Fifty worlds are spread
over both nodes; the god commands work across them (a merge of worlds on two nodes has the hash the merge code gives
for the same parents); then one node's raylet is killed while whispers are sent, and every world it ran runs again
on the other, with every acknowledged whisper in its log and ``soulfra verify`` passing for every world."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from soulfra.durable import state_at
from soulfra.meta.lineage import common_ancestor
from soulfra.meta.merge import merge_states
from soulfra.store import SqlStore
from soulfra.store.lease_log import TAKEN_OVER, overlap_line, overlaps
from soulfra.world import state_hash

from .support import free_port, wait_for
from .topology import Topology, admin_token, ok

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.cluster,
    pytest.mark.serial,  # alone: a Ray cluster of two nodes would slow every test beside it, and they it
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.xdist_group("cluster"),
]


@pytest.fixture(autouse=True)
def _ray_installed() -> None:
    if importlib.util.find_spec("ray") is None:  # looked up, not imported: Ray loads only in the cluster's processes
        if os.environ.get("CI") == "true":
            pytest.fail("the cluster tests need Ray under CI=true: pip install 'soulfra[ray]'")
        pytest.skip("the cluster tests need Ray: pip install 'soulfra[ray]'")


WORLDS = 50


@pytest.fixture
def cluster(topology: Topology) -> Iterator[tuple[Topology, httpx.Client, dict[int, int]]]:
    """``soulfra cluster local --nodes 2`` serving the API; a client with an admin token; each node's raylet pid."""
    port = free_port()
    log = (topology.where / "cluster.log").open("wb")
    topology.files.append(log)
    topology.procs["cluster"] = subprocess.Popen(
        [sys.executable, "-m", "soulfra", "cluster", "local", "--nodes", "2", "--db", topology.db_url,
         "--nats", topology.nats_url, "--port", str(port), "--rate", "2", "--hosts-per-node", "2"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=topology.env,
    )  # fmt: skip
    topology.ready("cluster", f"http://127.0.0.1:{port}", timeout=240.0)  # Ray's nodes and a host on each
    raylets = {int(n): int(pid) for n, pid in re.findall(r"node (\d+) \w+ raylet pid (\d+)", topology.log("cluster"))}
    assert sorted(raylets) == [1, 2], topology.log("cluster")
    headers = {"authorization": f"Bearer {admin_token(topology)}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60.0) as client:
        yield topology, client, raylets


def rows(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in ok(client.get("/api/instances"))["instances"]}


def test_worlds_spread_over_two_nodes_survive_the_loss_of_one(
    cluster: tuple[Topology, httpx.Client, dict[int, int]],
) -> None:
    topology, client, raylets = cluster
    for number in range(WORLDS):
        ok(client.post("/api/instances", json={"id": f"w{number}", "seed": number}), 201)
    placed = rows(client)
    nodes = {row["node"] for row in placed.values()}
    assert len(nodes) == 2 and None not in nodes  # each node hosts some
    per_node = [sum(row["node"] == node for row in placed.values()) for node in nodes]
    assert min(per_node) >= WORLDS // 2 - 1  # placed by load
    assert hosts_and_their_worlds(client) == (4, 4)  # two hosts on each node, each running some

    god_commands_across_nodes(topology, client)
    lose_a_node(topology, client, raylets)


def hosts_and_their_worlds(client: httpx.Client) -> tuple[int, int]:
    """The live hosts, and how many of them run worlds, as the puppet master's /metrics says."""
    shown = client.get("/metrics").text
    (hosts,) = re.findall(r"^soulfra_cluster_hosts (\S+)$", shown, re.MULTILINE)
    worlds = re.findall(r'^soulfra_cluster_worlds\{node="[^"]+"\} (\S+)$', shown, re.MULTILINE)
    return int(float(hosts)), sum(float(count) > 0 for count in worlds)


def god_commands_across_nodes(topology: Topology, client: httpx.Client) -> None:
    """A fork whose forks spread out, a merge of worlds on two nodes, possession, an export imported."""
    fork = ok(client.post("/api/god/fork", json={"source": "w0", "forks": [{"id": "f1"}, {"id": "f2"}]}))
    ok(client.post("/api/god/freeze", json={"instances": ["f1", "f2"]}))
    before = rows(client)
    assert before["f1"]["node"] != before["f2"]["node"] or before["w0"]["node"] != before["f2"]["node"]
    merged = ok(client.post("/api/god/merge", json={"ours": "f1", "theirs": "f2", "id": "m", "start": False}))
    store = SqlStore.open(topology.db_url)
    try:
        base = common_ancestor(store, "f1", "f2")
        assert (base.instance, base.tick) == ("w0", fork["tick"])
        parents = ok(client.get("/api/instances/m"))["world"]["parent_ticks"]
        again = merge_states(
            state_at(store, "w0", fork["tick"]), state_at(store, "f1", parents["parent"]),
            state_at(store, "f2", parents["merge_parent"]),
        )  # fmt: skip
        assert state_hash(again.state) == merged["state_hash"]  # the same merge as one process computes
    finally:
        store.close()
    possess = {"instance": "w1", "agent": "arty"}
    ok(client.post("/api/god/possess", json={**possess, "operator": "tester"}))
    ok(client.post("/api/god/possess", json={**possess, "action": "release"}))
    package = client.get("/api/instances/w2/export")
    assert package.status_code == 200, package.text
    imported = ok(
        client.post("/api/import", params={"as_id": "w2-copy"}, content=package.content,
                    headers={"content-type": "application/vnd.soulfra.package+zip"}),
        201,
    )  # fmt: skip
    assert imported["imported"][0]["id"] == "w2-copy"


def lose_a_node(topology: Topology, client: httpx.Client, raylets: dict[int, int]) -> None:
    """Node 2's raylet killed while whispers are sent to its worlds: they run again on node 1, nothing lost."""
    lost = _node_of(topology, 2)  # not the head node, which holds the cluster's own state
    victims = sorted(i for i, row in rows(client).items() if row["node"] == lost)
    acknowledged: list[tuple[str, int]] = []
    for round_number in range(6):
        if round_number == 2:
            os.kill(raylets[2], signal.SIGKILL)
        for instance in victims[:10]:
            with contextlib.suppress(httpx.HTTPError):
                reply = client.post(f"/api/instances/{instance}/whispers", json={"text": f"r{round_number}"})
                if reply.status_code == 202:
                    acknowledged.append((instance, int(reply.json()["seq"])))
        time.sleep(0.5)
    wait_for(
        lambda: all(row["state"] in ("running", "frozen") and row["node"] not in (None, lost)  # frozen stay frozen
                    for i, row in rows(client).items() if i in victims),
        timeout=180.0, what=f"the worlds of node {lost} running again on the other",
    )  # fmt: skip
    assert hosts_and_their_worlds(client) == (2, 2)  # both hosts of the lost node are gone; the other two run all
    assert acknowledged
    store = SqlStore.open(topology.db_url)
    try:
        for instance, seq in acknowledged:  # every acknowledged whisper is in its world's log
            assert seq in {stored.seq for stored in store.inputs.read(instance)}, (instance, seq)
    finally:
        store.close()
    for instance in [*victims, "m", "w0"]:
        checked = subprocess.run(
            [sys.executable, "-m", "soulfra", "verify", "--db", topology.db_url, "--instance", instance],
            capture_output=True, text=True, env=topology.env, check=False,
        )  # fmt: skip
        assert checked.returncode == 0, (instance, checked.stdout, checked.stderr)
    codes = topology.stop()
    assert codes["cluster"] == 0, topology.log("cluster")
    store = SqlStore.open(topology.db_url)
    try:  # the lease log: no world of the lost node was ever held by two writers at once, and each was taken over
        history = {instance: store.leases.history(instance) for instance in victims}
    finally:
        store.close()
    assert [overlap_line(a, b) for a, b in overlaps(e for epochs in history.values() for e in epochs)] == []
    for instance, epochs in history.items():
        taken = [e for e in epochs if e.ended == TAKEN_OVER]
        assert taken, (instance, epochs)
        assert all(e.ended_at is not None for e in epochs), (instance, epochs)  # the stop let go of the last one


def _node_of(topology: Topology, number: int) -> str:
    found = re.search(rf"node {number} (\w+) raylet pid", topology.log("cluster"))
    assert found is not None
    return found[1]
