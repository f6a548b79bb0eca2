"""FREEZE_TIME and THAW_TIME: pause and resume live instances, with a timer for a timed freeze.

Every id is checked live before any instance changes; each one frozen or thawed gets its mark. The timers belong
to ``FreezeTimers``: this module only arms and cancels them.
"""

from __future__ import annotations

from datetime import timedelta

from soulfra.meta.commands import FreezeTime, ThawTime
from soulfra.meta.god.context import GodContext
from soulfra.meta.god.timers import now
from soulfra.meta.results import FreezeResult, ThawResult, TickOf
from soulfra.offload import off_loop

__all__ = ["freeze", "thaw"]


async def freeze(ctx: GodContext, command: FreezeTime) -> FreezeResult:
    targets = command.instances if command.instances is not None else sorted(ctx.live)
    live = {instance_id: await ctx.running(instance_id) for instance_id in targets}  # every id known before any change
    until = None if command.duration is None else (now() + timedelta(seconds=command.duration)).isoformat()
    frozen = []
    for instance_id in targets:
        ctx.timers.cancel(instance_id)
        reply = await live[instance_id].bridge.pause()
        await off_loop(ctx.store.instances.set_status, instance_id, "frozen")
        # the mark keeps the wall-clock end of a timed freeze: a restart re-arms the timer from it
        await ctx.mark(instance_id, "FREEZE_TIME", {"duration": command.duration, "until": until})
        frozen.append(TickOf(instance=instance_id, tick=reply.tick))
    if command.duration is not None:
        for instance_id in targets:
            ctx.timers.arm(instance_id, command.duration)
    return FreezeResult(frozen=tuple(frozen), until=until)


async def thaw(ctx: GodContext, command: ThawTime) -> ThawResult:
    instances = command.instances
    if instances is None:
        instances = [i for i, inst in sorted(ctx.live.items()) if inst.runtime.paused]
    live = {
        instance_id: await ctx.running(instance_id) for instance_id in instances
    }  # every id known before any change
    thawed = []
    for instance_id in instances:
        instance = live[instance_id]
        ctx.timers.cancel(instance_id)
        await ctx.mark(instance_id, "THAW_TIME", {})
        reply = await instance.bridge.resume()
        await off_loop(ctx.store.instances.set_status, instance_id, "active")
        thawed.append(TickOf(instance=instance_id, tick=reply.tick))
    return ThawResult(thawed=tuple(thawed))
