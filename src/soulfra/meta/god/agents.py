"""AGENT_POSSESSION and CROSS_INSTANCE_COMMUNICATION: commands that reach the agents of live worlds.

Everything they do to a world goes in as an input through its runtime (a possession, a whisper, a crosspost) or,
for links, into the store's bounded link graph; they check agents, threads and links before anything is sent.
"""

from __future__ import annotations

from typing import Any

from soulfra.errors import InputError, LineageError
from soulfra.meta.commands import AgentPossession, CrossInstanceCommunication
from soulfra.meta.god.context import GodContext
from soulfra.meta.results import LinkResult, MessageResult, PossessionResult, UnlinkResult
from soulfra.offload import off_loop

__all__ = ["communicate", "possess"]


async def possess(ctx: GodContext, command: AgentPossession) -> PossessionResult:
    instance = await ctx.running(command.instance)
    item: dict[str, Any] = {"type": command.action, "agent": command.agent}
    if command.action == "possess":
        item["operator"] = command.operator
    elif command.action == "act":
        item.update(command.act or {})
        item["type"], item["agent"] = "act", command.agent
    if command.agent not in instance.runtime.world.world.state.index:
        raise InputError(f"{command.instance} has no agent {command.agent!r}")
    ack = (await ctx.submit(instance, [item]))[0]
    return PossessionResult(instance=command.instance, agent=command.agent, action=command.action, ack=ack)


async def communicate(
    ctx: GodContext, command: CrossInstanceCommunication
) -> LinkResult | UnlinkResult | MessageResult:
    source, target = command.source, command.target
    links = ctx.store.instances
    if command.action == "link":

        def link() -> None:
            for end in (source, target):
                if len(links.links(end)) >= ctx.settings.max_links:
                    raise LineageError(f"{end} already has {ctx.settings.max_links} links, the most allowed")
            links.link(source, target)

        await off_loop(link)
        for end, other in ((source, target), (target, source)):
            await ctx.mark(end, "CROSS_INSTANCE_COMMUNICATION", {"link": other})
        return LinkResult(source=source, target=target, links=tuple(await off_loop(links.links, source)))
    if command.action == "unlink":
        removed = await off_loop(links.unlink, source, target)
        for end, other in ((source, target), (target, source)):
            await ctx.mark(end, "CROSS_INSTANCE_COMMUNICATION", {"unlink": other})
        return UnlinkResult(source=source, target=target, removed=removed)
    if target not in await off_loop(links.links, source):
        raise LineageError(f"{source} and {target} are not linked; link them first (action 'link')")
    speaker = (await ctx.running(source)).runtime.world.world.state
    if command.agent not in speaker.index:
        raise InputError(f"{source} has no agent {command.agent!r}")
    receiver = await ctx.running(target)
    origin = f"{source}/{command.agent}"
    if command.action == "whisper":
        item: dict[str, Any] = {
            "type": "whisper", "target": command.to, "text": f"{origin}: {command.text}", "tone": command.tone
        }  # fmt: skip
        if command.to != "*" and command.to not in receiver.runtime.world.world.state.index:
            raise InputError(f"{target} has no agent {command.to!r}")
    else:
        threads = receiver.runtime.world.world.state.threads
        if command.thread not in threads:
            raise InputError(f"thread {command.thread} is not open in {target} (open: {sorted(threads)})")
        item = {"type": "crosspost", "origin": origin, "thread": command.thread, "text": command.text}
    ack = (await ctx.submit(receiver, [item]))[0]
    await ctx.mark(source, "CROSS_INSTANCE_COMMUNICATION", {command.action: target, "agent": command.agent})
    return MessageResult(source=source, target=target, action=command.action, ack=ack)
