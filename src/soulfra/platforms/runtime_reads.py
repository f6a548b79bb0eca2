"""The runtime's reads: what it serves of the world it runs (its view for the other platforms, agents, the
reflection reads, the input log, snapshots). None of them changes anything; each waits, as every read of the state
does, until a failed world's state is rebuilt (``_settled``). Mixed into ``RuntimePlatform``."""

from __future__ import annotations

from typing import Any

from soulfra.durable import DurableWorld
from soulfra.errors import InputError, NotFoundError, UnknownAgentError
from soulfra.offload import off_loop
from soulfra.platforms.base import int_field
from soulfra.projection import agent_briefs, agent_json, snapshot_json, vibe_to_json
from soulfra.reflection import agent_loop_json, loop_json, threads_json
from soulfra.world.inputs import input_to_json

__all__ = ["MAX_COMPACT_PAGE", "MAX_FULL_PAGE", "RuntimeReads"]

MAX_FULL_PAGE = 1000  # agents in one page of the full view (memories and affinities: about 1 KB each)
MAX_COMPACT_PAGE = 10_000  # agents in one page of the compact view (about 100 bytes each)


class RuntimeReads:
    """The read ops of ``RuntimePlatform``, which supplies the world, the instance id and ``_settled``."""

    world: DurableWorld
    instance_id: str

    async def _settled(self) -> None:
        raise NotImplementedError

    async def view(self, body: dict[str, Any]) -> dict[str, Any]:
        """What the runtime says of the shared domains, for the surface's start and the mirror's comparison."""
        await self._settled()
        state = self.world.world.state
        return {
            "tick": state.tick,
            "vibe": vibe_to_json(state.vibe),
            "possessed": {state.specs[i].id: operator for i, operator in sorted(state.possessed.items())},
            "agents": [{"id": spec.id, "name": spec.name} for spec in state.specs[:64]],
            "rituals": {str(r.id): r.stage for r in state.rituals.values()},
            "loop": state.loop.index,
            "agent_count": state.size,
        }

    async def agents(self, body: dict[str, Any]) -> dict[str, Any]:
        """A page of agents: ``view`` "full" (the default: every field, at most 1,000 a page) or "compact" (what a
        live canvas draws: id, name, mind, mood and energy, at most 10,000 a page)."""
        await self._settled()
        state = self.world.world.state
        view = body.get("view", "full")
        if view not in ("full", "compact"):
            raise InputError(f"'view' must be full or compact, not {view!r}")
        offset = int_field(body, "offset", 0, 0, 1 << 31)
        if view == "compact":
            limit = int_field(body, "limit", 100, 1, MAX_COMPACT_PAGE)
            rows = agent_briefs(state, offset, offset + limit)
        else:
            limit = int_field(body, "limit", 100, 1, MAX_FULL_PAGE)
            rows = [agent_json(state, i) for i in range(offset, min(state.size, offset + limit))]
        return {"tick": state.tick, "total": state.size, "offset": offset, "agents": rows}

    async def agent(self, body: dict[str, Any]) -> dict[str, Any]:
        await self._settled()
        state = self.world.world.state
        agent_id = body.get("agent")
        if not isinstance(agent_id, str) or agent_id not in state.index:
            raise UnknownAgentError(f"no agent {agent_id!r} in {self.instance_id}")
        return {"tick": state.tick, "agent": agent_json(state, state.index[agent_id])}

    async def agent_loop(self, body: dict[str, Any]) -> dict[str, Any]:
        """Each agent's phase in its loop (``soulfra.reflection.agent_phase``), counted, and a page of agents; or,
        with ``agent`` (an id), that agent alone (the page at its index)."""
        await self._settled()
        state = self.world.world.state
        agent_id = body.get("agent")
        if agent_id is not None:
            if not isinstance(agent_id, str) or agent_id not in state.index:
                raise UnknownAgentError(f"no agent {agent_id!r} in {self.instance_id}")
            return agent_loop_json(state, state.index[agent_id], 1)
        offset = int_field(body, "offset", 0, 0, 1 << 31)
        limit = int_field(body, "limit", 100, 1, 1000)
        return agent_loop_json(state, offset, limit)

    async def loop(self, body: dict[str, Any]) -> dict[str, Any]:
        """The loop under way and its phase."""
        await self._settled()
        return loop_json(self.world.world.state)

    async def threads(self, body: dict[str, Any]) -> dict[str, Any]:
        """The open threads, with how long each has been quiet."""
        await self._settled()
        return threads_json(self.world.world.state)

    async def inputs(self, body: dict[str, Any]) -> dict[str, Any]:
        after = int_field(body, "after", 0, 0, 1 << 62)
        limit = int_field(body, "limit", 100, 1, 1000)
        chosen = await off_loop(self.world.store.inputs.page, self.instance_id, after_seq=after, limit=limit)
        return {"inputs": [{"seq": s.seq, "tick": s.tick, "input": input_to_json(s.input)} for s in chosen]}

    async def snapshots(self, body: dict[str, Any]) -> dict[str, Any]:
        rows = await off_loop(self.world.store.snapshots.list_snapshots, self.instance_id)
        return {"snapshots": [snapshot_json(info) for info in rows]}

    async def snapshot_info(self, body: dict[str, Any]) -> dict[str, Any]:
        wanted = body.get("id")
        if isinstance(wanted, bool) or not isinstance(wanted, int):
            raise InputError("'id' must be a snapshot id (an integer)")
        info, state = await off_loop(self.world.store.snapshots.load, wanted)
        if info.instance_id != self.instance_id:
            raise NotFoundError(f"{self.instance_id} has no snapshot {wanted}")
        return {
            **snapshot_json(info),
            "agents": state.size,
            "loop": state.loop.index,
            "vibe": vibe_to_json(state.vibe),
        }
