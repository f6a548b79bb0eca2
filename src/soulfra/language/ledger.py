"""What an instance's language minds did and cost, read back from its stored history: each agent's mind, its last
recorded replies and the prompt the last one answered (rebuilt from the state it was built from, and checked
against the digest the reply names), and the instance's model cost from its recorded replies. Blocking (it reads
the store and replays); read-only. Must not: call a model, or change a world."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from soulfra.durable import start_tick, state_at
from soulfra.errors import UnknownAgentError
from soulfra.language.prompt import build_prompt
from soulfra.store.ports import Store
from soulfra.world.inputs import FAILURES, MindReply, decision_to_json
from soulfra.world.minds.language import THINK_TICKS
from soulfra.world.model import WorldState

LAST = 5  # recorded replies shown per agent, newest first
OUTCOMES = ("reply", *FAILURES)


@dataclass(frozen=True, slots=True, kw_only=True)
class MindCall:
    """One recorded reply (or the failure that stood in for it), as the log holds it."""

    seq: int
    agent: str
    tick: int  # the tick it was due at (the agent acted on it, or fell back, then)
    model: str
    prompt: str  # the digest of the prompt it answered
    outcome: str
    reply: str
    decision: dict[str, Any] | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RebuiltPrompt:
    """The prompt of a recorded reply, rebuilt from the state at ``tick``; ``matches``: its digest is the one the
    reply names (False: no state from the thought's start to its due tick gives it, say a prompt built elsewhere)."""

    tick: int
    digest: str
    matches: bool
    messages: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MindCosts:
    """What an instance's recorded replies cost: calls by outcome, tokens, and latency (ms) over all of them."""

    calls: int
    outcomes: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    latency_mean_ms: float
    latency_p50_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentMind:
    """One agent's mind at the instance's durable head: ``mind`` is its built-in mind (what a language agent falls
    back to), ``model`` its model (None: no language agent), ``due`` the tick its pending thought is due at."""

    instance: str
    tick: int
    agent: str
    name: str
    mind: str
    model: str | None
    due: int | None
    calls: tuple[MindCall, ...]  # its last recorded replies, newest first
    prompt: RebuiltPrompt | None  # the prompt of the newest one (None: no reply, or its state is not held)
    costs: MindCosts  # the instance's


def recorded_calls(store: Store, instance_id: str) -> list[MindCall]:
    """Every reply recorded in the instance's own input log, oldest first."""
    return [
        MindCall(
            seq=s.seq,
            agent=s.input.agent,
            tick=s.tick,
            model=s.input.model,
            prompt=s.input.prompt,
            outcome=s.input.outcome,
            reply=s.input.reply,
            decision=None if s.input.decision is None else decision_to_json(s.input.decision),
            prompt_tokens=s.input.prompt_tokens,
            completion_tokens=s.input.completion_tokens,
            latency_ms=s.input.latency_ms,
        )
        for s in store.inputs.read(instance_id)
        if isinstance(s.input, MindReply)
    ]


def costs_of(calls: list[MindCall]) -> MindCosts:
    latencies = [call.latency_ms for call in calls]
    outcomes = dict.fromkeys(OUTCOMES, 0)
    for call in calls:
        outcomes[call.outcome] = outcomes.get(call.outcome, 0) + 1
    return MindCosts(
        calls=len(calls),
        outcomes=outcomes,
        prompt_tokens=sum(call.prompt_tokens for call in calls),
        completion_tokens=sum(call.completion_tokens for call in calls),
        latency_mean_ms=statistics.fmean(latencies) if latencies else 0.0,
        latency_p50_ms=float(statistics.median(latencies)) if latencies else 0.0,
    )


def instance_costs(store: Store, instance_id: str) -> MindCosts:
    """The model cost of ``instance_id`` from the replies its log holds (``NotFoundError``: no such instance)."""
    store.instances.get(instance_id)
    return costs_of(recorded_calls(store, instance_id))


def agent_mind(store: Store, instance_id: str, agent_id: str, *, last: int = LAST) -> AgentMind:
    """``agent_id``'s mind in ``instance_id`` at its durable head, its ``last`` recorded replies and the prompt of
    the newest; ``NotFoundError`` for an instance that does not exist, ``UnknownAgentError`` for an agent."""
    record = store.instances.get(instance_id)
    state = state_at(store, instance_id, record.head_tick)
    index = state.index.get(agent_id)
    if index is None:
        raise UnknownAgentError(f"instance {instance_id} has no agent {agent_id!r}")
    spec = state.specs[index]
    calls = recorded_calls(store, instance_id)
    mine = [call for call in calls if call.agent == agent_id]
    newest = mine[-last:][::-1] if last else []
    prompt = None
    if newest:
        prompt = rebuild_prompt(store, instance_id, index, newest[0], first=start_tick(record), head=state)
    due = state.thinking.get(index)
    return AgentMind(
        instance=instance_id, tick=state.tick, agent=spec.id, name=spec.name, mind=spec.mind, model=spec.model or None,
        due=due, calls=tuple(newest), prompt=prompt, costs=costs_of(calls),
    )  # fmt: skip


def rebuild_prompt(
    store: Store, instance_id: str, agent: int, call: MindCall, *, first: int, head: WorldState
) -> RebuiltPrompt | None:
    """The prompt ``call`` answered. The runtime builds it from the state after the tick the thought began at
    (``THINK_TICKS`` before its due tick), or, asking again after a restart, from a later one up to the due tick:
    each of those states is tried in turn until one gives the recorded digest."""
    candidates = [t for t in range(call.tick - THINK_TICKS + 1, call.tick + 1) if first <= t <= head.tick]
    fallback: RebuiltPrompt | None = None
    for tick in candidates:
        state = head if tick == head.tick else state_at(store, instance_id, tick)
        built = build_prompt(state, agent, call.tick)
        rebuilt = RebuiltPrompt(tick=tick, digest=built.digest, matches=built.digest == call.prompt,
                                messages=built.messages)  # fmt: skip
        if rebuilt.matches:
            return rebuilt
        fallback = fallback or rebuilt
    return fallback
