"""``WorldHost``: worlds of one cluster node, in one Ray actor (a node runs several, to use several cores).

A host is a puppet master of its own (``PuppetMasterEngine``) over the shared PostgreSQL database and NATS, that
starts only the worlds the cluster gives it (``adopt``) and lets them go when asked (``release``). Each world's four
platforms serve on NATS (through ``HostBus``), so an API gateway reaches them wherever they run. The cluster's
puppet master (``soulfra.cluster.master``) hands a host the API's calls as they would come over the bus (``call``);
the reply is the bus's envelope, so a refusal arrives as the same typed error. The writer lease of each world (a
PostgreSQL session lock) fences it: a world runs on one host at a time, and the lease of a host whose node died goes
with its database connections.

This module does not import Ray: the cluster wraps the class as an actor where Ray is loaded.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soulfra.bus import InMemoryBus, NatsOptions, connect
from soulfra.bus.port import encode_error, encode_ok
from soulfra.cluster.host_bus import HostBus
from soulfra.errors import SoulfraError
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.meta.keys import KeyRing
from soulfra.meta.service import LocalPuppetMaster, MetaServer
from soulfra.metrics import Metrics
from soulfra.offload import off_loop
from soulfra.platforms.instance import InstanceSettings
from soulfra.security.audit import AuditRecorder
from soulfra.store import SqlStore

if TYPE_CHECKING:
    from soulfra.language import MindSettings

__all__ = ["HostSettings", "WorldHost"]

log = logging.getLogger(__name__)

FENCE_EVERY_S = 0.1  # how often a host checks that its node's raylet still runs (a getppid: costs nothing)
# Allocations between two young collections of the garbage collector in a host process (Python's default: 700). A
# host's hundreds of worlds keep making objects that live (their buffers fill over their first ticks), and at the
# default its collections took about a tenth of its CPU: 1.9 s in 30 s with 500 ten-agent worlds, about 0.8 s at this.
GC_YOUNG = 10_000
ADOPT_WIDTH = 16  # worlds a host opens at once when it takes worlds over (their database reads and NATS round trips
# overlap: about twice as fast as one at a time on two cores; more buys nothing there)


class HostSettings:
    """What every host of a cluster is given: the database, NATS and how worlds tick (plain values: they travel to
    the node pickled)."""

    def __init__(
        self,
        *,
        db_url: str,
        nats_url: str,
        nats_options: NatsOptions | None = None,
        home: Path,
        default: str,
        rate: float | None = 2.0,
        cycle_every: int = 0,
        minds: MindSettings | None = None,
    ) -> None:
        self.db_url = db_url
        self.nats_url = nats_url
        self.nats_options = nats_options
        self.home = home
        self.default = default
        self.rate = rate
        self.cycle_every = cycle_every
        self.minds = minds  # where the worlds' language agents are asked (None: they fall back)


class WorldHost:
    """Worlds of one node (see the module's docstring). ``node`` names the node, for the rows it reports; ``name``
    the host (a node may run several), for its logs: the node's name by default."""

    def __init__(self, settings: HostSettings, node: str, name: str | None = None) -> None:
        self.settings = settings
        self.node = node
        self.name = name or node
        self.bus: HostBus | None = None
        self.store: SqlStore | None = None
        self.engine: PuppetMasterEngine | None = None
        self.server: MetaServer | None = None
        self._fence: asyncio.Task[None] | None = None

    async def open(self) -> str:
        """Connect to NATS and the database; the node's name and this process's pid."""
        collect_less_often()
        s = self.settings
        self.bus = HostBus(
            await connect(s.nats_url, s.nats_options), InMemoryBus()
        )  # its worlds' own traffic stays here
        self.store = await off_loop(SqlStore.open, s.db_url)
        recorder = AuditRecorder(self.store, signer=KeyRing(s.home).signer())
        instance = InstanceSettings(rate=s.rate, cycle_every=s.cycle_every, metrics=Metrics(), minds=s.minds)
        self.engine = PuppetMasterEngine(self.store, self.bus, EngineSettings(instance=instance), recorder=recorder)
        self.server = MetaServer(LocalPuppetMaster(self.engine, s.default), self.bus)
        self._fence = asyncio.get_running_loop().create_task(_fenced(os.getppid(), self.name))
        return f"{self.name} on node {self.node}, pid {os.getpid()}"

    def _engine(self) -> PuppetMasterEngine:
        if self.engine is None:
            raise SoulfraError("this host is not open")
        return self.engine

    async def call(self, op: str, payload: bytes) -> bytes:
        """One of the puppet master's calls, as the bus brings it; the bus's reply envelope (a refusal included)."""
        if self.server is None:
            return encode_error(SoulfraError("this host is not open"))
        try:
            return encode_ok(await self.server.handle(op, payload))
        except SoulfraError as exc:
            return encode_error(exc)
        except Exception as exc:
            log.exception("%s on host %s failed", op, self.name)
            return encode_error(SoulfraError(f"{op} failed on host {self.name}: {type(exc).__name__}: {exc}"))

    async def adopt(self, instance_ids: Collection[str]) -> list[str]:
        """Start these stored worlds here (each from its last committed tick); the ids now running here. One whose
        lease another process still holds is left, and the cluster asks again."""
        engine = self._engine()
        await engine.start(set(instance_ids), width=ADOPT_WIDTH)
        return [i for i in instance_ids if i in engine.live]

    async def release(self, instance_ids: Collection[str]) -> list[str]:
        """Stop running these worlds here and let go of their leases; the ids that were running here."""
        return await self._engine().hand_over(instance_ids)

    async def live(self) -> list[dict[str, Any]]:
        """The row of each world running here, with the node's name."""
        rows = await off_loop(self._engine().live_summaries)
        for row in rows:
            row["node"] = self.node
        return rows

    async def ping(self) -> int:
        """How many worlds run here (an answer at all says the host is alive)."""
        return len(self._engine().live)

    async def close(self) -> None:
        if self._fence is not None:
            self._fence.cancel()
        try:
            if self.engine is not None:
                await self.engine.close()
        finally:
            try:
                if self.bus is not None:
                    await self.bus.close()
            finally:
                if self.store is not None:
                    await off_loop(self.store.close)


def collect_less_often() -> None:
    """Young collections every ``GC_YOUNG`` allocations at least (a process's own higher setting is kept), the
    older generations' thresholds as they are."""
    young, middle, oldest = gc.get_threshold()
    gc.set_threshold(max(young, GC_YOUNG), middle, oldest)


async def _fenced(parent: int, node: str) -> None:
    """End this process at once when its node's raylet (its parent) is gone or going: the node is lost to the
    cluster, which gives its worlds to other hosts, and they must not run here too. The worlds' leases go with the
    process's database sessions; what was acknowledged is stored, and the new hosts replay the ticks after the last
    commit."""
    while True:
        await asyncio.sleep(FENCE_EVERY_S)
        if os.getppid() != parent or ended(parent):
            log.error("host %s lost its node (raylet %d gone): stopping at once", node, parent)
            os._exit(70)


def ended(pid: int) -> bool:
    """Whether process ``pid`` has ended or is ending: it is gone from ``/proc``, or its main thread has exited (a
    zombie). A raylet whose main thread has exited while its other threads wind down is listed ``<defunct>``, and
    its children stay under it, so a changed parent alone does not show it. False where there is no ``/proc``."""
    if not _HAS_PROC:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    # the state follows the command name, in parentheses, which may itself hold parentheses or spaces
    name_ends = stat.rindex(b")")
    return stat[name_ends + 2 : name_ends + 3] == b"Z"


_HAS_PROC = Path("/proc/self").is_dir()
