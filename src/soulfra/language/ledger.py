"""What an instance's language minds did and cost, read back from its stored history: each agent's mind, its last
recorded replies and the prompt the last one answered (rebuilt from the state it was built from, and checked
against the digest the reply names), and the instance's model cost from its recorded replies. Blocking (it reads
the store and replays); read-only. Must not: call a model, or change a world.

A ``MindLedger`` keeps a tally per instance and reads only the inputs appended since its last read (a live world's
log grows every tick: summing it whole took a second at 6,600 replies); a log that lost inputs meanwhile (a revert
moved them to a branch) is tallied again from its start."""

from __future__ import annotations

import statistics
import threading
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from soulfra.durable import start_tick, state_at
from soulfra.errors import UnknownAgentError
from soulfra.language.prompt import build_prompt
from soulfra.store.ports import Store, StoredInput
from soulfra.world.inputs import FAILURES, MindReply, decision_to_json
from soulfra.world.minds.language import THINK_TICKS
from soulfra.world.model import WorldState

LAST = 5  # recorded replies shown per agent, newest first
MAX_LAST = 20  # the most an agent's read may ask for (what a tally keeps per agent)
PAGE = 1000  # inputs read at a time
TALLIES = 32  # instances a ledger keeps a tally of (the least recently read go first)
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
    # the prompt of the newest one whose state is held (a reply is recorded for its due tick, which the durable head
    # may not have reached); None: no reply, or none of their states held
    prompt: RebuiltPrompt | None
    costs: MindCosts  # the instance's


def _call(stored: StoredInput) -> MindCall | None:
    item = stored.input
    if not isinstance(item, MindReply):
        return None
    return MindCall(
        seq=stored.seq, agent=item.agent, tick=stored.tick, model=item.model, prompt=item.prompt,
        outcome=item.outcome, reply=item.reply,
        decision=None if item.decision is None else decision_to_json(item.decision),
        prompt_tokens=item.prompt_tokens, completion_tokens=item.completion_tokens, latency_ms=item.latency_ms,
    )  # fmt: skip


def recorded_calls(store: Store, instance_id: str) -> list[MindCall]:
    """Every reply recorded in the instance's own input log, oldest first."""
    return [call for stored in store.inputs.read(instance_id) if (call := _call(stored)) is not None]


@dataclass(slots=True)
class _Tally:
    """The sums of one instance's recorded replies, and each agent's last ``MAX_LAST``, as of input ``last_seq``."""

    inputs: int = 0  # inputs of every kind read, to tell a log that lost some
    last_seq: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latencies: list[int] = field(default_factory=list)
    recent: dict[str, deque[MindCall]] = field(default_factory=dict)

    def add(self, call: MindCall) -> None:
        self.outcomes[call.outcome] += 1
        self.prompt_tokens += call.prompt_tokens
        self.completion_tokens += call.completion_tokens
        self.latencies.append(call.latency_ms)
        self.recent.setdefault(call.agent, deque(maxlen=MAX_LAST)).append(call)

    def costs(self) -> MindCosts:
        latencies = self.latencies
        return MindCosts(
            calls=len(latencies),
            outcomes={**dict.fromkeys(OUTCOMES, 0), **self.outcomes},
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            latency_mean_ms=statistics.fmean(latencies) if latencies else 0.0,
            latency_p50_ms=float(statistics.median(latencies)) if latencies else 0.0,
        )


def _read_after(store: Store, instance_id: str, seq: int) -> list[StoredInput]:
    rows: list[StoredInput] = []
    while page := store.inputs.page(instance_id, after_seq=seq, limit=PAGE):
        rows += page
        seq = page[-1].seq
        if len(page) < PAGE:
            break
    return rows


class MindLedger:
    """The model costs and recent replies of the instances of one store, kept up to date a read at a time (each
    read takes what was appended since the last). Thread-safe: reads run off the event loop."""

    def __init__(self) -> None:
        self._tallies: OrderedDict[str, _Tally] = OrderedDict()
        self._lock = threading.Lock()

    def _tally(self, store: Store, instance_id: str) -> _Tally:
        store.instances.get(instance_id)  # NotFoundError for no such instance
        with self._lock:
            tally = self._tallies.pop(instance_id, None) or _Tally()
            rows = _read_after(store, instance_id, tally.last_seq)
            if tally.inputs + len(rows) != store.inputs.count(instance_id):
                # inputs went (a revert moved them to a branch), or came between the two reads: read it all again
                tally, rows = _Tally(), _read_after(store, instance_id, 0)
            for stored in rows:
                tally.inputs += 1
                tally.last_seq = stored.seq
                if (call := _call(stored)) is not None:
                    tally.add(call)
            self._tallies[instance_id] = tally
            while len(self._tallies) > TALLIES:
                self._tallies.popitem(last=False)
            return tally

    def costs(self, store: Store, instance_id: str) -> MindCosts:
        """The model cost of ``instance_id`` from the replies its log holds (``NotFoundError``: no such instance)."""
        tally = self._tally(store, instance_id)
        with self._lock:
            return tally.costs()

    def agent(self, store: Store, instance_id: str, agent_id: str, *, last: int = LAST) -> AgentMind:
        """``agent_id``'s mind in ``instance_id`` at its durable head, its ``last`` (at most ``MAX_LAST``) recorded
        replies, newest first, and the prompt of the newest whose state is held; ``NotFoundError`` for an instance
        that does not exist, ``UnknownAgentError`` for an agent."""
        record = store.instances.get(instance_id)
        state = state_at(store, instance_id, record.head_tick)
        index = state.index.get(agent_id)
        if index is None:
            raise UnknownAgentError(f"instance {instance_id} has no agent {agent_id!r}")
        spec = state.specs[index]
        tally = self._tally(store, instance_id)
        with self._lock:
            costs = tally.costs()
            mine = list(tally.recent.get(agent_id, ()))
        newest = mine[::-1][: min(last, MAX_LAST)]
        prompt = None
        for call in newest:  # a reply recorded ahead of the durable head has no state held yet: the one before it
            prompt = rebuild_prompt(store, instance_id, index, call, first=start_tick(record), head=state)
            if prompt is not None:
                break
        return AgentMind(
            instance=instance_id, tick=state.tick, agent=spec.id, name=spec.name, mind=spec.mind,
            model=spec.model or None, due=state.thinking.get(index), calls=tuple(newest), prompt=prompt, costs=costs,
        )  # fmt: skip


def instance_costs(store: Store, instance_id: str) -> MindCosts:
    """The model cost of ``instance_id``, read whole (a ``MindLedger`` keeps it up to date instead)."""
    return MindLedger().costs(store, instance_id)


def agent_mind(store: Store, instance_id: str, agent_id: str, *, last: int = LAST) -> AgentMind:
    """``MindLedger.agent`` on a ledger of its own (the log read whole)."""
    return MindLedger().agent(store, instance_id, agent_id, last=last)


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
