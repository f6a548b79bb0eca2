"""The cluster topology: worlds hosted in Ray actors across the nodes of a Ray cluster, PostgreSQL and NATS shared,
and this process the cluster's puppet master and an API gateway (``soulfra up --ray-address``, ``soulfra cluster
local``). Other gateways (``soulfra serve api``) reach the same puppet master over NATS, as they reach ``serve meta``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soulfra.bus.port import Bus, Subscription
from soulfra.cluster.host import HostSettings
from soulfra.cluster.master import ClusterPuppetMaster, adopted
from soulfra.cluster.placement import Placement
from soulfra.cluster.ray_hosts import import_ray, start_hosts, watch_nodes
from soulfra.meta.engine import PuppetMasterEngine
from soulfra.meta.service import RemotePuppetMaster, meta_subject
from soulfra.metrics import Metrics
from soulfra.offload import off_loop
from soulfra.platforms.base import decode
from soulfra.store import SqlStore
from soulfra.store.lease import PUPPET_MASTER_LEASE
from soulfra.world import WorldSpec

if TYPE_CHECKING:
    from soulfra.language import MindSettings

__all__ = ["ClusterOptions", "cluster_puppet"]

log = logging.getLogger(__name__)

# The puppet master's calls an API gateway sends on the bus (soulfra.meta.service.MetaServer.ops).
META_OPS = ("default", "list", "create", "describe", "delete", "god", "preview_merge", "flush", "start", "failures")


class ClusterOptions:
    """Where the cluster is and what its worlds are made of (what ``HostSettings`` and the default world need);
    ``minds``: where the hosts ask for their worlds' language agents (None: they fall back); ``hosts_per_node``:
    the host processes each node runs (a host's Python runs on one core)."""

    def __init__(
        self,
        *,
        ray_address: str,
        db_url: str,
        nats_url: str,
        nats_options: Any,
        home: Path,
        seed: int,
        spec: WorldSpec,
        agents: int,
        rate: float | None,
        cycle_every: int,
        minds: MindSettings | None = None,
        on_failover: Callable[[str, float], None] | None = None,
        hosts_per_node: int = 1,
    ) -> None:
        self.ray_address = ray_address
        self.db_url = db_url
        self.nats_url = nats_url
        self.nats_options = nats_options
        self.home = home
        self.seed = seed
        self.spec = spec
        self.agents = agents
        self.rate = rate
        self.cycle_every = cycle_every
        self.minds = minds
        self.on_failover = on_failover
        self.hosts_per_node = hosts_per_node


def _default(store: SqlStore, options: ClusterOptions) -> str:
    """The default world's id: the oldest root of the seed and world, or a new one; left for a host to run."""
    engine = PuppetMasterEngine(store, bus=None)  # type: ignore[arg-type]  # claims a record, runs nothing
    world = engine.claim_default(options.seed, options.spec, options.agents)
    world.close()
    store.leases.release(world.instance_id)
    return world.instance_id


def _runnable(store: SqlStore) -> list[str]:
    return [r.id for r in store.instances.list_instances() if r.status != "abandoned"]


def cluster_puppet(options: ClusterOptions) -> Callable[..., tuple[RemotePuppetMaster, Any]]:
    """The ``PuppetSource`` (soulfra.services) of a cluster: its puppet master, and while the API serves, Ray joined,
    its hosts on every node, every stored world placed by load, failover and joining nodes watched, and the puppet
    master's calls served on NATS for other gateways."""

    def source(
        bus: Bus, store: SqlStore, metrics: Metrics
    ) -> tuple[RemotePuppetMaster, Callable[[], AbstractAsyncContextManager[str]]]:
        placement = Placement()
        master = ClusterPuppetMaster(bus, store, placement, "world-0", metrics=metrics, on_failover=options.on_failover)

        @asynccontextmanager
        async def running() -> AsyncIterator[str]:
            await off_loop(store.leases.acquire, PUPPET_MASTER_LEASE)  # one puppet master per database
            master.default = await off_loop(_default, store, options)
            ray = import_ray()
            handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
            ray.init(address=options.ray_address, log_to_driver=False)  # in the loop's thread: Ray wants the main one
            for sig, handler in handlers.items():  # Ray's own would end the process at once, with no stop at all
                signal.signal(sig, handler)
            settings = HostSettings(
                db_url=options.db_url, nats_url=options.nats_url, nats_options=options.nats_options,
                home=options.home, default=master.default, rate=options.rate, cycle_every=options.cycle_every,
                minds=options.minds,
            )  # fmt: skip
            subs: list[Subscription] = []
            nodes: asyncio.Task[None] | None = None
            try:
                await start_hosts(ray, settings, placement, options.hosts_per_node)
                await _place_all(master, await off_loop(_runnable, store))
                master.watch()
                watching = watch_nodes(ray, settings, placement, options.hosts_per_node)
                nodes = asyncio.get_running_loop().create_task(watching)
                for op in META_OPS:
                    subs.append(await bus.serve(meta_subject(op), _forward(master, op)))
                log.info("cluster of %d node(s) runs %d world(s)", len(placement.hosts), len(placement.live_ids()))
                yield master.default
            finally:
                for sub in subs:
                    await sub.unsubscribe()
                if nodes is not None:
                    nodes.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await nodes
                await master.stop_watching()
                await _close_hosts(placement)
                await off_loop(ray.shutdown)

        return master, running

    return source


async def _place_all(master: ClusterPuppetMaster, ids: list[str]) -> None:
    """Every stored world given to the host with the fewest, in turn; each host starts its share at once."""
    shares = master.shares(ids)  # dealt as a failover deals
    started = await asyncio.gather(*(adopted(host, share, deadline_s=60.0) for host, share in shares))
    for (host, _), ids_started in zip(shares, started, strict=True):
        master.placement.place(host.node, ids_started)


async def _close_hosts(placement: Placement) -> None:
    for host in list(placement.hosts.values()):
        try:
            await asyncio.wait_for(host.close(), 30.0)  # type: ignore[attr-defined]
        except Exception as exc:
            log.warning("closing host %s: %s", host.node, exc)


def _forward(master: ClusterPuppetMaster, op: str) -> Callable[[bytes], Any]:
    async def respond(payload: bytes) -> bytes:
        return await master.send(op, decode(payload))

    return respond
