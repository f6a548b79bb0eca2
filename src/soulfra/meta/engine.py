"""PuppetMasterEngine: the meta-orchestrator. Runs many instances in one process and carries out god-mode commands.

It owns the live instances (start, launch, create, delete, stop, close, the default instance), the views of them
(list, describe) and ``execute``, which checks, locks and audits each command and hands it to the handler its table
names for the command's type (``soulfra.meta.god``). Handlers get a ``GodContext``, never the engine itself.

Every change it makes is one action of its ``AuditRecorder``, refused ones included, by the identity that asked
(given, or the one of the action in progress, or the puppet master itself); an identity scoped to some instances
finds no other.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel

from soulfra.bus.port import Bus
from soulfra.durable import DurableWorld
from soulfra.errors import ConflictError, NotFoundError, SoulfraError
from soulfra.meta.commands import (
    AgentPossession,
    CloneInstance,
    CrossInstanceCommunication,
    FreezeTime,
    GodCommand,
    MergeInstances,
    PuppetMasterIntervention,
    RealityFork,
    ThawTime,
    TimelineRevert,
)
from soulfra.meta.god.agents import communicate, possess
from soulfra.meta.god.branching import clone, merge, preview_merge, reality_fork, revert
from soulfra.meta.god.context import GodContext
from soulfra.meta.god.freeze import freeze, thaw
from soulfra.meta.god.guard import refuse_halted, writer_of
from soulfra.meta.god.intervene import intervene
from soulfra.meta.god.timers import FreezeTimers
from soulfra.meta.lineage import lineage, record_json
from soulfra.meta.results import GodResult, MergePreview
from soulfra.metrics import Metrics
from soulfra.offload import off_loop
from soulfra.platforms.instance import FourPlatformInstance, InstanceSettings
from soulfra.platforms.runtime import RUN_STATES, run_state
from soulfra.security.audit import AuditRecorder, current_identity
from soulfra.security.identity import Identity, process_identity
from soulfra.store.ports import InstanceRecord, Store
from soulfra.world import World, WorldSpec

__all__ = ["HANDLERS", "PUPPET_MASTER", "EngineSettings", "PuppetMasterEngine"]

log = logging.getLogger(__name__)

PUPPET_MASTER = process_identity("puppet-master", "puppet-master")  # who acts when no one else is named
FREEZE_TIMER = process_identity("freeze-timer", "puppet-master")

Handler = Callable[[GodContext, Any], Awaitable[GodResult]]

# Which handler carries out each command type: every member of ``GodCommand`` has exactly one.
HANDLERS: Mapping[type[BaseModel], Handler] = {
    FreezeTime: freeze,
    ThawTime: thaw,
    CloneInstance: clone,
    RealityFork: reality_fork,
    MergeInstances: merge,
    AgentPossession: possess,
    TimelineRevert: revert,
    CrossInstanceCommunication: communicate,
    PuppetMasterIntervention: intervene,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSettings:
    """How the puppet master runs its instances. ``instance`` is what every instance it starts is given (tick rate,
    durability, snapshot cycle, bus timeout, retention, rules); each one's id, seed and world come from its own
    record, so the template's are not used."""

    instance: InstanceSettings = field(default_factory=InstanceSettings)
    max_instances: int = 5000  # live at once
    max_links: int = 32  # per instance: cross-instance links are a bounded graph
    leave: frozenset[str] = frozenset()  # instances run by their own platform processes, never started here


