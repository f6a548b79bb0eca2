"""PUPPET_MASTER_INTERVENTION: a personality, ritual or vibe change sent to a live world, or history rewritten.

A rewrite never edits the source's log: it replays the kept and added inputs from ``from_tick`` into a new branch,
and removes that branch again if it could not be written whole.
"""

from __future__ import annotations

from soulfra.durable import DurabilitySettings, DurableWorld, start_tick
from soulfra.errors import InputError, LineageError
from soulfra.meta.commands import PuppetMasterIntervention
from soulfra.meta.god.context import GodContext, child_id
from soulfra.meta.lineage import fork_record
from soulfra.meta.results import InterventionResult, RewriteResult
from soulfra.offload import off_loop
from soulfra.store.ports import InstanceRecord, Store, StoredInput
from soulfra.world import World, parse_input, state_hash
from soulfra.world.inputs import Input

__all__ = ["intervene"]


async def intervene(ctx: GodContext, command: PuppetMasterIntervention) -> InterventionResult | RewriteResult:
    if command.kind != "rewrite":
        instance = await ctx.running(command.instance)
        ack = (await ctx.submit(instance, [command.as_input()]))[0]
        return InterventionResult(instance=command.instance, kind=command.kind, ack=ack)
    return await _rewrite(ctx, command)


async def _rewrite(ctx: GodContext, command: PuppetMasterIntervention) -> RewriteResult:
    """History from ``from_tick`` rewritten (inputs dropped or added) and replayed, as a new branch."""
    store, horizon = ctx.store, ctx.settings.instance.durability.horizon
    source = command.instance
    head_state = await ctx.state_now(source)
    at = command.from_tick
    if at is None:  # the command's validator asks for it
        raise InputError("a rewrite needs from_tick")

    def read() -> tuple[InstanceRecord, list[StoredInput]]:
        parent = store.instances.get(source)
        if not start_tick(parent) <= at <= parent.head_tick:
            raise LineageError(f"{source} holds ticks {start_tick(parent)} to {parent.head_tick}; no tick {at}")
        return parent, store.inputs.read(source, from_tick=at)

    parent, logged = await off_loop(read)
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
        if item.tick > at + horizon:
            raise InputError(
                f"added input {n} is for tick {item.tick}, more than {horizon:,} ticks past the rewrite's start at {at}"
            )
        try:
            World(head_state).check(item)  # the agents are the same at every tick
        except InputError as exc:
            raise type(exc)(f"added input {n}: {exc.detail}") from None
        added.append(item)
    ctx.check_room(1)
    branch_id = command.id if command.id is not None else await off_loop(child_id, store, source, "rewrite")
    record = await off_loop(fork_record, store, parent, tick=at, child_id=branch_id, kind="rewrite")
    history = sorted(kept + added, key=lambda item: item.tick)

    try:
        world = await off_loop(_replay, store, record.id, history, head_state.tick, ctx.settings.instance.durability)
    except BaseException:  # a branch that could not be written whole is not left behind
        await off_loop(_remove, store, record.id)
        raise
    tick, branch_hash = world.tick, world.world.state_hash()  # before the branch ticks on
    await ctx.launch(record.id, world=world)
    await ctx.mark(source, "PUPPET_MASTER_INTERVENTION", {"rewrite": branch_id, "from_tick": at})
    return RewriteResult(
        instance=source, branch=branch_id, from_tick=at, dropped=len(command.drop), added=len(added), tick=tick,
        state_hash=branch_hash, source_state_hash=state_hash(head_state),
    )  # fmt: skip


def _replay(
    store: Store, branch_id: str, history: list[Input], tick: int, settings: DurabilitySettings
) -> DurableWorld:
    """The new branch opened, its history stored and replayed up to ``tick``, and flushed (off the loop)."""
    world = DurableWorld.open(store, branch_id, settings=settings)
    if history:
        world.submit(history)
    while world.tick < tick:
        world.step()
    world.flush()
    return world


def _remove(store: Store, branch_id: str) -> None:
    store.instances.delete(branch_id)
    store.leases.release(branch_id)
