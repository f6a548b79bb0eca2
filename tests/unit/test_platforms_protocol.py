"""The protocol platform's rules (PermissionValidator): agent limits, required agents, snapshot hashes, input size,
the licence and lineage, checked directly and over the bus."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import replace
from typing import Any, cast

import pytest

from soulfra.errors import (
    NotFoundError,
)
from soulfra.platforms.protocol import RECENT_VIOLATIONS
from soulfra.security.permissions import Licence, PermissionValidator, RuleSet
from soulfra.store import InMemoryStore, InstanceRecord
from soulfra.store.ports import Store
from soulfra.world import DEFAULT_WORLD, World

from .platforms_support import Running

# -- protocol rules ----------------------------------------------------------------------------------------------


def _created(store: Store, instance_id: str = "w") -> int:
    world = World.create(0, DEFAULT_WORLD)
    store.instances.create(InstanceRecord(id=instance_id, name="default", seed=0, genesis_hash=world.state_hash()))
    return store.snapshots.save(instance_id, world.state, "genesis").id


def _rules(result: Any) -> list[str]:
    return [v.rule for v in result.violations]


def test_protocol_agent_limit_and_required_agents_are_both_listed(store: Store) -> None:
    snapshot = _created(store)
    assert PermissionValidator(RuleSet(), store).validate("snapshot", "w", {"snapshot": snapshot}).valid
    strict = PermissionValidator(RuleSet(max_agents=2, required_agents=("arty", "nobody", "ghost")), store)
    result = strict.validate("snapshot", "w", {"snapshot": snapshot})
    assert result.checked == ("snapshot-hash", "agent-limit", "required-agents")
    assert _rules(result) == ["agent-limit", "required-agents", "required-agents"]
    assert "3 agents" in result.violations[0].detail
    assert {v.detail for v in result.violations[1:]} == {
        "required agent 'nobody' is missing",
        "required agent 'ghost' is missing",
    }
    by_tick = strict.validate("snapshot", "w", {"tick": 0})
    assert _rules(by_tick) == _rules(result)
    assert _rules(strict.validate("snapshot", "w", {"tick": 5})) == ["snapshot-hash"]


def test_protocol_checks_agent_ids_alone_as_it_checks_the_state_they_come_from(store: Store) -> None:
    state = store.snapshots.load(_created(store))[1]
    strict = PermissionValidator(RuleSet(max_agents=2, required_agents=("arty", "nobody")), store)
    by_state, by_ids = strict.validate_state(state), strict.validate_agents(tuple(s.id for s in state.specs))
    assert by_ids == by_state
    assert _rules(by_ids) == ["agent-limit", "required-agents"]


def test_protocol_a_tampered_snapshot_is_a_hash_violation(store: InMemoryStore) -> None:
    snapshot = _created(store)
    with store.database.edit() as tables:
        row = tables.snapshots[snapshot]
        tables.snapshots[snapshot] = replace(row, info=replace(row.info, state_hash="b2:" + "0" * 64))
    fresh = InMemoryStore(store.database)
    try:
        result = PermissionValidator(RuleSet(max_agents=1), fresh).validate("snapshot", "w", {"snapshot": snapshot})
    finally:
        fresh.close()
    assert _rules(result) == ["snapshot-hash"]
    assert "does not match its stored hash" in result.violations[0].detail
    assert not result.valid


def test_protocol_a_corrupt_snapshot_blob_is_a_hash_violation_not_a_crash(store: InMemoryStore) -> None:
    snapshot = _created(store)
    with store.database.edit() as tables:
        tables.snapshots[snapshot] = replace(tables.snapshots[snapshot], data=b"\x00not a blob" * 8)
    fresh = InMemoryStore(store.database)
    try:
        result = PermissionValidator(RuleSet(), fresh).validate("snapshot", "w", {"snapshot": snapshot})
    finally:
        fresh.close()
    assert _rules(result) == ["snapshot-hash"]
    assert not result.valid


def test_protocol_input_size(store: Store) -> None:
    validator = PermissionValidator(RuleSet(max_input_bytes=80), store)
    small = {"type": "whisper", "target": "*", "text": "hi"}
    big = {"type": "whisper", "target": "*", "text": "x" * 200}
    assert validator.validate("input", "w", {"input": small}).valid
    result = validator.validate("input", "w", {"input": big})
    assert _rules(result) == ["input-size"]
    assert "more than the limit of 80" in result.violations[0].detail


def test_protocol_licence_forbids_fork_and_export(store: Store) -> None:
    _created(store)
    closed = PermissionValidator(RuleSet(licence=Licence(fork=False, export=False)), store)
    assert _rules(closed.validate("fork", "w", {})) == ["licence"]
    assert _rules(closed.validate("export", "w", {})) == ["licence"]
    world = World.create(0, DEFAULT_WORLD)
    store.instances.create(
        InstanceRecord(id="w-fork", name="default", seed=0, genesis_hash=world.state_hash(), parent_id="w", fork_tick=0)
    )
    one_fork = PermissionValidator(RuleSet(licence=Licence(max_forks=1)), store)
    result = one_fork.validate("fork", "w", {})
    assert _rules(result) == ["licence"]
    assert "at most 1 forks" in result.violations[0].detail
    assert PermissionValidator(RuleSet(licence=Licence(max_forks=2)), store).validate("fork", "w", {}).valid
    assert PermissionValidator(RuleSet(), store).validate("instance", "w-fork", {}).valid


class _Catalog:
    """Instances as a database with a dangling parent reference would hold them (SQL foreign keys forbid it)."""

    def __init__(self, records: list[InstanceRecord]) -> None:
        self.records = {r.id: r for r in records}

    def get(self, instance_id: str) -> InstanceRecord:
        if instance_id not in self.records:
            raise NotFoundError(f"no instance {instance_id!r} in this database")
        return self.records[instance_id]

    def list_instances(self, ids: Collection[str] | None = None) -> list[InstanceRecord]:
        return [record for key, record in self.records.items() if ids is None or key in ids]


class _LineageStore:
    def __init__(self, records: list[InstanceRecord]) -> None:
        self.instances = _Catalog(records)


def test_protocol_lineage_with_a_missing_parent_lists_every_violation() -> None:
    records = [
        InstanceRecord(id="child", name="d", seed=0, genesis_hash="h", parent_id="mid", fork_tick=50),
        InstanceRecord(id="mid", name="d", seed=0, genesis_hash="h", parent_id="ghost", fork_tick=1, head_tick=10),
    ]
    store = cast(Store, _LineageStore(records))
    result = PermissionValidator(RuleSet(), store).validate("instance", "child", {})
    assert _rules(result) == ["lineage", "lineage"]
    assert result.violations[0].detail == "child forks mid at tick 50, past its head"
    assert result.violations[1].detail == "mid names parent ghost, which does not exist"
    closed = PermissionValidator(RuleSet(licence=Licence(fork=False)), store)
    assert _rules(closed.validate("fork", "child", {})) == ["licence", "lineage", "lineage"]
    assert _rules(closed.validate("instance", "nobody", {})) == ["lineage"]


@pytest.mark.anyio
async def test_protocol_validates_over_the_bus(make: Callable[..., Awaitable[Running]]) -> None:
    run = await make(rules=RuleSet(max_agents=1, licence=Licence(export=False)))
    snapshot = await run.bridge.fetch_from_runtime("snapshot")
    result = await run.bridge.fetch_from_protocol("validate", {"subject": "snapshot", "snapshot": snapshot["id"]})
    assert result["valid"] is False
    assert [v["rule"] for v in result["violations"]] == ["agent-limit"]
    export = await run.bridge.fetch_from_protocol("validate", {"subject": "export"})
    assert [v["rule"] for v in export["violations"]] == ["licence"]
    status = await run.bridge.fetch_from_protocol("status")
    assert (status["validations"], status["violations"]) == (2, 2)
    await run.bridge.fetch_from_protocol("validate", {"subject": "instance"})  # valid: not kept
    found = await run.bridge.fetch_from_protocol("violations")
    assert (found["validations"], found["violations"]) == (3, 2)
    assert [(f["validation"], f["subject"], f["instance"]) for f in found["recent"]] == [
        (2, "export", run.bridge.instance_id), (1, "snapshot", run.bridge.instance_id)]  # fmt: skip
    assert found["recent"][0]["violations"] == export["violations"]
    assert found["recent"][1]["violations"] == result["violations"]


@pytest.mark.anyio
async def test_protocol_keeps_only_the_latest_violations(make: Callable[..., Awaitable[Running]]) -> None:
    run = await make(rules=RuleSet(licence=Licence(export=False)))
    for _ in range(RECENT_VIOLATIONS + 3):
        await run.bridge.fetch_from_protocol("validate", {"subject": "export"})
    found = await run.bridge.fetch_from_protocol("violations")
    numbers = [f["validation"] for f in found["recent"]]
    assert numbers == list(range(RECENT_VIOLATIONS + 3, 3, -1))  # the newest first, the three oldest dropped
    assert found["kept"] == RECENT_VIOLATIONS
