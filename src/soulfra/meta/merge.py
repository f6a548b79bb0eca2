"""MERGE_INSTANCES: the three-way merge of two world states from their common ancestor, with a conflict report.

Every value follows one rule (``diff.three_way``); a conflict is resolved by its domain's policy and reported.
Pure and deterministic: no I/O, the inputs are never mutated and the result shares no mutable object with them.

Language agents: both sides must give each agent the same model (``spec.model``), or the merge is refused: a
merged agent would think with one model after replies recorded from another, and no policy can say which is its
own. Their pending thoughts (``state.thinking``) are merged as the ``agents`` domain's values (``_thinking``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal, TypeVar, get_args

import numpy as np

from soulfra.errors import InputError, MergeError
from soulfra.meta.diff import ABSENT, Side, gone, plain, three_way
from soulfra.world.daemons.thread_weaver import max_open
from soulfra.world.encoding import state_hash
from soulfra.world.model import AFFINITY_LIMIT, MEMORY_LIMIT, TRAITS, I64Array, LoopTrace, Thread, WorldState

__all__ = [
    "COUNTS",
    "DEFAULT_POLICIES",
    "DOMAINS",
    "POLICIES",
    "Conflict",
    "MergeResult",
    "Policy",
    "merge_states",
    "parse_policies",
]

Policy = Literal["ours", "theirs", "newest", "union", "mean"]
POLICIES: tuple[Policy, ...] = get_args(Policy)
DOMAINS = ("agents", "threads", "rituals", "tasks", "affinities", "vibe", "ledger", "loop")
# Moods and traits drift continuously, so a conflict there is best split down the middle; collections keep what
# both sides made; the vibe and the loop trace are readings of one moment, so the later reading wins.
DEFAULT_POLICIES: Mapping[str, Policy] = MappingProxyType(
    {"agents": "mean", "threads": "union", "rituals": "union", "tasks": "union", "affinities": "mean",
     "vibe": "newest", "ledger": "union", "loop": "newest"}
)  # fmt: skip
COUNTS = ("taken_from_ours", "taken_from_theirs", "conflicts", "renumbered", "trimmed")
_KINDS = {"threads": "thread", "rituals": "ritual", "tasks": "task"}
_STAMPS: dict[str, Callable[[Any], int]] = {"threads": lambda r: r.last, "rituals": lambda r: r.stage_tick}
K = TypeVar("K", int, str)
Combine = Callable[[Any, Any, Any], tuple[Any, int]]  # (base, ours, theirs) -> (merged value, entries trimmed)


@dataclass(frozen=True, slots=True, kw_only=True)
class Conflict:
    """One value changed differently on both sides, and how its domain's policy resolved it (JSON-friendly)."""

    domain: str
    entity: str
    field: str
    base: Any
    ours: Any
    theirs: Any
    policy: str  # the policy applied, e.g. "mean", or "mean→newest" where it fell back
    resolved: Any

    def to_json(self) -> dict[str, Any]:
        """The conflict as one JSON object."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeResult:
    """The merged state and the report: conflicts, the policies used, and what came from where."""

    state: WorldState
    conflicts: tuple[Conflict, ...]
    policies: Mapping[str, str]
    changes: Mapping[str, dict[str, int]]  # per domain, the counts named in ``COUNTS``
    renumbered: Mapping[str, Mapping[int, int]] = field(default_factory=dict)  # domain -> theirs' id -> new id

    def to_json(self) -> dict[str, Any]:
        """The merge report: everything but the state itself, which ``state_hash`` names."""
        return {
            "state_hash": state_hash(self.state),
            "policies": dict(self.policies),
            "changes": {domain: dict(counts) for domain, counts in self.changes.items()},
            "renumbered": {d: {str(k): v for k, v in ids.items()} for d, ids in self.renumbered.items()},
            "conflicts": [conflict.to_json() for conflict in self.conflicts],
        }


def parse_policies(obj: Mapping[str, str] | None) -> dict[str, Policy]:
    """A policy for every domain: the defaults, overridden by ``obj``; refuses unknown domains and policies."""
    policies = dict(DEFAULT_POLICIES)
    for domain, policy in (obj or {}).items():
        if domain not in DOMAINS:
            raise InputError(f"unknown merge domain {domain!r}; expected one of {', '.join(DOMAINS)}")
        if policy not in POLICIES:
            raise InputError(f"unknown merge policy {policy!r} for {domain}; expected one of {', '.join(POLICIES)}")
        policies[domain] = policy
    return policies


def merge_states(
    base: WorldState, ours: WorldState, theirs: WorldState, *, policies: Mapping[str, str] | None = None
) -> MergeResult:
    """Merge ``ours`` and ``theirs``, both descended from ``base``; raises ``MergeError`` for unrelated worlds."""
    _check_compatible(base, ours, theirs)
    return _Merger(base, ours, theirs, parse_policies(policies)).run()


def _check_compatible(base: WorldState, ours: WorldState, theirs: WorldState) -> None:
    for name, other in (("ours", ours), ("theirs", theirs)):
        if other.loop_length != base.loop_length:
            raise MergeError(f"{name} has loop length {other.loop_length}, the ancestor {base.loop_length}")
        if len(other.specs) != len(base.specs):
            raise MergeError(f"{name} has {len(other.specs)} agents, the ancestor {len(base.specs)}")
        for i, (a, b) in enumerate(zip(base.specs, other.specs, strict=True)):
            if a.model != b.model:
                raise MergeError(
                    f"agent {a.id!r} thinks with model {a.model or '(none)'!r} in the ancestor and "
                    f"{b.model or '(none)'!r} in {name}: a merge cannot choose an agent's model; merge worlds whose "
                    f"language agents share their models"
                )
            for key in ("id", "name", "mind", "voice", "goals"):
                if getattr(a, key) != getattr(b, key):
                    raise MergeError(
                        f"agent {i} differs in {key}: the ancestor has {getattr(a, key)!r}, "
                        f"{name} has {getattr(b, key)!r}"
                    )


def _memory_tick(entry: str) -> int:
    head = entry.split(":", 1)[0]
    return int(head) if head.lstrip("-").isdigit() else -1


def _union_memory(_base: Any, ours: tuple[str, ...], theirs: tuple[str, ...]) -> tuple[Any, int]:
    entries = sorted(set(ours) | set(theirs), key=lambda entry: (_memory_tick(entry), entry))
    return tuple(entries[-MEMORY_LIMIT:]), max(0, len(entries) - MEMORY_LIMIT)


def _union_counter(base: Any, ours: int, theirs: int) -> tuple[Any, int]:
    start = 0 if gone(base) else int(base)
    return start + (ours - start) + (theirs - start), 0


class _Merger:
    def __init__(self, base: WorldState, ours: WorldState, theirs: WorldState, policies: dict[str, Policy]) -> None:
        self.base, self.ours, self.theirs = base, ours, theirs
        self.policies = policies
        self.ids = [spec.id for spec in ours.specs]
        self.ours_later = ours.tick >= theirs.tick  # "newest" when entities carry no tick of their own
        self.conflicts: list[Conflict] = []
        self.changes = {domain: dict.fromkeys(COUNTS, 0) for domain in DOMAINS}
        self.renumbered: dict[str, dict[int, int]] = {}
        self.fresh: dict[str, int] = {}

    def run(self) -> MergeResult:
        b, o, t = self.base, self.ours, self.theirs
        agent = self._agent_label
        whisper_tick: Callable[[Any], int] = lambda w: w[0]  # noqa: E731
        memory_tick: Callable[[Any], int] = lambda m: _memory_tick(m[-1]) if m else -1  # noqa: E731
        threads = self._records("threads", b.threads, o.threads, t.threads)
        self._trim_threads(threads)
        tick = self._settle(b.tick, o.tick, t.tick, max(o.tick, t.tick))
        state = WorldState(
            seed=self._settle(b.seed, o.seed, t.seed, o.seed),
            tick=tick,
            loop_length=o.loop_length,
            specs=o.specs,
            traits=self._array("traits"),
            valence=self._array("valence"),
            arousal=self._array("arousal"),
            energy=self._array("energy"),
            focus=self._array("focus"),
            possessed=self._keyed("agents", b.possessed, o.possessed, t.possessed, agent("possessed")),
            whispers=self._keyed("agents", b.whispers, o.whispers, t.whispers, agent("whisper"), stamp=whisper_tick),
            memory=self._keyed(
                "agents", b.memory, o.memory, t.memory, agent("memory"), stamp=memory_tick, union=_union_memory
            ),
            affinity=self._affinity(),
            threads=threads,
            rituals=self._records("rituals", b.rituals, o.rituals, t.rituals),
            tasks=self._records("tasks", b.tasks, o.tasks, t.tasks),
            ledger=self._keyed("ledger", b.ledger, o.ledger, t.ledger, lambda k: (k, "value"), union=_union_counter),
            next_id=self._next_id(),
            loop=self._loop(),
            pending_seed=self.pick("loop", "pending_seed", "*", b.pending_seed, o.pending_seed, t.pending_seed),
            vibe=self.pick("vibe", "vibe", "*", b.vibe, o.vibe, t.vibe),
            vibe_history=self.pick("vibe", "vibe_history", "*", b.vibe_history, o.vibe_history, t.vibe_history),
            vibe_override=self.pick("vibe", "vibe_override", "*", b.vibe_override, o.vibe_override, t.vibe_override),
            thinking=self._thinking(tick),
        )
        return MergeResult(
            state=state,
            conflicts=tuple(sorted(self.conflicts, key=lambda c: DOMAINS.index(c.domain))),
            policies=dict(self.policies),
            changes=self.changes,
            renumbered=self.renumbered,
        )

    # -- the rule and the policies ----------------------------------------------------------------------------

    def pick(
        self, domain: str, entity: str, name: str, base: Any, ours: Any, theirs: Any,
        *, ours_newer: bool | None = None, union: Combine | None = None, mean: bool = True,
    ) -> Any:  # fmt: skip
        """The three-way rule for one value; a conflict goes to the domain's policy and into the report. ``mean``:
        whether two ints may be split down the middle (not a tick: "mean" gives way to "newest" there)."""
        side = three_way(base, ours, theirs)
        if side is Side.BOTH:
            return ours
        if side is not Side.CONFLICT:
            self.changes[domain][f"taken_from_{side.value}"] += 1
            return ours if side is Side.OURS else theirs
        policy = self.policies[domain]
        label: str = policy
        trimmed = 0
        if policy in ("ours", "theirs"):
            value = ours if policy == "ours" else theirs
        elif gone(ours) or gone(theirs):  # deleted on one side, changed on the other: keep the change
            value = theirs if gone(ours) else ours
            label = "mean→newest" if policy == "mean" else policy
        elif policy == "mean" and mean and _is_int(ours) and _is_int(theirs):
            value = (int(ours) + int(theirs)) // 2
        elif policy == "union" and union is not None:
            value, trimmed = union(base, ours, theirs)
            label = f"union, {trimmed} trimmed to the limit" if trimmed else "union"
        else:
            label = "newest" if policy == "newest" else f"{policy}→newest"
            value = ours if (self.ours_later if ours_newer is None else ours_newer) else theirs
        self.changes[domain]["conflicts"] += 1
        self.changes[domain]["trimmed"] += trimmed
        self.conflicts.append(
            Conflict(
                domain=domain, entity=entity, field=name, base=plain(base), ours=plain(ours), theirs=plain(theirs),
                policy=label, resolved=plain(value),
            )
        )  # fmt: skip
        return value

    def newer(self, ours_stamp: int, theirs_stamp: int) -> bool:
        """Whether ours changed later: by the entities' own ticks, then by the states' ticks; ties go to ours."""
        return ours_stamp > theirs_stamp if ours_stamp != theirs_stamp else self.ours_later

    @staticmethod
    def _settle(base: Any, ours: Any, theirs: Any, on_conflict: Any) -> Any:
        """The rule for bookkeeping values (seed, tick, id counters): a conflict has one right answer, unreported."""
        side = three_way(base, ours, theirs)
        return theirs if side is Side.THEIRS else on_conflict if side is Side.CONFLICT else ours

    # -- the domains ------------------------------------------------------------------------------------------

    def _agent_label(self, name: str) -> Callable[[int], tuple[str, str]]:
        return lambda agent: (self.ids[agent], name)

    def _array(self, name: str) -> I64Array:
        b, o, t = (getattr(state, name) for state in (self.base, self.ours, self.theirs))
        merged: I64Array = np.where(o == b, t, o).astype(np.int64)  # a new array; conflicts are fixed below
        counts = self.changes["agents"]
        counts["taken_from_ours"] += int(((o != b) & (t == b)).sum())
        counts["taken_from_theirs"] += int(((o == b) & (t != b)).sum())
        for index in np.argwhere((o != t) & (o != b) & (t != b)):
            at = tuple(int(i) for i in index)
            label = TRAITS[at[1]] if len(at) == 2 else name
            merged[at] = self.pick("agents", self.ids[at[0]], label, int(b[at]), int(o[at]), int(t[at]))
        return merged

    def _keyed(
        self, domain: str, base: Mapping[K, Any], ours: Mapping[K, Any], theirs: Mapping[K, Any],
        label: Callable[[K], tuple[str, str]], *, stamp: Callable[[Any], int] | None = None,
        union: Combine | None = None,
    ) -> dict[K, Any]:  # fmt: skip
        merged: dict[K, Any] = {}
        for key in sorted(set(base) | set(ours) | set(theirs)):
            b, o, t = base.get(key, ABSENT), ours.get(key, ABSENT), theirs.get(key, ABSENT)
            newer = None if stamp is None or gone(o) or gone(t) else self.newer(stamp(o), stamp(t))
            entity, name = label(key)
            value = self.pick(domain, entity, name, b, o, t, ours_newer=newer, union=union)
            if value is not ABSENT:
                merged[key] = value
        return merged

    def _thinking(self, tick: int) -> dict[int, int]:
        """The language agents' pending thoughts (agent -> the tick its reply is due at) in the merged world.

        Each agent's thought follows the three-way rule like its other values: a thought only one side started is
        kept, one only one side finished is gone; both sides thinking, due at different ticks, is a conflict that
        the ``agents`` policy resolves (``ours``/``theirs``; otherwise the newer thought, the later due tick: a
        due tick has no mean). A thought due before the merged ``tick`` is dropped (counted as trimmed): its tick
        is gone, and the world would have the agent act on it late.

        Why kept, and not dropped so every agent starts afresh: an agent thinking on the side it comes from is in
        the middle of its turn; dropping the thought would skip that turn, and a merge of a world with itself
        would not give that world back. A kept thought is asked again: the merged world's log starts empty, so
        its runtime asks the model for it from the merged state, into the merged instance's own log, as a fork
        asks for the thoughts pending at its fork tick. The parents' replies answered prompts built from their
        own states; they stay in the parents' logs, and replay, verify and export of the merge never need them."""
        base, ours, theirs = self.base.thinking, self.ours.thinking, self.theirs.thinking
        merged: dict[int, int] = {}
        for agent in sorted(set(base) | set(ours) | set(theirs)):
            values = [side.get(agent, ABSENT) for side in (base, ours, theirs)]
            o, t = ours.get(agent), theirs.get(agent)
            newer = None if o is None or t is None else o > t
            due = self.pick("agents", self.ids[agent], "thinking", *values, ours_newer=newer, mean=False)
            if due is ABSENT:
                continue
            if due < tick:
                self.changes["agents"]["trimmed"] += 1
                continue
            merged[agent] = due
        return merged

    def _affinity(self) -> dict[int, dict[int, int]]:
        base, ours, theirs = self.base.affinity, self.ours.affinity, self.theirs.affinity
        merged: dict[int, dict[int, int]] = {}
        for agent in sorted(set(base) | set(ours) | set(theirs)):
            b, o, t = base.get(agent), ours.get(agent), theirs.get(agent)
            row = self._keyed("affinities", b or {}, o or {}, t or {}, self._pair_label(agent))
            present = self._settle(b is not None, o is not None, t is not None, True)
            while len(row) > AFFINITY_LIMIT:  # as the world does: the weakest tie goes, ties to the highest id
                weakest = min(row.values())
                del row[max(key for key, value in row.items() if value == weakest)]
                self.changes["affinities"]["trimmed"] += 1
            if row or present:
                merged[agent] = row
        return merged

    def _pair_label(self, agent: int) -> Callable[[int], tuple[str, str]]:
        return lambda other: (self.ids[agent], self.ids[other])

    def _records(
        self, domain: str, base: dict[int, Any], ours: dict[int, Any], theirs: dict[int, Any]
    ) -> dict[int, Any]:
        """Threads, rituals or tasks: an id both sides allocated for different entities is renumbered on theirs."""
        kind = _KINDS[domain]
        fresh = max([self.ours.next_id.get(kind, 1), self.theirs.next_id.get(kind, 1), *(k + 1 for k in ours)])
        fresh = max([fresh, *(k + 1 for k in theirs)])
        mapping: dict[int, int] = {}
        for key in sorted((set(ours) & set(theirs)) - set(base)):
            if ours[key] != theirs[key]:
                mapping[key], fresh = fresh, fresh + 1
        if mapping:
            self.renumbered[domain] = mapping
            self.fresh[kind] = fresh
            self.changes[domain]["renumbered"] = len(mapping)
            theirs = {mapping.get(key, key): _renumber(record, mapping) for key, record in theirs.items()}
        stamp = _STAMPS.get(domain)
        merged: dict[int, Any] = {}
        for key in sorted(set(base) | set(ours) | set(theirs)):
            b, o, t = base.get(key, ABSENT), ours.get(key, ABSENT), theirs.get(key, ABSENT)
            if three_way(b, o, t) is not Side.CONFLICT or gone(o) or gone(t):
                value = self.pick(domain, str(key), "*", b, o, t)
            else:  # changed on both sides: field by field, as git merges the hunks of one file
                newer = None if stamp is None else self.newer(stamp(o), stamp(t))
                value = type(o)(**{
                    f.name: self.pick(domain, str(key), f.name, getattr(b, f.name), getattr(o, f.name),
                                      getattr(t, f.name), ours_newer=newer)
                    for f in dataclasses.fields(o)
                })  # fmt: skip
            if value is not ABSENT:
                merged[key] = value
        return merged

    def _trim_threads(self, threads: dict[int, Thread]) -> None:
        """Keep the world's bound on open threads, closing the stalest first, as the weaver does."""
        limit = max_open(self.ours)
        while len(threads) > limit:
            del threads[min(threads.values(), key=lambda thread: (thread.last, thread.id)).id]
            self.changes["threads"]["trimmed"] += 1

    def _next_id(self) -> dict[str, int]:
        base, ours, theirs = self.base.next_id, self.ours.next_id, self.theirs.next_id
        merged: dict[str, int] = {}
        for kind in sorted(set(base) | set(ours) | set(theirs)):
            b, o, t = base.get(kind, 1), ours.get(kind, 1), theirs.get(kind, 1)
            merged[kind] = self._settle(b, o, t, max(o, t))  # an id once handed out is never handed out again
        for kind, fresh in sorted(self.fresh.items()):
            merged[kind] = max(merged.get(kind, 1), fresh)
        return merged

    def _loop(self) -> LoopTrace:
        b, o, t = self.base.loop, self.ours.loop, self.theirs.loop
        if o.index != t.index:  # the sides are in different loops: one loop's trace, whole
            chosen: LoopTrace = self.pick("loop", "loop", "*", b, o, t)
            return replace(chosen, topics=dict(chosen.topics))
        values = {
            f.name: self.pick("loop", "loop", f.name, getattr(b, f.name), getattr(o, f.name), getattr(t, f.name))
            for f in dataclasses.fields(LoopTrace)
            if f.name != "topics"
        }
        topics = self._keyed("loop", b.topics, o.topics, t.topics, lambda topic: ("loop", f"topics.{topic}"))
        return LoopTrace(**values, topics=topics)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _renumber(record: Any, mapping: dict[int, int]) -> Any:
    """Theirs' record under its new id. ``woven`` is the model's only id reference; it names closed threads, so
    it rarely moves, but where it names a renumbered one it follows it."""
    changes: dict[str, Any] = {}
    if record.id in mapping:
        changes["id"] = mapping[record.id]
    if isinstance(record, Thread) and any(woven in mapping for woven in record.woven):
        changes["woven"] = tuple(mapping.get(woven, woven) for woven in record.woven)
    return replace(record, **changes) if changes else record
