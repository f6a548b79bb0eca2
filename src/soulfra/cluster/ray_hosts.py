"""Hosts as Ray actors: ``WorldHost``s on every live node of a Ray cluster (``per_node`` of them, pinned to it, so a
node's worlds can use as many of its cores: a host's Python runs on one), and new ones as nodes join.

Ray stays on loopback and behind a token here: ``ray_environment`` sets what Ray reads at import (no usage stats, no
cluster on another interface, token authentication with a token of this cluster's own) before ``import ray``, and
nothing here starts Ray's dashboard.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from typing import TYPE_CHECKING, Any

from soulfra.cluster.host import HostSettings, WorldHost
from soulfra.cluster.master import HostGoneError
from soulfra.cluster.placement import host_names, node_of
from soulfra.errors import BusError, ConfigError, SoulfraError
from soulfra.offload import off_loop

if TYPE_CHECKING:
    from soulfra.cluster.placement import Placement

__all__ = ["RayHost", "import_ray", "ray_environment", "start_hosts", "watch_nodes"]

log = logging.getLogger(__name__)

DEAD = frozenset({"ActorDiedError", "RayActorError", "NodeDiedError"})  # Ray's errors that say the actor is gone
NODES_EVERY_S = 2.0  # how often the cluster's nodes are listed, to give a node that joined its hosts


def ray_environment(token: str | None = None) -> str:
    """Set Ray's variables for a loopback, token-authenticated cluster (before Ray is imported); the token, which
    every process of the cluster needs (``RAY_AUTH_TOKEN``): the one given, the one set, or a new one."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_AUTH_MODE"] = "token"
    chosen = token or os.environ.get("RAY_AUTH_TOKEN") or secrets.token_hex(32)
    os.environ["RAY_AUTH_TOKEN"] = chosen
    return chosen


def import_ray() -> Any:
    """Ray, with its environment set first; ConfigError naming the extra when it is not installed."""
    ray_environment()
    try:
        import ray  # noqa: PLC0415 -- optional: only the cluster topology loads it
    except ImportError:
        raise ConfigError("the cluster topology needs Ray: pip install 'soulfra[ray]'") from None
    return ray


class RayHost:
    """A ``WorldHost`` actor as the cluster's puppet master reaches it (``soulfra.cluster.master.HostHandle``). A
    host that cannot be reached (its node died, or is dying) is a ``BusError``: the request can succeed once the
    cluster has given its worlds to another host."""

    def __init__(self, actor: Any, node: str) -> None:
        self.actor = actor
        self.node = node  # the host's name (``host_names``): its node's, numbered from a node's second host on

    async def _ask(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self.actor, method).remote(*args)
        except SoulfraError:
            raise
        except Exception as exc:  # Ray's own errors: the actor died, is unavailable, its node is gone
            raise BusError(f"the host on node {self.node} is unavailable ({type(exc).__name__})") from exc

    async def call(self, op: str, payload: bytes) -> bytes:
        result: bytes = await self._ask("call", op, payload)
        return result

    async def adopt(self, instance_ids: list[str]) -> list[str]:
        result: list[str] = await self._ask("adopt", instance_ids)
        return result

    async def release(self, instance_ids: list[str]) -> list[str]:
        result: list[str] = await self._ask("release", instance_ids)
        return result

    async def live(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._ask("live")
        return result

    async def ping(self) -> int:
        """The worlds it runs; ``HostGoneError`` when Ray says the actor or its node died."""
        try:
            result: int = await self._ask("ping")
        except BusError as exc:
            if type(exc.__cause__).__name__ in DEAD:
                raise HostGoneError(f"the host on node {self.node} died ({type(exc.__cause__).__name__})") from exc
            raise
        return result

    async def close(self) -> None:
        await self._ask("close")

    async def kill(self) -> None:
        """Ray ends the actor's process (at once, if its node still runs; nothing to do if it is gone)."""
        ray = import_ray()
        await off_loop(ray.kill, self.actor, no_restart=True)


def _alive_nodes(ray: Any) -> list[str]:
    return [n["NodeID"] for n in ray.nodes() if n.get("Alive")]


async def start_host(ray: Any, settings: HostSettings, node_id: str, name: str) -> tuple[RayHost, str]:
    """The host ``name``, an actor on the node ``node_id`` (pinned: it dies with that node, never moves), opened;
    with what it said as it opened."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: PLC0415

    actor_class = ray.remote(num_cpus=0, max_restarts=0, max_concurrency=10_000)(WorldHost)
    actor = actor_class.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote(
        settings, node_id[:12], name
    )
    said: str = await actor.open.remote()
    return RayHost(actor, name), said


async def start_hosts(ray: Any, settings: HostSettings, placement: Placement, per_node: int = 1) -> None:
    """``per_node`` hosts on every live node that has none yet (never again on one whose hosts died, nor one that
    runs some of them still: that node is lost, or keeps the hosts it has). A node's hosts are placed together,
    once all of them run, so that the worlds made next are dealt over all of them."""
    known = {node_of(name) for name in (*placement.hosts, *placement.dead)}
    new = [node_id for node_id in await off_loop(_alive_nodes, ray) if node_id[:12] not in known]
    await asyncio.gather(*(_start_node(ray, settings, placement, node_id, per_node) for node_id in new))  # at once


async def _start_node(ray: Any, settings: HostSettings, placement: Placement, node_id: str, per_node: int) -> None:
    started = await asyncio.gather(*(start_host(ray, settings, node_id, n) for n in host_names(node_id, per_node)))
    for host, said in started:
        placement.add(host)
        log.info("host on node %s (%s): %s", node_id[:12], host.node, said)


async def watch_nodes(ray: Any, settings: HostSettings, placement: Placement, per_node: int = 1) -> None:
    """Give each node that joins its hosts (new worlds then go to them first: they have the fewest)."""
    while True:
        await asyncio.sleep(NODES_EVERY_S)
        try:
            await start_hosts(ray, settings, placement, per_node)
        except Exception as exc:  # a node that died as it joined, say
            log.warning("starting a host on a new node failed (%s); trying again", exc)
