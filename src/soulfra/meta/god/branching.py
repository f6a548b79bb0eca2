"""CLONE_INSTANCE, REALITY_FORK, MERGE_INSTANCES and TIMELINE_REVERT: the commands that add to the lineage graph.

Each settles every id and checks every modification before it writes, writes the new record through
``soulfra.meta.lineage``, and marks the instances it read. None of them rewrites a world's past: a revert keeps
the old head as an abandoned branch.
"""

from __future__ import annotations

from dataclasses import dataclass

from soulfra.durable import DurableWorld, start_tick, state_at
from soulfra.errors import ConflictError, InputError, LineageError, NotFoundError
from soulfra.meta.commands import CloneInstance, ForkSpec, MergeInstances, RealityFork, TimelineRevert
from soulfra.meta.god.context import GodContext, child_id
from soulfra.meta.lineage import AncestorPoint, common_ancestor, fork_record, on_timeline, own_world, revert_record
from soulfra.meta.merge import MergeResult as MergedStates
from soulfra.meta.merge import merge_states
from soulfra.meta.results import (
    AbandonedBranch,
    CloneResult,
    ForkMade,
    ForkResult,
    MergeBase,
    MergePreview,
    MergeResult,
    RevertResult,
)
from soulfra.offload import off_loop
from soulfra.security.permissions import enforce
from soulfra.store.ports import InstanceRecord
from soulfra.world import state_hash
from soulfra.world.inputs import Input
from soulfra.world.model import WorldState

__all__ = ["clone", "merge", "preview_merge", "reality_fork", "revert"]


async def clone(ctx: GodContext, command: CloneInstance) -> CloneResult:
    forks = [ForkSpec(id=command.id, modifications=command.modifications)]
    made = await _fork(ctx, command.source, command.tick, forks, "clone", command.start, command.name)
    return CloneResult(source=command.source, made=made[0])


async def reality_fork(ctx: GodContext, command: RealityFork) -> ForkResult:
    made = await _fork(ctx, command.source, command.tick, command.forks, "fork", command.start, None)
    return ForkResult(source=command.source, tick=made[0].tick, forks=made)


async def _fork(
    ctx: GodContext, source: str, tick: int | None, specs: list[ForkSpec], kind: str, start: bool, name: str | None
) -> tuple[ForkMade, ...]:
    store = ctx.store
    live = ctx.live.get(source)

    def stored(tick: int | None) -> tuple[InstanceRecord, WorldState]:
        """The parent's record and its state at ``tick``; off the loop, in the live parent's lane if it runs."""
        if live is not None:  # the stored head must reach the live tick before forking at it or before it
            live.runtime.world.flush()
        parent = store.instances.get(source)
        if live is not None and (tick is None or tick == live.runtime.world.tick):
            return parent, live.runtime.world.world.state.copy()
        tick = parent.head_tick if tick is None else tick
        if not start_tick(parent) <= tick <= parent.head_tick:
            raise LineageError(f"{source} holds ticks {start_tick(parent)} to {parent.head_tick}; no tick {tick}")
        return parent, state_at(store, source, tick)

    # the source's licence and rules first: a refused fork reads no state and writes nothing
    await off_loop(enforce, store, source, "fork", ctx.settings.instance.rules, count=len(specs))
    if live is None:
        parent, state = await off_loop(stored, tick)
    else:  # no tick between the flush and the copy
        parent, state = await live.runtime.lane.run(stored, tick)
    at = state.tick
    genesis = state_hash(state)
    prepared = [(spec, ctx.modifications(spec.modifications, at, state)) for spec in specs]
    ids = [spec.id for spec in specs if spec.id is not None]
    if len(set(ids)) != len(ids):
        raise InputError("two forks were given the same id")
    taken = {record.id for record in await off_loop(store.instances.list_instances)} & set(ids)
    if taken:
        raise ConflictError(f"instance {', '.join(sorted(taken))} already exists; no fork was made")
    if start:
        ctx.check_room(len(specs))

    def settle() -> list[str]:
        reserved = set(ids)
        chosen = []
        for spec in specs:  # every id settled before anything is written
            new_id = spec.id or child_id(store, source, kind, reserved)
            reserved.add(new_id)
            chosen.append(new_id)
        return chosen

    def write(new_id: str, inputs: list[Input]) -> tuple[InstanceRecord, DurableWorld | None]:
        record = fork_record(
            store, parent, tick=at, child_id=new_id, kind=kind, inputs=inputs, genesis_hash=genesis, name=name,
        )  # fmt: skip
        if not start:
            return record, None
        # each child gets its own copy: forks never share mutable state
        return record, DurableWorld.from_state(
            store, record.id, state.copy(), settings=ctx.settings.instance.durability
        )

    made: list[ForkMade] = []
    for new_id, (_, inputs) in zip(await off_loop(settle), prepared, strict=True):
        record, world = await off_loop(write, new_id, inputs)
        if world is not None:
            await ctx.launch(record.id, world=world)
        made.append(ForkMade(id=record.id, tick=at, state_hash=genesis, modifications=len(inputs)))
    await ctx.mark(source, "REALITY_FORK" if kind == "fork" else "CLONE_INSTANCE", {"at": at, "children": [
        m.id for m in made
    ]})  # fmt: skip
    return tuple(made)


@dataclass(frozen=True, slots=True, kw_only=True)
class _MergePlan:
    """Everything a merge decides before it writes: both parents' states, where they met, the merged state and
    its report. ``merge`` writes it; ``preview_merge`` only shows it."""

    ours_state: WorldState
    theirs_state: WorldState
    base: AncestorPoint
    merged: MergedStates
    ours: InstanceRecord


