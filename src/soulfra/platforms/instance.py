"""FourPlatformInstance: one world with its four platforms on one bus, started, paused and inspected as a unit.

Used by the embedded topology (all four in one process); in the services topology each platform runs alone
(``soulfra serve``) and the bridge reaches them the same way.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from soulfra.bus.port import Bus
from soulfra.durable import DurabilitySettings, DurableWorld
from soulfra.errors import ConflictError, NotFoundError, PlatformError
from soulfra.offload import off_loop
from soulfra.platforms.bridge import CrossPlatformBridge
from soulfra.platforms.mirror import MirrorPlatform
from soulfra.platforms.protocol import ProtocolPlatform
from soulfra.platforms.runtime import RuntimePlatform
from soulfra.platforms.surface import SurfacePlatform
from soulfra.security.permissions import RuleSet
from soulfra.store.ports import Store
from soulfra.world import DEFAULT_WORLD, World, WorldSpec

__all__ = ["FourPlatformInstance", "InstanceSettings", "Retention"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Retention:
    """How much recent history the surface and the mirror keep in memory per instance (the store keeps it all):
    what one instance costs in memory once these fill, so what bounds how many one process can run."""

    stream: int = 512  # live-stream entries a reader can resume from (Last-Event-ID)
    history: int = 64  # vibe weather readings
    traces: int = 128  # ritual traces
    recent: int = 128  # recent agent echoes
    timeline: int = 128  # the mirror's ritual timeline
    seeds: int = 16  # the mirror's last loop seeds


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceSettings:
    seed: int = 0
    spec: WorldSpec = DEFAULT_WORLD
    agents: int = 0
    instance_id: str | None = None  # None: continue the instance of this seed and world, or create it
    rate: float | None = 2.0  # ticks per second; None runs as fast as the world goes
    durability: DurabilitySettings = field(default_factory=DurabilitySettings)
    rules: RuleSet = field(default_factory=RuleSet)
    cycle_every: int = 0  # ticks between scheduled unified snapshots; 0 turns the cycle off
    timeout: float = 5.0
    retention: Retention = field(default_factory=Retention)


class FourPlatformInstance:
    def __init__(self, store: Store, bus: Bus, settings: InstanceSettings | None = None) -> None:
        self.store = store
        self.bus = bus
        self.settings = settings or InstanceSettings()
        self.world: DurableWorld | None = None
        self.runtime: RuntimePlatform | None = None
        self.surface: SurfacePlatform | None = None
        self.protocol: ProtocolPlatform | None = None
        self.mirror: MirrorPlatform | None = None
        self.bridge: CrossPlatformBridge | None = None

    @property
    def instance_id(self) -> str:
        return self._need_world().instance_id

    def _need_world(self) -> DurableWorld:
        if self.world is None:
            raise PlatformError("the instance is not initialized; call initialize() first")
        return self.world

    async def initialize(self, world: DurableWorld | None = None) -> None:
        """Open (or create) the world, or take the one given, and start the four platforms on the bus; no tick
        runs yet."""
        if self.world is not None:
            raise ConflictError(f"instance {self.world.instance_id} is already initialized")
        s = self.settings
        if world is None:
            world = await off_loop(self._open_world)
        self.world = world
        self.runtime = RuntimePlatform(world, self.bus, rate=s.rate)
        self.protocol = ProtocolPlatform(world.instance_id, self.bus, self.store, rules=s.rules)
        keep = s.retention
        self.surface = SurfacePlatform(
            world.instance_id, self.bus, history=keep.history, traces=keep.traces, stream=keep.stream,
            recent=keep.recent,
        )  # fmt: skip
        self.mirror = MirrorPlatform(
            world.instance_id, self.bus, self.store, cycle_every=s.cycle_every, timeline=keep.timeline, seeds=keep.seeds
        )
        for platform in (self.runtime, self.protocol, self.surface, self.mirror):
            await platform.start()
        self.bridge = CrossPlatformBridge(self.bus, world.instance_id, timeout=s.timeout)

    def _open_world(self) -> DurableWorld:
        s = self.settings
        if s.instance_id is None:
            return DurableWorld.open_or_create(self.store, s.seed, s.spec, agents=s.agents, settings=s.durability)
        try:
            return DurableWorld.open(self.store, s.instance_id, settings=s.durability)
        except NotFoundError:
            return DurableWorld.create(
                self.store, s.seed, s.spec, agents=s.agents, instance_id=s.instance_id, settings=s.durability
            )

    def start_autonomous_operations(self, *, ticks: int | None = None) -> asyncio.Task[None]:
        """Start ticking: the agents act on their own from here on."""
        if self.runtime is None:
            raise PlatformError("the instance is not initialized; call initialize() first")
        return self.runtime.launch(ticks=ticks)

    async def pause(self) -> dict[str, Any]:
        return await self._need_bridge().pause()

    async def resume(self) -> dict[str, Any]:
        return await self._need_bridge().resume()

    async def get_agent(self, agent_id: str) -> dict[str, Any]:
        reply = await self._need_bridge().fetch_from_runtime("agent", {"agent": agent_id})
        return dict(reply["agent"])

    async def status(self) -> dict[str, Any]:
        world = self._need_world()
        platforms = await self._need_bridge().cross_platform_status()
        return {"instance": world.instance_id, "seed": world.record.seed, "tick": world.tick, "platforms": platforms}

    async def restore_from_snapshot(self, snapshot_id: int) -> dict[str, Any]:
        """Rebuild the live world from a stored snapshot of this instance plus the stored inputs since, up to the
        durable head, and check it against the live state hash. The runtime must be paused. Going back in time,
        which keeps the abandoned branch, is the puppet master's TIMELINE_REVERT."""
        world = self._need_world()
        runtime = self.runtime
        if runtime is None or not (runtime.paused or runtime.halted):
            raise PlatformError("pause the instance before restoring it from a snapshot")
        # in the runtime's lane: no write of the world, and no other swap of its state, comes in between
        from_tick, head, before, after = await runtime.lane.run(_restore, self.store, world, snapshot_id)
        return {"snapshot": snapshot_id, "from_tick": from_tick, "tick": head, "state_hash": after,
                "matches_live": after == before}  # fmt: skip

    async def close(self) -> None:
        """Stop ticking, stop the platforms and flush the world; every step runs even if one before it failed."""
        try:
            for platform in (self.mirror, self.surface, self.protocol):
                if platform is not None:
                    await platform.stop()
        finally:
            try:
                if self.runtime is not None:
                    await self.runtime.shutdown()
            finally:
                if self.world is not None:
                    await off_loop(self.world.close)

    def _need_bridge(self) -> CrossPlatformBridge:
        if self.bridge is None:
            raise PlatformError("the instance is not initialized; call initialize() first")
        return self.bridge


def _restore(store: Store, world: DurableWorld, snapshot_id: int) -> tuple[int, int, str, str]:
    """``restore_from_snapshot``'s work, off the loop: (the snapshot's tick, the head, the hash before, after)."""
    info, state = store.snapshots.load(snapshot_id)
    if info.instance_id != world.instance_id:
        raise NotFoundError(f"snapshot {snapshot_id} belongs to {info.instance_id}, not {world.instance_id}")
    world.flush()
    head = world.tick
    if info.tick > head:
        raise ConflictError(f"snapshot {snapshot_id} is at tick {info.tick}, past the head {head}")
    before = world.world.state_hash()
    rebuilt = World(state)
    stored = store.inputs.read(world.instance_id, from_tick=info.tick, to_tick=head)
    rebuilt.run_to(head, (s.input for s in stored))
    world.world = rebuilt
    return info.tick, head, before, rebuilt.state_hash()
