"""FourPlatformInstance: one world with its four platforms on one bus, started, paused and inspected as a unit.

Used by the embedded topology (all four in one process); in the services topology each platform runs alone
(``soulfra serve``) and the bridge reaches them the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from soulfra.bus.port import Bus
from soulfra.durable import DurabilitySettings, DurableWorld
from soulfra.errors import ConflictError, NotFoundError, PlatformError
from soulfra.language import MindSettings, open_asker
from soulfra.metrics import Metrics
from soulfra.offload import off_loop
from soulfra.platforms.bridge import CrossPlatformBridge
from soulfra.platforms.mirror import MirrorPlatform
from soulfra.platforms.protocol import ProtocolPlatform
from soulfra.platforms.replies import InstanceStatus, Restored, RunState
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
    # The system's metrics, which every instance's runtime counts into; None: a registry of the runtime's own.
    metrics: Metrics | None = field(default=None, compare=False)
    minds: MindSettings | None = None  # the endpoint the language agents are asked at; None: they fall back


class FourPlatformInstance:
    """One world and its four started platforms. Made only by ``open``, which hands it out whole: every part is
    there and serving from the first moment a caller sees it, so nothing needs checking before use."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        settings: InstanceSettings,
        *,
        world: DurableWorld,
        runtime: RuntimePlatform,
        protocol: ProtocolPlatform,
        surface: SurfacePlatform,
        mirror: MirrorPlatform,
        bridge: CrossPlatformBridge,
    ) -> None:
        self.store = store
        self.bus = bus
        self.settings = settings
        self.world = world
        self.runtime = runtime
        self.protocol = protocol
        self.surface = surface
        self.mirror = mirror
        self.bridge = bridge

    @classmethod
    async def open(
        cls, store: Store, bus: Bus, settings: InstanceSettings | None = None, *, world: DurableWorld | None = None
    ) -> FourPlatformInstance:
        """Open (or create) the world the settings name, or take over the one given, and start the four platforms on
        the bus; no tick runs yet (``start_autonomous_operations``).

        If a platform fails to start, the platforms are stopped (those started, and the one that failed half-way)
        and the world's writer lease is let go before the error is raised, since no one runs the world: the lease of
        a world given, or the one this call took (not one this store held before, which its holder still runs)."""
        s = settings or InstanceSettings()
        took_lease = True
        if world is None:
            held_before = set(store.leases.held())
            world = await off_loop(_open_world, store, s)
            took_lease = world.instance_id not in held_before
        async with contextlib.AsyncExitStack() as undo:  # on a failure: each platform stopped, then the lease
            if took_lease:
                undo.push_async_callback(off_loop, store.leases.release, world.instance_id)
            asker = None if s.minds is None else open_asker(s.minds, s.metrics)
            runtime = RuntimePlatform(world, bus, rate=s.rate, metrics=s.metrics, asker=asker)
            protocol = ProtocolPlatform(world.instance_id, bus, store, rules=s.rules)
            keep = s.retention
            surface = SurfacePlatform(
                world.instance_id, bus, history=keep.history, traces=keep.traces, stream=keep.stream,
                recent=keep.recent,
            )  # fmt: skip
            mirror = MirrorPlatform(
                world.instance_id, bus, store, cycle_every=s.cycle_every, timeline=keep.timeline, seeds=keep.seeds
            )
            undo.push_async_callback(runtime.stop)  # before it starts: one that fails half-way may be serving
            await runtime.start()  # first: it refuses to run a world another runtime runs, and the others ask it
            for platform in (protocol, surface, mirror):
                undo.push_async_callback(platform.stop)
            # the other three at once (each waits on its bus's round trips); every one has started or failed before
            # the first failure is raised, so that the undo stops none that is still starting
            started = await asyncio.gather(*(p.start() for p in (protocol, surface, mirror)), return_exceptions=True)
            for outcome in started:
                if isinstance(outcome, BaseException):
                    raise outcome
            undo.pop_all()  # all four run: the instance owns them from here on
        bridge = CrossPlatformBridge(bus, world.instance_id, timeout=s.timeout, metrics=s.metrics)
        return cls(
            store, bus, s, world=world, runtime=runtime, protocol=protocol, surface=surface, mirror=mirror,
            bridge=bridge,
        )  # fmt: skip

    @property
    def instance_id(self) -> str:
        return self.world.instance_id

    def start_autonomous_operations(self, *, ticks: int | None = None) -> asyncio.Task[None]:
        """Start ticking: the agents act on their own from here on."""
        return self.runtime.launch(ticks=ticks)

    async def pause(self) -> RunState:
        return await self.bridge.pause()

    async def resume(self) -> RunState:
        return await self.bridge.resume()

    async def get_agent(self, agent_id: str) -> dict[str, Any]:
        reply = await self.bridge.fetch_from_runtime("agent", {"agent": agent_id})
        return dict(reply["agent"])

    async def status(self) -> InstanceStatus:
        world = self.world
        platforms = await self.bridge.cross_platform_status()
        return InstanceStatus(instance=world.instance_id, seed=world.record.seed, tick=world.tick, platforms=platforms)

    async def restore_from_snapshot(self, snapshot_id: int) -> Restored:
        """Rebuild the live world from a stored snapshot of this instance plus the stored inputs since, up to the
        durable head, and check it against the live state hash. The runtime must be paused. Going back in time,
        which keeps the abandoned branch, is the puppet master's TIMELINE_REVERT."""
        world = self.world
        if not (self.runtime.paused or self.runtime.halted):
            raise PlatformError("pause the instance before restoring it from a snapshot")
        # in the runtime's lane: no write of the world, and no other swap of its state, comes in between
        from_tick, head, before, after = await self.runtime.lane.run(_restore, self.store, world, snapshot_id)
        return Restored(
            snapshot=snapshot_id, from_tick=from_tick, tick=head, state_hash=after, matches_live=after == before
        )

    async def close(self) -> None:
        """Stop ticking, stop the platforms and flush the world; every step runs even if one before it failed."""
        async with contextlib.AsyncExitStack() as steps:  # run last pushed first, each even if one before failed
            steps.push_async_callback(off_loop, self.world.close)
            steps.push_async_callback(self.runtime.shutdown)
            for platform in (self.protocol, self.surface, self.mirror):
                steps.push_async_callback(platform.stop)


def _open_world(store: Store, s: InstanceSettings) -> DurableWorld:
    """The world ``s`` names: the instance of ``s.instance_id`` (created if missing), else the one of this seed and
    world (continued or created)."""
    if s.instance_id is None:
        return DurableWorld.open_or_create(store, s.seed, s.spec, agents=s.agents, settings=s.durability)
    try:
        return DurableWorld.open(store, s.instance_id, settings=s.durability)
    except NotFoundError:
        return DurableWorld.create(
            store, s.seed, s.spec, agents=s.agents, instance_id=s.instance_id, settings=s.durability
        )


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