async def _plan_merge(ctx: GodContext, command: MergeInstances) -> _MergePlan:
    """The merge as it would be made now (licences checked, states read at the parents' heads); writes nothing."""
    store = ctx.store
    for parent_id in (command.ours, command.theirs):  # a merge makes a child of both: each one's licence must allow it
        await off_loop(enforce, store, parent_id, "fork", ctx.settings.instance.rules)
    ours_state = await ctx.state_now(command.ours)
    theirs_state = await ctx.state_now(command.theirs)

    def prepare() -> _MergePlan:
        base_point = common_ancestor(store, command.ours, command.theirs)
        base_state = state_at(store, base_point.instance, base_point.tick)
        result = merge_states(base_state, ours_state, theirs_state, policies=command.policies)
        return _MergePlan(
            ours_state=ours_state, theirs_state=theirs_state, base=base_point, merged=result,
            ours=store.instances.get(command.ours),
        )  # fmt: skip

    return await off_loop(prepare)


async def preview_merge(ctx: GodContext, command: MergeInstances) -> MergePreview:
    """MERGE_INSTANCES without the merge: the report (conflicts, policies, changes) the merge would give from the
    parents' states now, by the very same code; nothing is written, no id is taken, nothing is marked."""
    plan = await _plan_merge(ctx, command)
    if command.id is not None and command.id in {r.id for r in await off_loop(ctx.store.instances.list_instances)}:
        raise ConflictError(f"instance {command.id} already exists; the merge would be refused")
    if command.start:
        ctx.check_room(1)
    return MergePreview(
        parents=(command.ours, command.theirs),
        parent_ticks=(plan.ours_state.tick, plan.theirs_state.tick),
        base=MergeBase(instance=plan.base.instance, tick=plan.base.tick),
        tick=plan.merged.state.tick,
        report=plan.merged.to_json(),
    )


async def merge(ctx: GodContext, command: MergeInstances) -> MergeResult:
    store = ctx.store
    plan = await _plan_merge(ctx, command)
    ours_state, theirs_state, base_point, result, ours = (
        plan.ours_state, plan.theirs_state, plan.base, plan.merged, plan.ours,
    )  # fmt: skip
    if command.start:
        ctx.check_room(1)
    merged = result.state
    merged_id = command.id if command.id is not None else await off_loop(child_id, store, command.ours, "merge")
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

    def write() -> None:
        with store.transaction():
            for parent, taken in ((command.ours, ours_state), (command.theirs, theirs_state)):
                on_timeline(store, parent, taken.tick, doing="merge")
            store.instances.create(record)
            store.snapshots.save(merged_id, merged, "merge")
            store.vault.save_agents(merged_id, merged)
            store.rituals.record(merged_id, tick=merged.tick, kind="merge_report", data=report)

    await off_loop(write)
    if command.start:
        world = await off_loop(
            DurableWorld.from_state, store, merged_id, merged.copy(), settings=ctx.settings.instance.durability
        )
        await ctx.launch(merged_id, world=world)
    for parent in (command.ours, command.theirs):
        await ctx.mark(parent, "MERGE_INSTANCES", {"into": merged_id})
    return MergeResult(
        id=merged_id,
        parents=(command.ours, command.theirs),
        base=MergeBase(instance=base_point.instance, tick=base_point.tick),
        tick=merged.tick,
        report=report,
    )


async def revert(ctx: GodContext, command: TimelineRevert) -> RevertResult:
    store = ctx.store
    instance_id = command.instance
    tick = command.tick
    if command.snapshot is not None:
        info, _ = await off_loop(store.snapshots.load, command.snapshot)
        if info.instance_id != instance_id:
            raise NotFoundError(f"{instance_id} has no snapshot {command.snapshot}")
        tick = info.tick
    if tick is None:  # the command's validator asks for one of the two
        raise InputError("a revert needs a tick or a snapshot")
    instance = ctx.live.get(instance_id)
    runtime = instance.runtime if instance is not None else None
    was_paused = runtime.paused if runtime is not None else True
    at = tick

    def rebuild() -> tuple[int, InstanceRecord, DurableWorld]:
        """Off the loop (in the live world's lane): the old head kept as a branch, the world reopened at ``at``."""
        if runtime is not None:
            runtime.world.flush()
        record = store.instances.get(instance_id)
        branch = revert_record(store, record, tick=at, branch_id=child_id(store, instance_id, "branch"))
        world = DurableWorld.open(store, instance_id, settings=ctx.settings.instance.durability)
        store.vault.save_agents(instance_id, world.world.state)
        return record.head_tick, branch, world

    try:
        if runtime is None:
            abandoned_head, branch, world = await off_loop(rebuild)
        else:
            runtime.paused = True  # no tick between the flush and the swap
            async with runtime.lane.turn():  # nor an input
                abandoned_head, branch, world = await off_loop(rebuild)
                if instance is not None:
                    instance.world = world
                    runtime.replace_world(world)
    finally:
        if runtime is not None:
            runtime.paused = was_paused
            runtime.replace_world(runtime.world)  # wakes the loop
    state_hash_now = world.world.state_hash()
    if instance is not None:  # its surface and mirror start over from the reverted tick (and no capture taken
        await ctx.live.pop(instance_id).close()  # before the revert can be saved into it); a timed freeze stays
        await ctx.launch(instance_id, frozen=was_paused)
    branches = tuple(c.id for c in await off_loop(store.instances.children, instance_id) if c.status == "abandoned")
    return RevertResult(
        instance=instance_id,
        tick=tick,
        state_hash=state_hash_now,
        abandoned_branch=AbandonedBranch(id=branch.id, from_tick=tick, head_tick=abandoned_head),
        branches=branches,
    )
