"""Where the cluster's worlds run: ``Placement``, the map of hosts (``HostHandle``) to the worlds each runs, and of
the worlds of dead hosts waiting for a new one; and how a host's name says its node (``host_names``, ``node_of``).
The cluster's puppet master (``soulfra.cluster.master``) keeps the placement; nothing else of a world is kept here
(its history and its lease are in the database)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from soulfra.errors import BusError

__all__ = ["HostHandle", "Placement", "host_names", "node_of"]

NTH = "#"  # between a node's name and the number of its second host on, in a host's name


def host_names(node_id: str, per_node: int) -> list[str]:
    """The names of the hosts of the node ``node_id``: its name (the first 12 characters of its id), then
    ``NAME#2``, ``NAME#3``...: what the cluster's puppet master keeps each host by."""
    node = node_id[:12]
    return [node, *(f"{node}{NTH}{number}" for number in range(2, per_node + 1))]


def node_of(host: str) -> str:
    """The node a host's name says it runs on."""
    return host.split(NTH, 1)[0]


class HostHandle(Protocol):
    """One host as the cluster's puppet master reaches it (a Ray actor, or an object in the same process)."""

    node: str

    async def call(self, op: str, payload: bytes) -> bytes: ...

    async def adopt(self, instance_ids: list[str]) -> list[str]: ...

    async def release(self, instance_ids: list[str]) -> list[str]: ...

    async def live(self) -> list[dict[str, Any]]: ...

    async def ping(self) -> int: ...

    async def kill(self) -> None:
        """End the host's process if it still runs (one found dead must not keep its worlds' leases)."""


@dataclass
class Placement:
    """Where each world runs: host node -> the ids of its worlds; the worlds of a dead host while they wait for a
    new one (``recovering``), with when their host died."""

    hosts: dict[str, HostHandle] = field(default_factory=dict)
    worlds: dict[str, set[str]] = field(default_factory=dict)
    recovering: dict[str, float] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)  # nodes whose host died: never given a host again
    answered: dict[str, float] = field(default_factory=dict)  # node -> when its host last answered a ping

    def add(self, host: HostHandle) -> None:
        self.hosts[host.node] = host
        self.worlds.setdefault(host.node, set())

    def host_of(self, instance_id: str) -> HostHandle | None:
        for node, ids in self.worlds.items():
            if instance_id in ids:
                return self.hosts[node]
        return None

    def least_loaded(self) -> HostHandle:
        if not self.hosts:
            raise BusError("no host of the cluster is alive")
        node = min(self.hosts, key=lambda n: (len(self.worlds[n]), n))
        return self.hosts[node]

    def any_host(self) -> HostHandle:
        return self.least_loaded()

    def place(self, node: str, ids: Iterable[str]) -> None:
        for instance_id in ids:
            for others in self.worlds.values():
                others.discard(instance_id)
            self.worlds[node].add(instance_id)
            self.recovering.pop(instance_id, None)

    def remove(self, node: str) -> set[str]:
        """Forget a dead host; its worlds are recovering, since its last answer (or now, if it never answered)."""
        self.hosts.pop(node, None)
        self.dead.add(node)
        orphans = self.worlds.pop(node, set())
        since = self.answered.pop(node, time.monotonic())
        for instance_id in orphans:
            self.recovering[instance_id] = since
        return orphans

    def counts(self) -> dict[str, int]:
        """How many worlds each live host runs, by node."""
        return {node: len(self.worlds.get(node, ())) for node in self.hosts}

    def live_ids(self) -> set[str]:
        return set().union(*self.worlds.values()) if self.worlds else set()
