"""The puppet master audits through its recorder, once per command: who sent it (given, the action in progress, or
the puppet master itself), the instances it touched and its outcome, refused commands included with their error
code; an identity scoped to some instances finds no other, and a command on all instances acts on those it sees.
Instances created and deleted are audited the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from soulfra.bus import InMemoryBus
from soulfra.errors import NotFoundError, SoulfraError
from soulfra.meta.commands import parse_command
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.platforms.instance import InstanceSettings
from soulfra.security.audit import AuditRecorder
from soulfra.security.identity import Identity
from soulfra.store import InMemoryStore
from soulfra.store.ports import AuditEntry
from soulfra.world import DEFAULT_WORLD

pytestmark = pytest.mark.anyio

ALICE = Identity(name="alice", role="puppet-master")
SCOPED = Identity(name="scoped", role="admin", instances=frozenset({"a"}))


@pytest.fixture
async def engine(anyio_backend: str) -> AsyncIterator[PuppetMasterEngine]:
    store = InMemoryStore()
    bus = InMemoryBus()
    running = PuppetMasterEngine(store, bus, EngineSettings(instance=InstanceSettings(rate=None)))
    for instance_id, seed in (("a", 3), ("b", 4)):
        await running.create_instance(seed=seed, spec=DEFAULT_WORLD, agents=1, instance_id=instance_id)
    try:
        yield running
    finally:
        try:
            await running.close()
        finally:
            await bus.close()
            store.close()


def _rows(engine: PuppetMasterEngine, prefix: str = "god.") -> list[AuditEntry]:
    return [e for e in engine.store.audit.read() if e.action.startswith(prefix)]


def _paused(engine: PuppetMasterEngine) -> list[str]:
    return sorted(i for i, instance in engine.live.items() if instance.runtime.paused)


async def test_a_command_is_one_row_by_the_identity_that_sent_it(engine: PuppetMasterEngine) -> None:
    await engine.execute(parse_command({"type": "CLONE_INSTANCE", "source": "a", "id": "c"}), identity=ALICE)
    (row,) = _rows(engine)
    assert (row.actor, row.role, row.action, row.outcome) == ("alice", "puppet-master", "god.clone_instance", "ok")
    assert (row.instance_id, row.instances) == ("a", ("a", "c"))
    assert row.detail["command"]["source"] == "a" and row.detail["result"]["id"] == "c"


async def test_a_refused_command_is_recorded_with_its_error_code(engine: PuppetMasterEngine) -> None:
    merge = parse_command({"type": "MERGE_INSTANCES", "ours": "a", "theirs": "b", "id": "m"})  # no common ancestor
    with pytest.raises(SoulfraError) as refused:
        await engine.execute(merge, identity=ALICE)
    (row,) = _rows(engine)
    assert (row.actor, row.action, row.outcome) == ("alice", "god.merge_instances", refused.value.code)
    assert row.instances == ("a", "b") and row.detail["error"] == refused.value.detail
    with pytest.raises(NotFoundError):
        engine.store.instances.get("m")


async def test_inside_an_action_in_progress_the_command_refines_it(engine: PuppetMasterEngine) -> None:
    recorder = engine.recorder
    async with recorder.acting(ALICE, "POST /api/god", source="127.0.0.1", request_id="r-7"):
        await engine.execute(parse_command({"type": "FREEZE_TIME", "instances": ["b"]}))
    (row,) = [e for e in engine.store.audit.read() if e.request_id == "r-7"]
    assert (row.actor, row.action, row.source, row.instances) == ("alice", "god.freeze_time", "127.0.0.1", ("b",))
    assert len(_rows(engine)) == 1


async def test_a_scoped_identity_finds_no_instance_outside_its_scope(engine: PuppetMasterEngine) -> None:
    for command in (
        {"type": "CLONE_INSTANCE", "source": "b", "id": "c"},
        {"type": "MERGE_INSTANCES", "ours": "a", "theirs": "b", "id": "m"},
        {"type": "FREEZE_TIME", "instances": ["a", "b"]},
    ):
        with pytest.raises(NotFoundError, match="no instance 'b'"):
            await engine.execute(parse_command(command), identity=SCOPED)
    assert [(e.actor, e.outcome) for e in _rows(engine)] == [("scoped", "not_found")] * 3
    assert _paused(engine) == []  # nothing changed, not even what it may see
    with pytest.raises(NotFoundError):
        engine.store.instances.get("c")
    with pytest.raises(NotFoundError, match="no instance 'b'"):
        await engine.delete_instance("b", identity=SCOPED)
    assert engine.store.instances.get("b").id == "b"
    assert _rows(engine, "instance.delete")[0].outcome == "not_found"


async def test_a_scoped_command_on_all_instances_acts_on_those_it_sees(engine: PuppetMasterEngine) -> None:
    result = await engine.execute(parse_command({"type": "FREEZE_TIME"}), identity=SCOPED)
    assert result.instances() == ("a",)
    assert _paused(engine) == ["a"]
    await engine.execute(parse_command({"type": "FREEZE_TIME", "instances": ["b"]}))
    thawed = await engine.execute(parse_command({"type": "THAW_TIME"}), identity=SCOPED)
    assert thawed.instances() == ("a",)
    assert _paused(engine) == ["b"]
    assert [e.instances for e in _rows(engine)] == [("a",), ("b",), ("a",)]


async def test_instances_created_and_deleted_are_audited_by_who_asked(engine: PuppetMasterEngine) -> None:
    await engine.create_instance(seed=9, spec=DEFAULT_WORLD, instance_id="z", identity=ALICE)
    await engine.delete_instance("z", identity=ALICE)
    created = _rows(engine, "instance.create")
    assert [(e.actor, e.instance_id) for e in created] == [
        ("puppet-master", "a"),
        ("puppet-master", "b"),
        ("alice", "z"),
    ]
    assert created[-1].detail["seed"] == 9
    (deleted,) = _rows(engine, "instance.delete")
    assert (deleted.actor, deleted.instance_id, deleted.outcome) == ("alice", "z", "ok")
    assert "head_tick" in deleted.detail


async def test_a_refused_creation_is_recorded(engine: PuppetMasterEngine) -> None:
    with pytest.raises(SoulfraError, match="already exists") as refused:
        await engine.create_instance(seed=9, spec=DEFAULT_WORLD, instance_id="a", identity=ALICE)
    row = _rows(engine, "instance.create")[-1]
    assert (row.actor, row.instance_id, row.outcome) == ("alice", "a", refused.value.code)


async def test_the_engine_uses_the_recorder_it_is_given(anyio_backend: str) -> None:
    store = InMemoryStore()
    bus = InMemoryBus()
    recorder = AuditRecorder(store)
    engine = PuppetMasterEngine(store, bus, EngineSettings(instance=InstanceSettings(rate=None)), recorder=recorder)
    try:
        assert engine.recorder is recorder
    finally:
        await engine.close()
        await bus.close()
        store.close()
