"""PermissionValidator: the protocol's rule set, checked against snapshots, instances, inputs, forks and exports.

Every rule that applies is run and every violation is returned; nothing stops at the first. Reading what a rule
needs (a snapshot, the lineage) goes through the storage ports; the validator itself changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Any

from soulfra.errors import (
    CodecError,
    HistoryIntegrityError,
    InputError,
    LicenceError,
    NotFoundError,
)
from soulfra.store.ports import InstanceRecord, Store
from soulfra.world.model import WorldState

__all__ = [
    "Licence", "PermissionValidator", "RuleSet", "ValidationResult", "Violation", "enforce", "rules_for",
]  # fmt: skip

SUBJECTS: tuple[str, ...] = ("snapshot", "instance", "input", "fork", "export", "state")
RULES = frozenset({"snapshot-hash", "lineage", "agent-limit", "required-agents", "input-size", "licence"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Licence:
    """Licence terms an instance is run under: may it be forked or exported, and how many forks it may have."""

    fork: bool = True
    export: bool = True
    max_forks: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleSet:
    """The configurable rules. ``rules`` names the ones switched on (all, by default)."""

    max_agents: int = 100_000
    required_agents: tuple[str, ...] = ("cal-riven", "arty", "agent-zero")
    max_input_bytes: int = 4096
    max_lineage_depth: int = 64
    licence: Licence = field(default_factory=Licence)
    rules: frozenset[str] = RULES

    @classmethod
    def from_json(cls, body: dict[str, Any], *, base: RuleSet | None = None) -> RuleSet:
        """Rules from JSON (as ``to_json`` writes them); what ``body`` leaves out comes from ``base`` (the
        defaults if None). InputError naming what is wrong."""
        start = base or cls()
        if not isinstance(body, dict):
            raise InputError("bad protocol rules: expected a JSON object")
        try:
            licence_body = body.get("licence", {})
            if not isinstance(licence_body, dict):
                raise TypeError("'licence' must be an object")
            licence = replace(start.licence, **licence_body)
            rest = {k: v for k, v in body.items() if k != "licence"}
            if "required_agents" in rest:
                rest["required_agents"] = tuple(rest["required_agents"])
            if "rules" in rest:
                rest["rules"] = frozenset(rest["rules"])
            made = replace(start, licence=licence, **rest)
        except TypeError as exc:
            raise InputError(f"bad protocol rules: {exc}") from None
        made.check()
        return made

    def check(self) -> None:
        """InputError unless every value has its type and range and every rule named is known."""
        ints = {"max_agents": self.max_agents, "max_input_bytes": self.max_input_bytes,
                "max_lineage_depth": self.max_lineage_depth}  # fmt: skip
        for name, value in ints.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InputError(f"bad protocol rules: {name} must be a whole number of 0 or more")
        if not all(isinstance(a, str) for a in self.required_agents):
            raise InputError("bad protocol rules: required_agents must be a list of agent ids")
        unknown = sorted(str(r) for r in self.rules - RULES)
        if unknown:
            raise InputError(f"bad protocol rules: unknown rule {unknown[0]!r}; known: {', '.join(sorted(RULES))}")
        licence = self.licence
        if not isinstance(licence.fork, bool) or not isinstance(licence.export, bool):
            raise InputError("bad protocol rules: licence.fork and licence.export must be true or false")
        if licence.max_forks is not None and (
            not isinstance(licence.max_forks, int) or isinstance(licence.max_forks, bool) or licence.max_forks < 0
        ):
            raise InputError("bad protocol rules: licence.max_forks must be a whole number of 0 or more, or null")

    def to_json(self) -> dict[str, Any]:
        return {
            "max_agents": self.max_agents,
            "required_agents": list(self.required_agents),
            "max_input_bytes": self.max_input_bytes,
            "max_lineage_depth": self.max_lineage_depth,
            "licence": {"fork": self.licence.fork, "export": self.licence.export, "max_forks": self.licence.max_forks},
            "rules": sorted(self.rules),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation:
    rule: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "detail": self.detail}


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationResult:
    subject: str
    checked: tuple[str, ...]
    violations: tuple[Violation, ...]

    @property
    def valid(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "valid": self.valid,
            "checked": list(self.checked),
            "violations": [v.to_json() for v in self.violations],
        }


class PermissionValidator:
    def __init__(self, rules: RuleSet, store: Store | None = None) -> None:
        self.rules = rules
        self.store = store

    def validate(self, subject: str, instance_id: str, body: dict[str, Any]) -> ValidationResult:
        """Run every enabled rule that applies to ``subject`` (one of ``SUBJECTS``)."""
        checks: dict[str, list[tuple[str, Callable[[str, dict[str, Any]], list[str]]]]] = {
            "snapshot": [("snapshot-hash", self._snapshot_hash), ("agent-limit", self._snapshot_agents),
                         ("required-agents", self._snapshot_required)],
            "instance": [("lineage", self._lineage)],
            "input": [("input-size", self._input_size)],
            "fork": [("licence", self._licence_fork), ("lineage", self._lineage)],
            "export": [("licence", self._licence_export)],
            "state": [("agent-limit", self._state_agents), ("required-agents", self._state_required)],
        }  # fmt: skip
        if subject not in checks:
            raise InputError(f"unknown validation subject {subject!r}; expected one of {', '.join(SUBJECTS)}")
        checked: list[str] = []
        violations: list[Violation] = []
        for rule, check in checks[subject]:
            if rule not in self.rules.rules:
                continue
            checked.append(rule)
            violations.extend(Violation(rule=rule, detail=d) for d in check(instance_id, body))
        return ValidationResult(subject=subject, checked=tuple(checked), violations=tuple(violations))

    def validate_state(self, state: WorldState) -> ValidationResult:
        return self.validate("state", "", {"_state": state})

    def validate_agents(self, agents: Collection[str]) -> ValidationResult:
        """``validate_state`` for a state of which only the agent ids are at hand (``encoding.state_agents``)."""
        return self.validate("state", "", {"_agents": agents})

    # -- rules: each returns the details of its violations --------------------------------------------------------

    def _need_store(self) -> Store:
        if self.store is None:
            raise InputError("this protocol platform has no database to check snapshots and lineage against")
        return self.store

    def _load_snapshot(self, instance_id: str, body: dict[str, Any]) -> WorldState | str:
        store = self._need_store()
        tick, snapshot_id = body.get("tick"), body.get("snapshot")
        try:
            if isinstance(snapshot_id, int) and not isinstance(snapshot_id, bool):
                info, state = store.snapshots.load(snapshot_id)
                if info.instance_id != instance_id:
                    return f"snapshot {snapshot_id} belongs to {info.instance_id}, not {instance_id}"
                return state
            if isinstance(tick, int) and not isinstance(tick, bool):
                found = store.snapshots.nearest(instance_id, tick)
                if found is None or found.tick != tick:
                    return f"{instance_id} has no snapshot at tick {tick}"
                return store.snapshots.load(found.id)[1]
        except (
            HistoryIntegrityError,
            CodecError,
            NotFoundError,
        ) as exc:  # a corrupt or missing snapshot is a violation
            return exc.detail
        raise InputError("a snapshot is named by 'snapshot' (its id) or 'tick'")

    def _snapshot_hash(self, instance_id: str, body: dict[str, Any]) -> list[str]:
        loaded = self._load_snapshot(instance_id, body)
        body["_state"] = loaded
        return [loaded] if isinstance(loaded, str) else []

    def _snapshot_agents(self, instance_id: str, body: dict[str, Any]) -> list[str]:
        state = body.get("_state")
        return self._state_agents(instance_id, body) if isinstance(state, WorldState) else []

    def _snapshot_required(self, instance_id: str, body: dict[str, Any]) -> list[str]:
        state = body.get("_state")
        return self._state_required(instance_id, body) if isinstance(state, WorldState) else []

    def _state_agents(self, instance_id: str, body: dict[str, Any]) -> list[str]:
        size = len(_agent_ids(body))
        if size > self.rules.max_agents:
            return [f"{size} agents, more than the limit of {self.rules.max_agents}"]
        return []

    def _state_required(self, instance_id: str, body: dict[str, Any]) -> list[str]:
        ids = _agent_ids(body)
        return [f"required agent {name!r} is missing" for name in self.rules.required_agents if name not in ids]

    def _input_size(self, instance_id: str, body: dict[str, Any]) -> list[str]:
        item = body.get("input")
        size = len(json.dumps(item, separators=(",", ":")).encode())
        if size > self.rules.max_input_bytes:
            return [f"input is {size} bytes, more than the limit of {self.rules.max_input_bytes}"]
        return []

    def _lineage(self, instance_id: str, body: dict[str, Any]) -> list[str]:
        store = self._need_store()
        problems: list[str] = []
        seen: set[str] = set()
        try:
            record: InstanceRecord | None = store.instances.get(instance_id)
        except NotFoundError as exc:
            return [exc.detail]
        depth = 0
        while record is not None and record.parent_id is not None:
            if record.id in seen:
                return [*problems, f"lineage of {instance_id} has a cycle through {record.id}"]
            seen.add(record.id)
            depth += 1
            if depth > self.rules.max_lineage_depth:
                return [*problems, f"lineage of {instance_id} is deeper than {self.rules.max_lineage_depth}"]
            try:
                parent = store.instances.get(record.parent_id)
            except NotFoundError:
                return [*problems, f"{record.id} names parent {record.parent_id}, which does not exist"]
            if record.fork_tick is not None and record.fork_tick > parent.head_tick:
                problems.append(f"{record.id} forks {parent.id} at tick {record.fork_tick}, past its head")
            record = parent
        return problems

    def _forks_of(self, instance_id: str) -> int:
        store = self._need_store()
        return sum(1 for r in store.instances.list_instances() if r.parent_id == instance_id)

    def _licence_fork(self, instance_id: str, body: dict[str, Any]) -> list[str]:
        licence = self.rules.licence
        if not licence.fork:
            return [f"the licence of {instance_id} does not allow forks"]
        more = body.get("count", 1)
        more = more if isinstance(more, int) and not isinstance(more, bool) and more > 0 else 1
        if licence.max_forks is not None and self._forks_of(instance_id) + more > licence.max_forks:
            have = self._forks_of(instance_id)
            return [f"the licence of {instance_id} allows at most {licence.max_forks} forks; it has {have}"]
        return []

    def _licence_export(self, instance_id: str, body: dict[str, Any]) -> list[str]:
        if not self.rules.licence.export:
            return [f"the licence of {instance_id} does not allow export"]
        return []


def _agent_ids(body: dict[str, Any]) -> Collection[str]:
    """The agent ids of the state a body names: given alone (``_agents``), or those of its ``_state``."""
    agents: Collection[str] | None = body.get("_agents")
    if agents is not None:
        return agents
    state: WorldState = body["_state"]
    return state.index


def rules_for(store: Store, instance_id: str, default: RuleSet | None = None) -> RuleSet:
    """The rules ``instance_id`` runs under: those an admin set for it, over ``default`` (the server's)."""
    stored = store.instances.rules(instance_id)
    base = default or RuleSet()
    return base if stored is None else RuleSet.from_json(stored, base=base)


def enforce(store: Store, instance_id: str, subject: str, default: RuleSet | None = None, *, count: int = 1) -> RuleSet:
    """Refuse what ``instance_id``'s licence forbids for ``subject`` (``fork`` for clone, fork and merge, making
    ``count`` children; ``export``): LicenceError (403) naming the rule. Returns the rules it checked. (Its other
    rules are about content, and are checked where content arrives: validation, import.)"""
    rules = rules_for(store, instance_id, default)
    if "licence" in rules.rules:
        validator = PermissionValidator(rules, store)
        check = validator._licence_fork if subject == "fork" else validator._licence_export
        refused = check(instance_id, {"count": count})
        if refused:
            raise LicenceError(f"refused by rule 'licence': {'; '.join(refused)}")
    return rules
