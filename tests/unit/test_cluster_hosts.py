"""Several hosts on a node: their names (the node's, then ``#2``, ``#3``...), the hosts started on the nodes that
have none yet (never again on a node that runs some, or whose hosts died), and how many a node runs by default."""

from __future__ import annotations

import os
from typing import Any

import pytest

from soulfra.cluster import ray_hosts
from soulfra.cluster.host import HostSettings
from soulfra.cluster.placement import Placement, host_names, node_of
from soulfra.cluster.ray_hosts import start_hosts
from soulfra.settings import MAX_AUTO_HOSTS, ClusterSettings

NODE_A = "aaaaaaaaaaaa0000000000000000"
NODE_B = "bbbbbbbbbbbb1111111111111111"
NODE_C = "cccccccccccc2222222222222222"


class Named:
    def __init__(self, name: str) -> None:
        self.node = name


class FakeRay:
    def __init__(self, alive: list[str]) -> None:
        self.alive = alive

    def nodes(self) -> list[dict[str, Any]]:
        return [{"NodeID": node_id, "Alive": True} for node_id in self.alive] + [{"NodeID": "dead", "Alive": False}]


def test_a_nodes_hosts_are_named_after_it_and_numbered_from_the_second() -> None:
    assert host_names(NODE_A, 1) == ["aaaaaaaaaaaa"]
    names = host_names(NODE_A, 3)
    assert names == ["aaaaaaaaaaaa", "aaaaaaaaaaaa#2", "aaaaaaaaaaaa#3"]
    assert {node_of(name) for name in names} == {"aaaaaaaaaaaa"}


@pytest.mark.anyio
async def test_hosts_start_on_each_node_that_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[tuple[str, str]] = []

    async def start_host(ray: Any, settings: HostSettings, node_id: str, name: str) -> tuple[Named, str]:
        started.append((node_id, name))
        return Named(name), "opened"

    monkeypatch.setattr(ray_hosts, "start_host", start_host)
    placement = Placement()
    settings = HostSettings(db_url="postgresql://", nats_url="nats://", home=None, default="w")  # type: ignore[arg-type]
    await start_hosts(FakeRay([NODE_A, NODE_B]), settings, placement, per_node=2)
    assert sorted(placement.hosts) == ["aaaaaaaaaaaa", "aaaaaaaaaaaa#2", "bbbbbbbbbbbb", "bbbbbbbbbbbb#2"]
    assert placement.counts() == dict.fromkeys(placement.hosts, 0)
    # node A lost one host (the other runs on), node B lost both: neither gets a host again; node C joins
    placement.remove("aaaaaaaaaaaa#2")
    placement.remove("bbbbbbbbbbbb")
    placement.remove("bbbbbbbbbbbb#2")
    started.clear()
    await start_hosts(FakeRay([NODE_A, NODE_B, NODE_C]), settings, placement, per_node=2)
    assert started == [(NODE_C, "cccccccccccc"), (NODE_C, "cccccccccccc#2")]
    assert sorted(placement.hosts) == ["aaaaaaaaaaaa", "cccccccccccc", "cccccccccccc#2"]


def test_a_node_runs_a_host_per_core_of_this_machine_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOULFRA_HOSTS_PER_NODE", raising=False)
    assert ClusterSettings.load({}).hosts_on_each_node() == min(os.cpu_count() or 1, MAX_AUTO_HOSTS)
    assert ClusterSettings.load({"hosts_per_node": 3}).hosts_on_each_node() == 3
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert ClusterSettings.load({}).hosts_on_each_node() == MAX_AUTO_HOSTS
