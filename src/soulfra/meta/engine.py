"""PuppetMasterEngine: the meta-orchestrator. Runs many instances in one process and carries out god-mode commands.

Every command is audited and leaves its trace in the input log of each world it touches (an intervention, a
possession, a whisper, or a ``Mark`` that changes nothing), so each world stays a pure function of its log. It
never reaches into a world's state except to copy it (forks, merges) or to swap in a rebuilt one (revert).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from soulfra.bus.port import Bus
from soulfra.durable import DurabilitySettings, DurableWorld, free_id, start_tick, state_at
from soulfra.errors import (
    ConflictError,
    InputError,
    LineageError,
    NotFoundError,
    OverrideActiveError,
    PlatformError,
    SoulfraError,
)
from soulfra.meta.commands import (
    AgentPossession,
    CloneInstance,
    CrossInstanceCommunication,
    ForkSpec,
    FreezeTime,
    GodCommand,
    MergeInstances,
    PuppetMasterIntervention,
    RealityFork,
    ThawTime,
    TimelineRevert,
)
from soulfra.meta.lineage import (
    common_ancestor,
    fork_record,
    lineage,
    on_timeline,
    own_world,
    record_json,
    revert_record,
)
from soulfra.meta.merge import merge_states
from soulfra.platforms.bridge import CrossPlatformBridge
from soulfra.platforms.instance import FourPlatformInstance, InstanceSettings, Retention
from soulfra.platforms.runtime import RuntimePlatform
from soulfra.store.ports import InstanceRecord, Store
from soulfra.world import World, WorldSpec, parse_input, state_hash
from soulfra.world.inputs import MAX_TEXT, Input, Mark
from soulfra.world.model import WorldState

__all__ = ["EngineSettings", "PuppetMasterEngine"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSettings:
    rate: float | None = 2.0  # ticks per second of every instance the engine starts; None: as fast as they go
    durability: DurabilitySettings = field(default_factory=DurabilitySettings)
    cycle_every: int = 0
    timeout: float = 5.0
    max_instances: int = 5000  # live at once
    max_links: int = 32  # per instance: cross-instance links are a bounded graph
    retention: Retention = field(default_factory=Retention)


def _now() -> datetime:
    return datetime.now(UTC)


def _json(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _note_text(note: dict[str, Any], limit: int = MAX_TEXT) -> str:
    """``note`` as JSON of at most ``limit`` characters, for a mark. What does not fit is cut from the content,
    never from the encoding: a long list keeps its first items and counts the others (``<key>_more``), a long
    string keeps its beginning; the longest values are cut first."""
    fitted = dict(note)
    text = _json(fitted)
    for key in sorted(note, key=lambda k: -len(_json(note[k]))):
        if len(text) <= limit:
            return text
        value = note[key]
        if not isinstance(value, list | str):
            continue
        low, high = 0, len(value)  # the longest cut that fits (the encoding grows with it)
        while low < high:
            middle = (low + high + 1) // 2
            if len(_json(_cut(fitted, key, value, middle))) <= limit:
                low = middle
            else:
                high = middle - 1
        fitted = _cut(fitted, key, value, low)
        text = _json(fitted)
    if len(text) <= limit:
        return text
    return _json({"omitted": len(text)})  # nothing long enough to cut (many keys): only how long the note was


def _cut(note: dict[str, Any], key: str, value: list[Any] | str, n: int) -> dict[str, Any]:
    """``note`` with ``value`` cut to its first ``n`` items (and a list's count of the others) under ``key``."""
    if isinstance(value, str):
        return {**note, key: value[:n]}
    rest = {f"{key}_more": len(value) - n} if n < len(value) else {}
    return {**note, key: value[:n], **rest}


def _child_id(store: Store, base: str, suffix: str, reserved: set[str] | None = None) -> str:
    return free_id(store, f"{base[: 64 - len(suffix) - 5]}-{suffix}", reserved=reserved)


class PuppetMasterEngine:
    def __init__(self, store: Store, bus: Bus, settings: EngineSettings | None = None) -> None:
        self.store = store
        self.bus = bus
        self.settings = settings or EngineSettings()
        self.live: dict[str, FourPlatformInstance] = {}
        self._thaws: dict[str, asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()  # structural commands one at a time: lineage changes must not interleave

    # -- instances ------------------------------------------------------------------------------------------------

    async def start(self, ids: Collection[str] | None = None) -> None:
        """Bring every stored instance (or only those of ``ids``, such as the ones an import just stored) that is not
        an abandoned branch to life; frozen ones stay frozen. One that cannot be opened is logged and left stored,
        so that it does not keep the others from running."""
        async with self._lock:
            for record in self.store.instances.list_instances():
                if record.status == "abandoned" or record.id in self.live or (ids is not None and record.id not in ids):
                    continue
                try:
                    await self._launch(record.id, frozen=record.status == "frozen")
                except SoulfraError as exc:
                    log.error("instance %s was not started: %s", record.id, exc.detail)
                    continue
                if record.status == "frozen":
                    self._rearm_thaw(record)
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
            return DurableWorld.open(self.store, roots[0].id, settings=self.settings.durability)
        return DurableWorld.open_or_create(
            self.store, seed, spec, agents=agents, fresh=True, settings=self.settings.durability
        )

    async def open_default(
        self, seed: int, spec: WorldSpec, agents: int, *, claimed: DurableWorld | None = None
    ) -> str:
        """``claim_default`` (or the world it already gave), running; returns its id."""
        world = claimed if claimed is not None else self.claim_default(seed, spec, agents)
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
        s = self.settings
        instance = FourPlatformInstance(
            self.store,
            self.bus,
            InstanceSettings(
                instance_id=instance_id,
                rate=s.rate if rate == "default" else rate,
                durability=s.durability,
                cycle_every=s.cycle_every,
                timeout=s.timeout,
                retention=s.retention,
            ),
        )
        try:
            if world is None:
                world = DurableWorld.open(self.store, instance_id, settings=s.durability)
            await instance.initialize(world)
            _runtime(instance).paused = frozen
            instance.start_autonomous_operations()
        except BaseException:  # not running here: its lease must not say it is
            self.store.leases.release(instance_id)
            raise
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
        actor: str = "puppet-master",
    ) -> dict[str, Any]:
        """A new instance at tick 0 with its own seed and world, ticking from now on."""
        async with self._lock:
            self._check_room(1)
            if instance_id is not None:
                with contextlib.suppress(NotFoundError):
                    self.store.instances.get(instance_id)
                    raise ConflictError(f"instance {instance_id!r} already exists")
            world = DurableWorld.create(
                self.store, seed, spec, agents=agents, instance_id=instance_id, settings=self.settings.durability,
                actor=actor,
            )  # fmt: skip
            await self._launch(world.instance_id, world=world, rate=rate)
        return self.describe(world.instance_id)

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
        runtime = instance.runtime if instance is not None else None
        out["failure"] = None if runtime is None or runtime.failure is None else runtime.failure.to_json()
        if runtime is not None:
            out["tick"] = runtime.world.tick
            out["state"] = (
                "failed" if runtime.failure is not None else "overridden" if runtime.halted
                else "frozen" if record.status == "frozen" else "paused" if runtime.paused
                else "running" if runtime.running else "idle"
            )  # fmt: skip
            out["agents"] = runtime.world.world.state.size
        else:
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

    async def delete_instance(self, instance_id: str, *, actor: str = "puppet-master") -> dict[str, Any]:
        """Stop and remove an instance and its history; refused while forks, merges or branches descend from it."""
        async with self._lock:
            record = self.store.instances.get(instance_id)
            children = self.store.instances.children(instance_id)
            if children:
                raise ConflictError(
                    f"{instance_id} cannot be deleted: {', '.join(c.id for c in children)} descend from it "
                    "(delete them first)"
                )
            self.store.leases.acquire(instance_id)  # refused while another process runs it
            try:
                await self._stop(instance_id)
                self.store.instances.delete(instance_id)
            finally:  # stopped, if not deleted: this process no longer runs it
                self.store.leases.release(instance_id)
            self.store.audit.append(
                actor=actor, action="instance.delete", instance_id=instance_id, detail={"head_tick": record.head_tick}
            )
        return {"deleted": instance_id, "head_tick": record.head_tick}

    async def _stop(self, instance_id: str) -> None:
        instance = self.live.pop(instance_id, None)
        self._cancel_thaw(instance_id)
        if instance is not None:
            await instance.close()

    async def close(self) -> None:
        for task in self._thaws.values():
            task.cancel()
        self._thaws.clear()
        live, self.live = self.live, {}
        results = await asyncio.gather(*(instance.close() for instance in live.values()), return_exceptions=True)
        for instance_id, result in zip(live, results, strict=True):
            if isinstance(result, BaseException):
                log.error("closing %s failed: %s", instance_id, result)

    # -- helpers --------------------------------------------------------------------------------------------------

    def _live(self, instance_id: str) -> FourPlatformInstance:
        instance = self.live.get(instance_id)
        if instance is not None:
            return instance
        record = self.store.instances.get(instance_id)  # NotFoundError for an unknown id
        raise PlatformError(f"instance {instance_id} is {record.status} and not running; god commands need it live")

    @staticmethod
    def _world(instance: FourPlatformInstance) -> DurableWorld:
        return _runtime(instance).world

    async def _submit(self, instance: FourPlatformInstance, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        reply = await _bridge(instance).request("runtime", "submit", {"inputs": inputs})
        return list(reply["acks"])

    async def _mark(self, instance_id: str, command: str, note: dict[str, Any]) -> None:
        """Note a command in a world's log (a ``Mark`` changes nothing), live or stored."""
        text = _note_text(note)
        instance = self.live.get(instance_id)
        if instance is not None:
            await self._submit(instance, [{"type": "mark", "command": command, "note": text}])
            return
        record = self.store.instances.get(instance_id)  # its lease is held for the command (``_writer_of``)
        mark = parse_input({"type": "mark", "tick": record.head_tick, "command": command, "note": text})
        self.store.inputs.append(instance_id, [mark])

    def _state_now(self, instance_id: str) -> WorldState:
        """The instance's state at its head, durably stored up to there: a live world's copy, else rebuilt."""
        instance = self.live.get(instance_id)
        if instance is not None:
            world = self._world(instance)
            world.flush()
            return world.world.state.copy()
        record = self.store.instances.get(instance_id)
        return state_at(self.store, instance_id, record.head_tick)

    def _modifications(self, raw: list[dict[str, Any]], tick: int, state: WorldState) -> list[Input]:
        checker = World(state)
        items: list[Input] = []
        for n, obj in enumerate(raw):
            try:
                item = parse_input({**obj, "tick": tick})
                checker.check(item)
            except InputError as exc:
                raise type(exc)(f"modification {n}: {exc.detail}") from None
            items.append(item)
        return items

    # -- god mode -------------------------------------------------------------------------------------------------

    async def execute(self, command: GodCommand, *, actor: str = "puppet-master") -> dict[str, Any]:
        """Carry out one god-mode command; returns its result object. Every command is audited."""
        async with self._lock:
            result = await self._dispatch(command, actor)
        touched = result.get("instance") or result.get("source") or result.get("id")
        self.store.audit.append(
            actor=actor,
            action=f"god.{command.type.lower()}",
            instance_id=touched if isinstance(touched, str) else None,
            detail={"command": command.model_dump(mode="json"), "result": _brief(result)},
        )
        return {"type": command.type, "ok": True, **result}

    def _touched(self, command: GodCommand) -> list[str]:
        """The existing instances a command reads or writes (a new fork, clone or merge is not among them)."""
        names: list[str | None]
        if isinstance(command, FreezeTime | ThawTime):
            names = list(command.instances) if command.instances is not None else list(self.live)
        elif isinstance(command, CloneInstance | RealityFork):
            names = [command.source]
        elif isinstance(command, MergeInstances):
            names = [command.ours, command.theirs]
        elif isinstance(command, CrossInstanceCommunication):
            names = [command.source, command.target]
        else:
            names = [command.instance]
        return [name for name in names if name]

    def _refuse_halted(self, names: list[str]) -> None:
        """A command that would touch an instance under emergency override is refused before it changes anything."""
        for name in names:
            instance = self.live.get(name)
            if instance is not None and instance.runtime is not None and instance.runtime.halted:
                raise OverrideActiveError(f"{name} is stopped by an emergency override; resume it first")

    @contextlib.contextmanager
    def _writer_of(self, names: list[str]) -> Iterator[None]:
        """Hold the writer lease of every stored (not live) instance a command touches while it runs, so that one
        another process runs is refused before anything changes (a live one's lease is held already)."""
        taken: list[str] = []
        try:
            for name in names:
                if name in self.live or name in self.store.leases.held():
                    continue
                try:
                    self.store.instances.get(name)
                except NotFoundError:
                    continue  # the command itself says so
                self.store.leases.acquire(name)
                taken.append(name)
            yield
        finally:
            for name in taken:
                self.store.leases.release(name)

    async def _dispatch(self, command: GodCommand, actor: str) -> dict[str, Any]:
        touched = self._touched(command)
        self._refuse_halted(touched)
        with self._writer_of(touched):
            return await self._carry_out(command, actor)

    async def _carry_out(self, command: GodCommand, actor: str) -> dict[str, Any]:
        if isinstance(command, FreezeTime):
            return await self._freeze(command)
        if isinstance(command, ThawTime):
            return await self._thaw(command.instances)
        if isinstance(command, CloneInstance):
            forks = [ForkSpec(id=command.id, modifications=command.modifications)]
            made = await self._fork(command.source, command.tick, forks, "clone", command.start, command.name)
            return {"source": command.source, "tick": made[0]["tick"], **made[0]}
        if isinstance(command, RealityFork):
            made = await self._fork(command.source, command.tick, command.forks, "fork", command.start, None)
            return {"source": command.source, "tick": made[0]["tick"], "forks": made}
        if isinstance(command, MergeInstances):
            return await self._merge(command)
        if isinstance(command, AgentPossession):
            return await self._possess(command)
        if isinstance(command, TimelineRevert):
            return await self._revert(command)
        if isinstance(command, CrossInstanceCommunication):
            return await self._communicate(command)
        return await self._intervene(command)

    async def _freeze(self, command: FreezeTime) -> dict[str, Any]:
        targets = command.instances if command.instances is not None else sorted(self.live)
        live = {instance_id: self._live(instance_id) for instance_id in targets}  # every id known before any change
        until = None if command.duration is None else (_now() + timedelta(seconds=command.duration)).isoformat()
        frozen = []
        for instance_id in targets:
            self._cancel_thaw(instance_id)
            reply = await _bridge(live[instance_id]).pause()
            self.store.instances.set_status(instance_id, "frozen")
            # the mark keeps the wall-clock end of a timed freeze: a restart re-arms the timer from it
            await self._mark(instance_id, "FREEZE_TIME", {"duration": command.duration, "until": until})
            frozen.append({"instance": instance_id, "tick": reply["tick"]})
        if command.duration is not None:
            for instance_id in targets:
                self._arm_thaw(instance_id, command.duration)
        return {"frozen": frozen, "until": until}

    def _arm_thaw(self, instance_id: str, delay: float) -> None:
        self._thaws[instance_id] = asyncio.get_running_loop().create_task(self._thaw_later(instance_id, delay))

    def _rearm_thaw(self, record: InstanceRecord) -> None:
        """A frozen instance's timed freeze, continued after a restart: the end its last FREEZE_TIME mark noted."""
        marks = [
            s.input for s in self.store.inputs.read(record.id, from_tick=record.head_tick)
            if isinstance(s.input, Mark) and s.input.command in ("FREEZE_TIME", "THAW_TIME")
        ]  # fmt: skip
        if not marks or marks[-1].command != "FREEZE_TIME":
            return
        try:
            until = json.loads(marks[-1].note).get("until")
            end = datetime.fromisoformat(until) if isinstance(until, str) else None
        except (ValueError, AttributeError):
            return
        if end is not None:
            self._arm_thaw(record.id, max(0.0, (end - _now()).total_seconds()))

    def _cancel_thaw(self, instance_id: str) -> None:
        timer = self._thaws.pop(instance_id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def _thaw_later(self, instance_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        self._thaws.pop(instance_id, None)
        try:
            await self.execute(ThawTime(instances=[instance_id]), actor="freeze-timer")
        except (NotFoundError, PlatformError) as exc:  # deleted or stopped meanwhile
            log.info("thawing %s after its freeze: %s", instance_id, exc.detail)

    async def _thaw(self, instances: list[str] | None) -> dict[str, Any]:
        if instances is None:
            instances = [i for i, inst in sorted(self.live.items()) if inst.runtime is not None and inst.runtime.paused]
        live = {instance_id: self._live(instance_id) for instance_id in instances}  # every id known before any change
        thawed = []
        for instance_id in instances:
            instance = live[instance_id]
            self._cancel_thaw(instance_id)
            await self._mark(instance_id, "THAW_TIME", {})
            reply = await _bridge(instance).resume()
            self.store.instances.set_status(instance_id, "active")
            thawed.append({"instance": instance_id, "tick": reply["tick"]})
        return {"thawed": thawed}

    async def _fork(
        self, source: str, tick: int | None, specs: list[ForkSpec], kind: str, start: bool, name: str | None
    ) -> list[dict[str, Any]]:
        live = self.live.get(source)
        if live is not None:  # the stored head must reach the live tick before forking at it or before it
            self._world(live).flush()
        parent = self.store.instances.get(source)
        if live is not None and (tick is None or tick == self._world(live).tick):
            state = self._world(live).world.state.copy()
        else:
            tick = parent.head_tick if tick is None else tick
            if not start_tick(parent) <= tick <= parent.head_tick:
                raise LineageError(f"{source} holds ticks {start_tick(parent)} to {parent.head_tick}; no tick {tick}")
            state = state_at(self.store, source, tick)
        at = state.tick
        genesis = state_hash(state)
        prepared = [(spec, self._modifications(spec.modifications, at, state)) for spec in specs]
        ids = [spec.id for spec in specs if spec.id is not None]
        if len(set(ids)) != len(ids):
            raise InputError("two forks were given the same id")
        taken = {record.id for record in self.store.instances.list_instances()} & set(ids)
        if taken:
            raise ConflictError(f"instance {', '.join(sorted(taken))} already exists; no fork was made")
        if start:
            self._check_room(len(specs))
        reserved = set(ids)
        chosen = []
        for spec in specs:  # every id settled before anything is written
            child_id = spec.id or _child_id(self.store, source, kind, reserved)
            reserved.add(child_id)
            chosen.append(child_id)
        made = []
        for child_id, (_, inputs) in zip(chosen, prepared, strict=True):
            record = fork_record(
                self.store, parent, tick=at, child_id=child_id, kind=kind, inputs=inputs, genesis_hash=genesis,
                name=name,
            )  # fmt: skip
            if start:  # each child gets its own copy: forks never share mutable state
                world = DurableWorld.from_state(self.store, record.id, state.copy(), settings=self.settings.durability)
                await self._launch(record.id, world=world)
            made.append({"id": record.id, "tick": at, "state_hash": genesis, "modifications": len(inputs)})
        await self._mark(source, "REALITY_FORK" if kind == "fork" else "CLONE_INSTANCE", {"at": at, "children": [
            m["id"] for m in made
        ]})  # fmt: skip
        return made

    async def _merge(self, command: MergeInstances) -> dict[str, Any]:
        ours_state = self._state_now(command.ours)
        theirs_state = self._state_now(command.theirs)
        base_point = common_ancestor(self.store, command.ours, command.theirs)
        base_state = state_at(self.store, base_point.instance, base_point.tick)
        result = merge_states(base_state, ours_state, theirs_state, policies=command.policies)
        if command.start:
            self._check_room(1)
        merged = result.state
        ours = self.store.instances.get(command.ours)
        merged_id = command.id or _child_id(self.store, command.ours, "merge")
        # the merge names each parent at the tick its state was taken at, with that state's hash (what verify
        # checks the parent's history against); its own history starts at the merged state's tick
        record = InstanceRecord(
            id=merged_id, name=ours.name, seed=ours.seed, genesis_hash=state_hash(merged),
            world=own_world(
                ours.world, "merge",
                parent_ticks={"parent": ours_state.tick, "merge_parent": theirs_state.tick},
                parent_hashes={"parent": state_hash(ours_state), "merge_parent": state_hash(theirs_state)},
            ),
            parent_id=command.ours, fork_tick=merged.tick,
            merge_parent_id=command.theirs, head_tick=merged.tick,
        )  # fmt: skip
        report = result.to_json()
        with self.store.transaction():
            for parent, taken in ((command.ours, ours_state), (command.theirs, theirs_state)):
                on_timeline(self.store, parent, taken.tick, doing="merge")
            self.store.instances.create(record)
            self.store.snapshots.save(merged_id, merged, "merge")
            self.store.vault.save_agents(merged_id, merged)
            self.store.rituals.record(merged_id, tick=merged.tick, kind="merge_report", data=report)
        if command.start:
            world = DurableWorld.from_state(self.store, merged_id, merged.copy(), settings=self.settings.durability)
            await self._launch(merged_id, world=world)
        for parent in (command.ours, command.theirs):
            await self._mark(parent, "MERGE_INSTANCES", {"into": merged_id})
        return {
            "id": merged_id,
            "parents": [command.ours, command.theirs],
            "base": {"instance": base_point.instance, "tick": base_point.tick},
            "tick": merged.tick,
            **report,
        }

    async def _possess(self, command: AgentPossession) -> dict[str, Any]:
        instance = self._live(command.instance)
        item: dict[str, Any] = {"type": command.action, "agent": command.agent}
        if command.action == "possess":
            item["operator"] = command.operator
        elif command.action == "act":
            item.update(command.act or {})
            item["type"], item["agent"] = "act", command.agent
        if command.agent not in self._world(instance).world.state.index:
            raise InputError(f"{command.instance} has no agent {command.agent!r}")
        ack = (await self._submit(instance, [item]))[0]
        return {"instance": command.instance, "agent": command.agent, "action": command.action, "ack": ack}

    async def _revert(self, command: TimelineRevert) -> dict[str, Any]:
        instance_id = command.instance
        tick = command.tick
        if command.snapshot is not None:
            info, _ = self.store.snapshots.load(command.snapshot)
            if info.instance_id != instance_id:
                raise NotFoundError(f"{instance_id} has no snapshot {command.snapshot}")
            tick = info.tick
        if tick is None:  # the command's validator asks for one of the two
            raise InputError("a revert needs a tick or a snapshot")
        instance = self.live.get(instance_id)
        runtime = instance.runtime if instance is not None else None
        was_paused = runtime.paused if runtime is not None else True
        try:
            if runtime is not None:
                runtime.paused = True  # no tick between the flush and the swap
                runtime.world.flush()
            record = self.store.instances.get(instance_id)
            abandoned_head = record.head_tick
            branch_id = _child_id(self.store, instance_id, "branch")
            branch = revert_record(self.store, record, tick=tick, branch_id=branch_id)
            world = DurableWorld.open(self.store, instance_id, settings=self.settings.durability)
            self.store.vault.save_agents(instance_id, world.world.state)
            if instance is not None and runtime is not None:
                instance.world = world
                runtime.replace_world(world)
        finally:
            if runtime is not None:
                runtime.paused = was_paused
                runtime.replace_world(runtime.world)  # wakes the loop
        state_hash_now = world.world.state_hash()
        if instance is not None:  # its surface and mirror start over from the reverted tick (and no capture taken
            await self.live.pop(instance_id).close()  # before the revert can be saved into it); a timed freeze stays
            await self._launch(instance_id, frozen=was_paused)
        branches = [c.id for c in self.store.instances.children(instance_id) if c.status == "abandoned"]
        return {
            "instance": instance_id,
            "tick": tick,
            "state_hash": state_hash_now,
            "abandoned_branch": {"id": branch.id, "from_tick": tick, "head_tick": abandoned_head},
            "branches": branches,
        }

    async def _communicate(self, command: CrossInstanceCommunication) -> dict[str, Any]:
        source, target = command.source, command.target
        if command.action == "link":
            for end in (source, target):
                if len(self.store.instances.links(end)) >= self.settings.max_links:
                    raise LineageError(f"{end} already has {self.settings.max_links} links, the most allowed")
            self.store.instances.link(source, target)
            for end, other in ((source, target), (target, source)):
                await self._mark(end, "CROSS_INSTANCE_COMMUNICATION", {"link": other})
            return {"source": source, "target": target, "links": self.store.instances.links(source)}
        if command.action == "unlink":
            removed = self.store.instances.unlink(source, target)
            for end, other in ((source, target), (target, source)):
                await self._mark(end, "CROSS_INSTANCE_COMMUNICATION", {"unlink": other})
            return {"source": source, "target": target, "removed": removed}
        if target not in self.store.instances.links(source):
            raise LineageError(f"{source} and {target} are not linked; link them first (action 'link')")
        speaker = self._world(self._live(source)).world.state
        if command.agent not in speaker.index:
            raise InputError(f"{source} has no agent {command.agent!r}")
        receiver = self._live(target)
        origin = f"{source}/{command.agent}"
        if command.action == "whisper":
            item: dict[str, Any] = {
                "type": "whisper", "target": command.to, "text": f"{origin}: {command.text}", "tone": command.tone
            }  # fmt: skip
            if command.to != "*" and command.to not in self._world(receiver).world.state.index:
                raise InputError(f"{target} has no agent {command.to!r}")
        else:
            threads = self._world(receiver).world.state.threads
            if command.thread not in threads:
                raise InputError(f"thread {command.thread} is not open in {target} (open: {sorted(threads)})")
            item = {"type": "crosspost", "origin": origin, "thread": command.thread, "text": command.text}
        ack = (await self._submit(receiver, [item]))[0]
        await self._mark(source, "CROSS_INSTANCE_COMMUNICATION", {command.action: target, "agent": command.agent})
        return {"source": source, "target": target, "action": command.action, "ack": ack}

    async def _intervene(self, command: PuppetMasterIntervention) -> dict[str, Any]:
        if command.kind != "rewrite":
            instance = self._live(command.instance)
            ack = (await self._submit(instance, [command.as_input()]))[0]
            return {"instance": command.instance, "kind": command.kind, "ack": ack}
        return await self._rewrite(command)

    async def _rewrite(self, command: PuppetMasterIntervention) -> dict[str, Any]:
        """History from ``from_tick`` rewritten (inputs dropped or added) and replayed, as a new branch."""
        source = command.instance
        head_state = self._state_now(source)
        parent = self.store.instances.get(source)
        at = command.from_tick
        if at is None:  # the command's validator asks for it
            raise InputError("a rewrite needs from_tick")
        if not start_tick(parent) <= at <= parent.head_tick:
            raise LineageError(f"{source} holds ticks {start_tick(parent)} to {parent.head_tick}; no tick {at}")
        logged = self.store.inputs.read(source, from_tick=at)
        unknown = set(command.drop) - {s.seq for s in logged}
        if unknown:
            raise InputError(f"no input with seq {sorted(unknown)} at or after tick {at} in {source}")
        kept = [s.input for s in logged if s.seq not in command.drop]
        added = []
        for n, obj in enumerate(command.add):
            try:
                item = parse_input({"tick": at, **obj})
            except InputError as exc:
                raise type(exc)(f"added input {n}: {exc.detail}") from None
            if item.tick < at:
                raise InputError(f"added input {n} is for tick {item.tick}, before the rewrite starts at {at}")
            if item.tick > at + self.settings.durability.horizon:
                raise InputError(
                    f"added input {n} is for tick {item.tick}, more than {self.settings.durability.horizon:,} ticks "
                    f"past the rewrite's start at {at}"
                )
            try:
                World(head_state).check(item)  # the agents are the same at every tick
            except InputError as exc:
                raise type(exc)(f"added input {n}: {exc.detail}") from None
            added.append(item)
        self._check_room(1)
        branch_id = command.id or _child_id(self.store, source, "rewrite")
        record = fork_record(self.store, parent, tick=at, child_id=branch_id, kind="rewrite")
        history = sorted(kept + added, key=lambda item: item.tick)
        try:
            world = DurableWorld.open(self.store, record.id, settings=self.settings.durability)
            if history:
                world.submit(history)
            while world.tick < head_state.tick:
                world.step()
            world.flush()
        except BaseException:  # a branch that could not be written whole is not left behind
            self.store.instances.delete(record.id)
            self.store.leases.release(record.id)
            raise
        tick, branch_hash = world.tick, world.world.state_hash()  # before the branch ticks on
        await self._launch(record.id, world=world)
        await self._mark(source, "PUPPET_MASTER_INTERVENTION", {"rewrite": branch_id, "from_tick": at})
        return {
            "instance": source,
            "kind": "rewrite",
            "branch": branch_id,
            "from_tick": at,
            "dropped": len(command.drop),
            "added": len(added),
            "tick": tick,
            "state_hash": branch_hash,
            "source_state_hash": state_hash(head_state),
        }


def _runtime(instance: FourPlatformInstance) -> RuntimePlatform:
    if instance.runtime is None:
        raise PlatformError("the instance is not initialized")
    return instance.runtime


def _bridge(instance: FourPlatformInstance) -> CrossPlatformBridge:
    if instance.bridge is None:
        raise PlatformError("the instance is not initialized")
    return instance.bridge


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    """A result small enough for the audit log: a merge's full conflict list stays in its merge report."""
    out = dict(result)
    conflicts = out.get("conflicts")
    if isinstance(conflicts, list):
        out["conflicts"] = len(conflicts)
    return out