class PuppetMasterEngine:
    def __init__(
        self, store: Store, bus: Bus, settings: EngineSettings | None = None, *, recorder: AuditRecorder | None = None
    ) -> None:
        self.store = store
        self.bus = bus
        self.settings = settings or EngineSettings()
        self.recorder = recorder or AuditRecorder(store)
        self.live: dict[str, FourPlatformInstance] = {}
        if self.settings.instance.metrics is None:  # one registry for the engine and every runtime it starts
            self.settings = replace(self.settings, instance=replace(self.settings.instance, metrics=Metrics()))
        self.metrics: Metrics = self.settings.instance.metrics or Metrics()
        self.metrics.on_scrape(self._count_instances)
        self._timers = FreezeTimers(self.store, self._thaw_by_timer)
        self._lock = asyncio.Lock()  # structural commands one at a time: lineage changes must not interleave
        self._god = GodContext(
            store=self.store, settings=self.settings, live=self.live, launch=self._launch,
            check_room=self._check_room, timers=self._timers,
        )  # fmt: skip

    # -- instances ------------------------------------------------------------------------------------------------

    async def start(self, ids: Collection[str] | None = None, *, width: int = 1) -> None:
        """Bring every stored instance (or only those of ``ids``, such as the ones an import just stored) that is not
        an abandoned branch, nor one ``settings.leave`` names, to life; frozen ones stay frozen. One that cannot be
        opened is logged and left stored, so that it does not keep the others from running. ``width``: how many
        are opened at once (their reads and subscriptions overlap; a cluster host taking over a lost node's worlds
        uses more than one)."""
        async with self._lock:
            records = [
                record for record in await off_loop(self.store.instances.list_instances, ids)
                if record.status != "abandoned" and record.id not in self.live and record.id not in self.settings.leave
                and (ids is None or record.id in ids)
            ]  # fmt: skip
            gate = asyncio.Semaphore(max(1, width))
            opening = 0  # launches under way: not live yet, but taking room

            async def launch(record: InstanceRecord) -> None:
                nonlocal opening
                async with gate:
                    try:
                        self._check_room(1 + opening)
                        opening += 1
                        try:
                            await self._launch(record.id, frozen=record.status == "frozen")
                        finally:
                            opening -= 1
                    except SoulfraError as exc:
                        log.error("instance %s was not started: %s", record.id, exc.detail)
                        return
                    if record.status == "frozen":
                        await self._timers.rearm(record)

            for outcome in await asyncio.gather(*(launch(record) for record in records), return_exceptions=True):
                if isinstance(outcome, BaseException):  # a bug, not a world that could not open: after the others
                    raise outcome
        # What exists now lives as long as the server: out of the collector's way, so that full collections (which
        # grow with the number of instances) stop pausing every instance's ticks.
        gc.freeze()

    def claim_default(self, seed: int, spec: WorldSpec, agents: int) -> DurableWorld:
        """The instance of this seed and world (continued, or created), its writer lease taken but not yet running:
        what ``soulfra up`` serves at /api. The oldest root of that seed and world, never a clone, fork, merge or
        import that happens to match it. ``LeaseHeldError`` if another process runs it."""
        genesis_hash = World.create(seed, spec, agents=agents).state_hash()
        roots = [
            r for r in self.store.instances.list_instances()  # oldest first
            if r.seed == seed and r.genesis_hash == genesis_hash and r.parent_id is None and r.fork_tick is None
            and "imported" not in r.world and r.status != "abandoned"
        ]  # fmt: skip
        if roots:
            return DurableWorld.open(self.store, roots[0].id, settings=self.settings.instance.durability)
        with self.recorder.recording(PUPPET_MASTER, "instance.create", detail={"default": True}) as action:
            world = DurableWorld.open_or_create(
                self.store, seed, spec, agents=agents, fresh=True, settings=self.settings.instance.durability
            )
            action.refine(instance_id=world.instance_id, detail={"seed": seed, **world.record.world})
        return world

    async def open_default(
        self, seed: int, spec: WorldSpec, agents: int, *, claimed: DurableWorld | None = None
    ) -> str:
        """``claim_default`` (or the world it already gave), running; returns its id."""
        world = claimed if claimed is not None else await off_loop(self.claim_default, seed, spec, agents)
        if world.instance_id not in self.live:
            await self._launch(world.instance_id, world=world, frozen=world.record.status == "frozen")
        return world.instance_id

    async def _launch(
        self,
        instance_id: str,
        *,
        world: DurableWorld | None = None,
        frozen: bool = False,
        rate: float | Literal["default"] | None = "default",
    ) -> FourPlatformInstance:
        self._check_room(1)
        template = self.settings.instance
        if world is None:
            try:
                world = await off_loop(DurableWorld.open, self.store, instance_id, settings=template.durability)
            except BaseException:  # not running here (a revert's relaunch held it before): its lease must not say so
                await off_loop(self.store.leases.release, instance_id)
                raise
        settings = replace(template, instance_id=instance_id, rate=template.rate if rate == "default" else rate)
        instance = await FourPlatformInstance.open(self.store, self.bus, settings, world=world)  # or lets go of it
        instance.runtime.paused = frozen
        instance.start_autonomous_operations()
        self.live[instance_id] = instance
        return instance

    def _check_room(self, more: int) -> None:
        """Refuse before anything is written when ``more`` instances would not fit among the live ones."""
        if len(self.live) + more > self.settings.max_instances:
            raise ConflictError(
                f"{len(self.live)} instances are live and this server runs at most {self.settings.max_instances}"
            )

    async def create_instance(
        self,
        *,
        seed: int,
        spec: WorldSpec,
        agents: int = 0,
        instance_id: str | None = None,
        rate: float | Literal["default"] | None = "default",
        identity: Identity | None = None,
    ) -> dict[str, Any]:
        """A new instance at tick 0 with its own seed and world, ticking from now on (audited as
        ``instance.create``)."""

        def stored() -> DurableWorld:
            if instance_id is not None:
                with contextlib.suppress(NotFoundError):
                    self.store.instances.get(instance_id)
                    raise ConflictError(f"instance {instance_id!r} already exists")
            return DurableWorld.create(
                self.store, seed, spec, agents=agents, instance_id=instance_id,
                settings=self.settings.instance.durability,
            )  # fmt: skip

        who = self._who(identity)
        async with self.recorder.acting(who, "instance.create", instance_id=instance_id) as action, self._lock:
            who.may_create("create instances")
            self._check_room(1)
            world = await off_loop(stored)
            action.refine(instance_id=world.instance_id, detail={"seed": seed, **world.record.world})
            await self._launch(world.instance_id, world=world, rate=rate)
        return await off_loop(self.describe, world.instance_id)

    def list_instances(self, *, include_abandoned: bool = True) -> list[dict[str, Any]]:
        rows = []
        for record in self.store.instances.list_instances():
            if include_abandoned or record.status != "abandoned":
                rows.append(self._summary(record))
        return rows

    def _summary(self, record: InstanceRecord) -> dict[str, Any]:
        """An instance's record with how it runs: ``state``, ``tick``, and ``failure`` (the tick and the error that
        stopped a ``failed`` instance, else None)."""
        out = record_json(record)
        instance = self.live.get(record.id)
        if instance is not None:
            runtime = instance.runtime
            out["failure"] = None if runtime.failure is None else runtime.failure.to_json()
            out["tick"] = runtime.world.tick
            out["state"] = (
                "failed" if runtime.failure is not None else "overridden" if runtime.halted
                else "frozen" if record.status == "frozen" else "paused" if runtime.paused
                else "running" if runtime.running else "idle"
            )  # fmt: skip
            out["agents"] = runtime.world.world.state.size
        else:
            out["failure"] = None
            out["tick"] = record.head_tick
            out["state"] = "stored"
        return out

    def describe(self, instance_id: str) -> dict[str, Any]:
        """One instance: its record, whether it runs, its lineage, forks, abandoned branches and links."""
        record = self.store.instances.get(instance_id)
        out = self._summary(record)
        children = self.store.instances.children(instance_id)
        out["children"] = [c.id for c in children if c.status != "abandoned"]
        out["branches"] = [
            {"id": c.id, "from_tick": c.fork_tick, "head_tick": c.head_tick}
            for c in children
            if c.status == "abandoned"
        ]
        out["lineage"] = [{"instance": p.instance, "tick": p.tick} for p in lineage(self.store, instance_id)[1:]]
        out["links"] = self.store.instances.links(instance_id)
        return out

    async def delete_instance(self, instance_id: str, *, identity: Identity | None = None) -> dict[str, Any]:
        """Stop and remove an instance and its history; refused while forks, merges or branches descend from it
        (audited as ``instance.delete``)."""

        def claim() -> InstanceRecord:
            record = self.store.instances.get(instance_id)
            children = self.store.instances.children(instance_id)
            if children:
                raise ConflictError(
                    f"{instance_id} cannot be deleted: {', '.join(c.id for c in children)} descend from it "
                    "(delete them first)"
                )
            self.store.leases.acquire(instance_id)  # refused while another process runs it
            return record

        def delete() -> None:
            try:
                self.store.instances.delete(instance_id)
            finally:  # stopped, if not deleted: this process no longer runs it
                self.store.leases.release(instance_id)

        who = self._who(identity)
        async with self.recorder.acting(who, "instance.delete", instance_id=instance_id) as action:
            _check_scope(who, [instance_id])
            async with self._lock:
                record = await off_loop(claim)
                action.refine(detail={"head_tick": record.head_tick})
                try:
                    await self._stop(instance_id)
                except BaseException:
                    await off_loop(self.store.leases.release, instance_id)
                    raise
                await off_loop(delete)
        return {"deleted": instance_id, "head_tick": record.head_tick}

    async def hand_over(self, instance_ids: Collection[str]) -> list[str]:
        """Stop running these live instances here and let go of their writer leases, so that another process can
        take them over (a cluster moving worlds between nodes); their timers stay armed in the store. The ids that
        were live here."""
        moved = []
        async with self._lock:
            for instance_id in instance_ids:
                if instance_id not in self.live:
                    continue
                await self._stop(instance_id)
                await off_loop(self.store.leases.release, instance_id)
                moved.append(instance_id)
        return moved

    def live_summaries(self) -> list[dict[str, Any]]:
        """``list_instances``' row of each live instance, from memory and the records: one query of their records,
        not one per live instance, nor of every record (a cluster host runs hundreds of a cluster's thousands, and
        the API lists them all at every page)."""
        live = set(self.live)
        return [self._summary(record) for record in self.store.instances.list_instances(live) if record.id in live]

    async def _stop(self, instance_id: str) -> None:
        instance = self.live.pop(instance_id, None)
        self._timers.cancel(instance_id)
        if instance is not None:
            await instance.close()

    async def close(self) -> None:
        self._timers.cancel_all()
        live = dict(self.live)
        self.live.clear()  # the same mapping the handlers' context holds
        results = await asyncio.gather(*(instance.close() for instance in live.values()), return_exceptions=True)
        for instance_id, result in zip(live, results, strict=True):
            if isinstance(result, BaseException):
                log.error("closing %s failed", instance_id, exc_info=result)

    def _count_instances(self) -> None:
        """``soulfra_instances{status}`` from the live runtimes, every status named (0 when none is in it)."""
        counts = dict.fromkeys(RUN_STATES, 0)
        for instance in list(self.live.values()):
            counts[run_state(instance.runtime)] += 1
        for status, count in counts.items():
            self.metrics.instances.labels(status).set(count)

    # -- god mode -------------------------------------------------------------------------------------------------

    async def execute(self, command: GodCommand, *, identity: Identity | None = None) -> GodResult:
        """Carry out one god-mode command; returns its typed result (``reply()`` is the API's answer). Every
        command is one audited action, refused ones included, filed under its result's ``subject``. An identity
        scoped to some instances finds no other (``NotFoundError`` before anything changes), and a command on all
        instances acts on those it sees. Counted in ``soulfra_god_commands_total`` by type and outcome (ok, or the
        refusing error's code)."""
        try:
            result = await self._execute(command, identity)
        except SoulfraError as exc:
            self.metrics.god_commands.labels(command.type, exc.code).inc()
            raise
        self.metrics.god_commands.labels(command.type, "ok").inc()
        return result

    async def _execute(self, command: GodCommand, identity: Identity | None) -> GodResult:
        who = self._who(identity)
        command = self._within_scope(command, who)
        action_name = f"god.{command.type.lower()}"
        detail = {"command": command.model_dump(mode="json")}
        async with self.recorder.acting(who, action_name, instances=command.touches(self.live), detail=detail) as act:
            _check_scope(who, command.touches(self.live))
            if isinstance(command, CloneInstance | RealityFork | MergeInstances):
                who.may_create(f"{command.type.lower().replace('_', ' ')} (it makes new instances)")
            async with self._lock:
                names = command.touches(self.live)
                refuse_halted(self.live, names)
                async with writer_of(self.store, self.live, names):
                    result = await HANDLERS[type(command)](self._god, command)
            act.refine(
                instance_id=result.subject, instances=result.instances(), detail={"result": _brief(result.to_json())}
            )
        return result

    async def preview_merge(self, command: MergeInstances, *, identity: Identity | None = None) -> MergePreview:
        """The report MERGE_INSTANCES would give now, by the merge's own code, with nothing written (the dashboard
        shows it before the merge). Refused as the merge would be (scope, licences, a halted parent); under the
        engine's lock, so no structural command changes the lineage while it reads. Not a god command: it changes
        nothing, so it is audited only as the request that asked for it."""
        who = self._who(identity)
        _check_scope(who, command.touches(self.live))
        who.may_create("merge instances (it makes new instances)")
        async with self._lock:
            refuse_halted(self.live, command.touches(self.live))
            return await preview_merge(self._god, command)

    def _who(self, identity: Identity | None) -> Identity:
        return identity or current_identity() or PUPPET_MASTER

    def _within_scope(self, command: GodCommand, who: Identity) -> GodCommand:
        """A command on all instances (freeze or thaw without a list), narrowed to those a scoped identity sees."""
        if who.instances is None or not isinstance(command, FreezeTime | ThawTime) or command.instances is not None:
            return command
        seen = [i for i in sorted(self.live) if who.sees(i)]
        if isinstance(command, ThawTime):
            seen = [i for i in seen if self.live[i].runtime.paused]
        return command.model_copy(update={"instances": seen})

    async def _thaw_by_timer(self, instance_id: str) -> None:
        await self.execute(ThawTime(instances=[instance_id]), identity=FREEZE_TIMER)


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    """A result small enough for the audit log: a merge's full conflict list stays in its merge report."""
    out = dict(result)
    conflicts = out.get("conflicts")
    if isinstance(conflicts, list):
        out["conflicts"] = len(conflicts)
    return out


def _check_scope(who: Identity, names: Collection[str]) -> None:
    """``NotFoundError`` for the first instance ``who`` may not see: to it, that instance does not exist."""
    for name in names:
        if not who.sees(name):
            raise NotFoundError(f"no instance {name!r}")
