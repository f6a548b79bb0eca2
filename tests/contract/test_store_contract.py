"""The storage ports' contracts (``soulfra.store.ports``), run on every backend: instances, the input log, ritual
traces, the agent vault, the audit log and transactions. Snapshots are in ``test_snapshots.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, get_args

import pytest

from soulfra.errors import ConflictError, InputError, LineageError, NotFoundError
from soulfra.projection import agent_state_json, personality_json
from soulfra.store import InstanceRecord, Store
from soulfra.world import (
    Act,
    AlterVibe,
    ChangePersonality,
    CrossPost,
    Event,
    InjectRitual,
    Input,
    Mark,
    Possess,
    Release,
    Whisper,
    World,
    event_to_json,
)
from soulfra.world.inputs import Decision, MindReply
from soulfra.world.vibe import PHASES

from .conftest import Backend


def make_record(
    instance_id: str, *, seed: int = 7, genesis_hash: str = "b2:genesis", world: dict[str, Any] | None = None
) -> InstanceRecord:
    world = {"name": "default", "agents": 3} if world is None else world
    return InstanceRecord(id=instance_id, name="default", seed=seed, genesis_hash=genesis_hash, world=world)


def _is_utc(moment: datetime | None) -> bool:
    return moment is not None and moment.utcoffset() == timedelta(0)


EVERY_INPUT: tuple[Input, ...] = (
    Whisper(tick=0, target="arty", text="the tide turns — 潮", tone="solemn"),
    Whisper(tick=1, target="*", text="all of you"),
    Possess(tick=1, agent="cal-riven", operator="op-1"),
    Act(
        tick=2,
        agent="cal-riven",
        action="propose_ritual",
        text="gather",
        topic="dawn",
        ritual=3,
        task=4,
        name="dawn-rite",
        participants=("arty", "agent-zero"),
        goal="greet the sun",
    ),
    Release(tick=3, agent="cal-riven"),
    ChangePersonality(tick=3, agent="arty", traits=(("warmth", 800_000), ("chaos", 125_000))),
    InjectRitual(tick=4, name="vigil", participants=("arty", "cal-riven"), blessed=True),
    AlterVibe(tick=5, condition=PHASES[1], intensity=750_000, duration=12),
    CrossPost(tick=6, origin="north/arty", thread=2, text="from the other world"),
    Mark(tick=6, command="FREEZE_TIME", note='{"duration": 5}'),
    MindReply(
        tick=7,
        agent="arty",
        model="smollm2",
        prompt="b2:" + "ab" * 16,
        outcome="reply",
        reply='{"action": "propose_ritual", "name": "dusk — 夕"}',
        decision=Decision(action="propose_ritual", name="dusk — 夕", participants=("cal-riven",), goal="rest"),
        prompt_tokens=312,
        completion_tokens=27,
        latency_ms=1480,
    ),
    MindReply(tick=8, agent="agent-zero", model="smollm2", prompt="b2:" + "cd" * 16, outcome="timeout"),
)


# -- InstanceCatalog -------------------------------------------------------------------------------------------


def test_create_returns_the_stored_record_and_get_reads_it_back(store: Store) -> None:
    wanted = make_record(
        "w-1", seed=2**64 - 1, world={"name": "default", "loop_length": 100, "agents": 3, "nested": {"a": [1, 2]}}
    )
    created = store.instances.create(wanted)
    assert (created.id, created.name, created.seed, created.genesis_hash) == ("w-1", "default", 2**64 - 1, "b2:genesis")
    assert created.world == wanted.world
    assert (created.parent_id, created.fork_tick, created.merge_parent_id, created.head_tick) == (None, None, None, 0)
    assert _is_utc(created.created_at)
    assert _is_utc(created.updated_at)
    assert store.instances.get("w-1") == created


def test_lineage_fields_round_trip(store: Store) -> None:
    store.instances.create(make_record("parent"))
    store.instances.create(make_record("other"))
    child = store.instances.create(
        replace(make_record("child"), parent_id="parent", fork_tick=40, merge_parent_id="other", head_tick=40)
    )
    assert (child.parent_id, child.fork_tick, child.merge_parent_id, child.head_tick) == ("parent", 40, "other", 40)
    assert store.instances.get("child") == child


def test_create_with_a_taken_id_is_a_conflict_and_keeps_the_first(store: Store) -> None:
    first = store.instances.create(make_record("w-1", seed=1))
    with pytest.raises(ConflictError, match="w-1"):
        store.instances.create(make_record("w-1", seed=2))
    assert store.instances.get("w-1") == first
    assert [r.id for r in store.instances.list_instances()] == ["w-1"]


def test_missing_instances_are_not_found(store: Store) -> None:
    store.instances.create(make_record("present"))
    with pytest.raises(NotFoundError, match="absent"):
        store.instances.get("absent")
    with pytest.raises(NotFoundError, match="absent"):
        store.instances.set_head("absent", 5)
    with pytest.raises(NotFoundError, match="absent"):
        store.instances.delete("absent")
    assert store.instances.get("present").head_tick == 0


def test_list_instances_is_oldest_first(store: Store) -> None:
    assert store.instances.list_instances() == []
    for name in ("zeta", "alpha", "mid"):
        store.instances.create(make_record(name))
    assert [r.id for r in store.instances.list_instances()] == ["zeta", "alpha", "mid"]


def test_find_returns_only_that_seed_newest_first(store: Store) -> None:
    for name, seed in (("a", 5), ("b", 6), ("c", 5), ("d", 5)):
        store.instances.create(make_record(name, seed=seed))
    assert [r.id for r in store.instances.find(5)] == ["d", "c", "a"]
    assert [r.id for r in store.instances.find(6)] == ["b"]
    assert store.instances.find(99) == []


def test_set_head_records_the_durable_tick(store: Store) -> None:
    store.instances.create(make_record("w"))
    store.instances.create(make_record("untouched"))
    store.instances.set_head("w", 128)
    assert store.instances.get("w").head_tick == 128
    store.instances.set_head("w", 129)
    assert store.instances.get("w").head_tick == 129
    assert store.instances.get("untouched").head_tick == 0


def _fill(store: Store, instance_id: str, *, agents: int) -> None:
    """An instance with something in every table: inputs, snapshots (deltas or a dictionary), traces, agents."""
    world = World.create(3, agents=agents)
    store.instances.create(make_record(instance_id, seed=3, genesis_hash=world.state_hash()))
    store.inputs.append(instance_id, [Whisper(tick=0, target="*", text="hello")])
    for _ in range(20):
        store.snapshots.save(instance_id, world.state, "periodic")
        store.rituals.append(instance_id, world.step())
    store.vault.save_agents(instance_id, world.state)
    store.audit.append(actor="test", action="fill", instance_id=instance_id, detail={})


def test_delete_removes_everything_stored_for_the_instance_and_nothing_else(
    store: Store, reopen: Callable[[], Store], backend: Backend
) -> None:
    _fill(store, "big", agents=997)  # over 64 KiB: keyframes and deltas
    _fill(store, "small", agents=0)  # 3 agents: a trained dictionary
    _fill(store, "kept", agents=0)
    assert any(s.base_id is not None for s in store.snapshots.list_snapshots("big"))
    assert backend.rows("compression_dictionaries", "small") == 1

    store.instances.delete("big")
    store.instances.delete("small")

    for gone in ("big", "small"):
        with pytest.raises(NotFoundError):
            store.instances.get(gone)
        assert store.inputs.count(gone) == 0
        assert store.snapshots.list_snapshots(gone) == []
        assert store.rituals.read(gone) == []
        assert store.vault.list_agents(gone) == []
        for table in ("snapshots", "compression_dictionaries", "ritual_logs", "inputs", "agents"):
            assert backend.rows(table, gone) == 0
    assert [r.id for r in store.instances.list_instances()] == ["kept"]
    assert store.inputs.count("kept") == 1
    assert len(store.snapshots.list_snapshots("kept")) == 20
    assert len(store.vault.list_agents("kept")) == 3
    for info in store.snapshots.list_snapshots("kept"):
        assert reopen().snapshots.load(info.id)[0] == info

    # the id is free again, and what is stored under it now reads back in another process
    _fill(store, "small", agents=0)
    fresh = reopen()
    for info in store.snapshots.list_snapshots("small"):
        loaded, _ = fresh.snapshots.load(info.id)
        assert loaded.state_hash == info.state_hash


def test_deleting_an_instance_that_was_forked_is_a_conflict_and_removes_nothing(store: Store) -> None:
    _fill(store, "parent", agents=0)
    store.instances.create(replace(make_record("fork"), parent_id="parent", fork_tick=10))
    with pytest.raises(ConflictError, match="parent"):
        store.instances.delete("parent")  # the fork's lineage would point nowhere
    assert [r.id for r in store.instances.list_instances()] == ["parent", "fork"]
    assert store.inputs.count("parent") == 1
    assert len(store.snapshots.list_snapshots("parent")) == 20
    assert len(store.rituals.read("parent")) > 0
    assert len(store.vault.list_agents("parent")) == 3
    store.instances.delete("fork")
    store.instances.delete("parent")
    assert store.instances.list_instances() == []


# -- InputLog --------------------------------------------------------------------------------------------------


def test_append_numbers_from_one_across_calls_per_instance(store: Store) -> None:
    store.instances.create(make_record("a"))
    store.instances.create(make_record("b"))
    first = store.inputs.append("a", [Whisper(tick=0, target="*", text="1"), Whisper(tick=0, target="*", text="2")])
    other = store.inputs.append("b", [Whisper(tick=0, target="*", text="b1")])
    second = store.inputs.append("a", [Whisper(tick=3, target="*", text="3")])
    assert [s.seq for s in first] == [1, 2]
    assert [s.seq for s in second] == [3]
    assert [s.seq for s in other] == [1]
    assert [s.seq for s in store.inputs.read("a")] == [1, 2, 3]
    assert [s.input for s in store.inputs.read("a")] == [s.input for s in first + second]
    assert store.inputs.append("a", []) == []
    assert store.inputs.count("a") == 3
    assert store.inputs.count("b") == 1
    assert store.inputs.count("nobody") == 0


def test_read_is_in_seq_order_not_tick_order(store: Store) -> None:
    store.instances.create(make_record("a"))
    ticks = [5, 2, 9, 2, 0]
    store.inputs.append("a", [Whisper(tick=t, target="*", text=f"at {t}") for t in ticks[:3]])
    store.inputs.append("a", [Whisper(tick=t, target="*", text=f"at {t}") for t in ticks[3:]])
    assert [(s.seq, s.tick) for s in store.inputs.read("a")] == list(enumerate(ticks, start=1))


def test_a_page_is_the_inputs_after_a_seq_in_seq_order_at_most_limit(store: Store) -> None:
    store.instances.create(make_record("a"))
    store.instances.create(make_record("b"))
    store.inputs.append("a", [Whisper(tick=t, target="*", text=f"at {t}") for t in (5, 2, 9, 2, 0, 7)])
    store.inputs.append("b", [Whisper(tick=0, target="*", text="other")])
    assert [(s.seq, s.tick) for s in store.inputs.page("a", limit=4)] == [(1, 5), (2, 2), (3, 9), (4, 2)]
    assert [s.seq for s in store.inputs.page("a", after_seq=4)] == [5, 6]
    assert store.inputs.page("a", after_seq=6) == []
    assert [s.input for s in store.inputs.page("b")] == [s.input for s in store.inputs.read("b")]


def test_latest_is_the_tail_of_the_log_in_seq_order_across_a_gap(store: Store) -> None:
    store.instances.create(make_record("a"))
    store.inputs.append("a", [Whisper(tick=t, target="*", text=f"at {t}") for t in (0, 1, 2, 3, 4, 5)])
    store.instances.set_head("a", 6)
    branch = replace(make_record("a~1"), parent_id="a", fork_tick=3, head_tick=6, status="abandoned")
    store.instances.split_branch("a", 3, branch)  # the later inputs move to the branch, keeping their seqs
    store.inputs.append("a", [Whisper(tick=4, target="*", text="after the revert")])
    log, moved = store.inputs.read("a"), store.inputs.read("a~1")
    assert moved and moved[0].seq > 1  # the branch's log does not start at seq 1: counting back cannot find its tail
    assert store.inputs.latest("a~1", limit=2) == moved[-2:]
    assert store.inputs.latest("a", limit=2) == log[-2:]
    assert store.inputs.latest("a", limit=100) == log
    assert store.inputs.latest("a", limit=0) == []
    assert store.inputs.latest("nobody", limit=3) == []


def test_read_bounds_are_from_tick_inclusive_to_tick_exclusive(store: Store) -> None:
    store.instances.create(make_record("a"))
    store.inputs.append("a", [Whisper(tick=t, target="*", text=str(t)) for t in range(10)])

    def ticks(**bounds: int) -> list[int]:
        return [s.tick for s in store.inputs.read("a", **bounds)]

    assert ticks() == list(range(10))
    assert ticks(from_tick=4) == [4, 5, 6, 7, 8, 9]
    assert ticks(to_tick=3) == [0, 1, 2]
    assert ticks(from_tick=3, to_tick=6) == [3, 4, 5]
    assert ticks(from_tick=5, to_tick=5) == []
    assert ticks(from_tick=10) == []


def test_every_input_type_reads_back_equal(store: Store, reopen: Callable[[], Store]) -> None:
    store.instances.create(make_record("a"))
    stored = store.inputs.append("a", EVERY_INPUT)
    assert [s.input for s in stored] == list(EVERY_INPUT)
    assert {type(i) for i in EVERY_INPUT} == set(get_args(Input))  # every input type there is
    for reader in (store, reopen()):
        read = reader.inputs.read("a")
        assert [s.input for s in read] == list(EVERY_INPUT)
        assert [(s.seq, s.tick) for s in read] == [(s.seq, s.tick) for s in stored]
        assert all(_is_utc(s.accepted_at) for s in read)
    assert store.inputs.count("a") == len(EVERY_INPUT)


# -- RitualStorage ---------------------------------------------------------------------------------------------


def _run(ticks: int) -> list[Event]:
    world = World.create(3)
    inputs: dict[int, list[Input]] = {
        2: [Whisper(tick=2, target="arty", text="listen")],
        4: [InjectRitual(tick=4, name="dawn", participants=("arty", "cal-riven"), blessed=True)],
        6: [AlterVibe(tick=6, condition=PHASES[1], intensity=800_000, duration=5)],
    }
    events: list[Event] = []
    for _ in range(ticks):
        events.extend(world.step(inputs.get(world.tick, ())))
    return events


def test_rituals_read_back_as_event_json_in_stored_order(store: Store) -> None:
    store.instances.create(make_record("a"))
    store.instances.create(make_record("b"))
    events = _run(40)
    assert len({e.kind for e in events}) >= 5
    half = len(events) // 2
    assert store.rituals.append("a", events[:half]) == half
    assert store.rituals.append("a", iter(events[half:])) == len(events) - half
    assert store.rituals.append("a", []) == 0
    store.rituals.append("b", events[:3])

    read = store.rituals.read("a")
    assert [(r.tick, r.kind, r.data) for r in read] == [(e.tick, e.kind, event_to_json(e)) for e in events]
    assert [r.id for r in read] == sorted(r.id for r in read)
    assert len({r.id for r in read}) == len(read)
    assert all(_is_utc(r.timestamp) for r in read)
    assert len(store.rituals.read("b")) == 3
    assert store.rituals.read("nobody") == []


def test_a_derived_record_is_stored_beside_the_events_with_its_own_id(store: Store) -> None:
    store.instances.create(make_record("a"))
    store.rituals.append("a", _run(5))
    first = store.rituals.record("a", tick=3, kind="unified_snapshot", data={"system_hash": "ab", "conflicts": []})
    second = store.rituals.record("a", tick=4, kind="anomaly", data={"detail": "x"})
    assert second > first
    read = store.rituals.read("a", kinds=["unified_snapshot", "anomaly"])
    assert [(r.id, r.tick, r.kind, r.data) for r in read] == [
        (first, 3, "unified_snapshot", {"system_hash": "ab", "conflicts": []}),
        (second, 4, "anomaly", {"detail": "x"}),
    ]


def test_rituals_read_with_tick_bounds_and_kinds(store: Store) -> None:
    store.instances.create(make_record("a"))
    events = _run(40)
    store.rituals.append("a", events)

    def expected(lo: int, hi: int | None, kinds: tuple[str, ...] = ()) -> list[dict[str, object]]:
        return [
            event_to_json(e)
            for e in events
            if lo <= e.tick and (hi is None or e.tick < hi) and (not kinds or e.kind in kinds)
        ]

    kinds = ("post_made", "vibe_shifted", "ritual_injected")
    assert [r.data for r in store.rituals.read("a", from_tick=10)] == expected(10, None)
    assert [r.data for r in store.rituals.read("a", to_tick=10)] == expected(0, 10)
    assert [r.data for r in store.rituals.read("a", from_tick=5, to_tick=25)] == expected(5, 25)
    by_kind = store.rituals.read("a", kinds=kinds)
    assert {r.kind for r in by_kind} == set(kinds)
    assert [r.data for r in by_kind] == expected(0, None, kinds)
    assert [r.data for r in store.rituals.read("a", from_tick=5, to_tick=25, kinds=kinds)] == expected(5, 25, kinds)
    assert store.rituals.read("a", kinds=("no_such_kind",)) == []


# -- VaultManager ----------------------------------------------------------------------------------------------


def test_save_agents_upserts_one_row_per_agent_at_the_latest_tick(store: Store, backend: Backend) -> None:
    world = World.create(4, agents=20)
    store.instances.create(make_record("a"))
    assert store.vault.save_agents("a", world.state) == 23
    for _ in range(5):
        world.step([ChangePersonality(tick=world.tick, agent="arty", traits=(("warmth", 900_000),))])
    assert store.vault.save_agents("a", world.state) == 23
    assert backend.rows("agents", "a") == 23

    agents = store.vault.list_agents("a")
    assert [a.id for a in agents] == [spec.id for spec in world.state.specs]
    assert [a.id for a in agents] != sorted(a.id for a in agents)  # world order is not alphabetical
    for i, (agent, spec) in enumerate(zip(agents, world.state.specs, strict=True)):
        assert (agent.instance_id, agent.agent_type, agent.tick) == ("a", spec.mind, 5)
        assert agent.personality == personality_json(world.state, i)
        assert agent.state == agent_state_json(world.state, i)
        assert _is_utc(agent.created_at)
    assert agents[1].personality["traits"]["warmth"] == 900_000


def test_load_agent_and_missing_agents(store: Store) -> None:
    world = World.create(4)
    store.instances.create(make_record("a"))
    store.instances.create(make_record("b"))
    store.vault.save_agents("a", world.state)
    listed = {a.id: a for a in store.vault.list_agents("a")}
    assert store.vault.load_agent("a", "arty") == listed["arty"]
    with pytest.raises(NotFoundError, match="nobody"):
        store.vault.load_agent("a", "nobody")
    with pytest.raises(NotFoundError, match="arty"):
        store.vault.load_agent("b", "arty")
    assert store.vault.list_agents("b") == []


# -- AuditLog --------------------------------------------------------------------------------------------------


def test_audit_entries_read_back_oldest_first_and_by_instance(store: Store) -> None:
    detail = {"agents": 3, "nested": {"list": [1, "two", None, True]}, "text": "ünïcode"}
    store.audit.append(actor="cli", action="instance.create", instance_id="a", detail=detail)
    store.audit.append(actor="api", action="db.upgrade", instance_id=None, detail={})
    store.audit.append(actor="cli", action="instance.step", instance_id="b", detail={"ticks": 10})
    store.audit.append(actor="op", action="instance.whisper", instance_id="a", detail={"text": "hi"})

    entries = store.audit.read()
    assert [(e.actor, e.action, e.instance_id) for e in entries] == [
        ("cli", "instance.create", "a"),
        ("api", "db.upgrade", None),
        ("cli", "instance.step", "b"),
        ("op", "instance.whisper", "a"),
    ]
    assert entries[0].detail == detail
    assert [e.id for e in entries] == sorted(e.id for e in entries)
    assert all(_is_utc(e.timestamp) for e in entries)
    assert [e.action for e in store.audit.read(instance_id="a")] == ["instance.create", "instance.whisper"]
    assert store.audit.read(instance_id="nobody") == []


# -- transactions ----------------------------------------------------------------------------------------------


class AbortError(Exception):
    """Raised inside a transaction to abandon it."""


def _write_everything(store: Store, instance_id: str) -> None:
    world = World.create(9)
    store.instances.create(make_record(instance_id, seed=9, genesis_hash=world.state_hash()))
    store.inputs.append(instance_id, [Whisper(tick=0, target="*", text="inside")])
    store.snapshots.save(instance_id, world.state, "genesis")
    store.rituals.append(instance_id, _run(10))
    store.vault.save_agents(instance_id, world.state)
    store.instances.set_head(instance_id, 10)
    store.audit.append(actor="test", action="everything", instance_id=instance_id, detail={})


def _assert_nothing_stored(store: Store, instance_id: str) -> None:
    with pytest.raises(NotFoundError):
        store.instances.get(instance_id)
    assert store.instances.list_instances() == []
    assert store.inputs.count(instance_id) == 0
    assert store.snapshots.list_snapshots(instance_id) == []
    assert store.rituals.read(instance_id) == []
    assert store.vault.list_agents(instance_id) == []
    assert store.audit.read() == []


def test_a_transaction_commits_everything_together(store: Store, reopen: Callable[[], Store]) -> None:
    other = reopen()
    with store.transaction():
        _write_everything(store, "w")
        assert store.instances.get("w").head_tick == 10  # visible inside the transaction
        assert other.instances.list_instances() == []  # invisible outside until it commits
        assert other.audit.read() == []
    for reader in (store, other):
        assert reader.instances.get("w").head_tick == 10
        assert reader.inputs.count("w") == 1
        assert len(reader.snapshots.list_snapshots("w")) == 1
        assert len(reader.rituals.read("w")) > 0
        assert len(reader.vault.list_agents("w")) == 3
        assert [e.action for e in reader.audit.read()] == ["everything"]


def test_an_exception_rolls_back_the_whole_transaction(store: Store, reopen: Callable[[], Store]) -> None:
    def attempt() -> None:
        with store.transaction():
            _write_everything(store, "w")
            raise AbortError

    with pytest.raises(AbortError):
        attempt()
    _assert_nothing_stored(store, "w")
    _assert_nothing_stored(reopen(), "w")


def test_instance_and_inputs_roll_back_together(store: Store) -> None:
    def attempt() -> None:
        with store.transaction():
            store.instances.create(make_record("w"))
            store.inputs.append("w", [Whisper(tick=0, target="*", text="lost")])
            raise AbortError

    with pytest.raises(AbortError):
        attempt()
    _assert_nothing_stored(store, "w")
    store.instances.create(make_record("w"))  # the id was never taken
    assert [s.seq for s in store.inputs.append("w", [Whisper(tick=0, target="*", text="kept")])] == [1]


def test_a_conflict_inside_a_transaction_rolls_back_its_earlier_writes(store: Store) -> None:
    store.instances.create(make_record("w"))

    def attempt() -> None:
        with store.transaction():
            store.inputs.append("w", [Whisper(tick=0, target="*", text="lost")])
            store.instances.create(make_record("w"))

    with pytest.raises(ConflictError, match="already exists"):
        attempt()
    assert store.inputs.count("w") == 0
    assert [s.seq for s in store.inputs.append("w", [Whisper(tick=0, target="*", text="kept")])] == [1]


def test_a_nested_transaction_joins_the_outer_one(store: Store, reopen: Callable[[], Store]) -> None:
    other = reopen()
    with store.transaction():
        store.instances.create(make_record("w"))
        with store.transaction():
            store.inputs.append("w", [Whisper(tick=0, target="*", text="inner")])
        assert other.instances.list_instances() == []  # the inner block did not commit on its own
        assert other.inputs.count("w") == 0
    assert other.inputs.count("w") == 1

    def attempt() -> None:
        with store.transaction():
            store.instances.create(make_record("v"))
            with store.transaction():
                store.inputs.append("v", [Whisper(tick=0, target="*", text="inner")])
            raise AbortError

    with pytest.raises(AbortError):
        attempt()
    assert [r.id for r in other.instances.list_instances()] == ["w"]
    assert other.inputs.count("v") == 0


# -- lineage: status, children, branches, links ------------------------------------------------------------------


def test_status_defaults_to_active_and_can_be_set(store: Store) -> None:
    store.instances.create(make_record("a"))
    assert store.instances.get("a").status == "active"
    store.instances.set_status("a", "frozen")
    assert store.instances.get("a").status == "frozen"
    with pytest.raises(InputError, match="unknown instance status"):
        store.instances.set_status("a", "asleep")
    with pytest.raises(NotFoundError):
        store.instances.set_status("nope", "active")


def test_children_are_forks_and_merges_oldest_first(store: Store) -> None:
    store.instances.create(make_record("p"))
    store.instances.create(make_record("q"))
    store.instances.create(replace(make_record("f"), parent_id="p", fork_tick=0))
    store.instances.create(replace(make_record("m"), parent_id="q", merge_parent_id="p", fork_tick=0))
    assert [r.id for r in store.instances.children("p")] == ["f", "m"]
    assert [r.id for r in store.instances.children("q")] == ["m"]
    assert store.instances.children("f") == []


@pytest.mark.parametrize("agents", [0, 997], ids=["dictionary", "deltas"])
def test_split_branch_moves_what_came_after_and_copies_nothing(store: Store, agents: int) -> None:
    _fill(store, "x", agents=agents)  # snapshots at ticks 0..19, traces, an input at tick 0
    store.inputs.append("x", [Whisper(tick=t, target="*", text=f"at {t}") for t in (5, 10, 15)])
    store.instances.set_head("x", 20)
    head = 20
    inputs_before = store.inputs.read("x")
    snaps_before = store.snapshots.list_snapshots("x")
    traces_before = store.rituals.read("x")
    cut = snaps_before[len(snaps_before) // 2].tick
    store.instances.create(replace(make_record("late-fork"), parent_id="x", fork_tick=cut + 1))
    store.instances.create(replace(make_record("early-fork"), parent_id="x", fork_tick=cut))
    branch = replace(make_record("x~1"), parent_id="x", fork_tick=cut, head_tick=head, status="abandoned")
    with store.transaction():
        created = store.instances.split_branch("x", cut, branch)
    assert created.status == "abandoned"
    assert store.instances.get("x").head_tick == cut
    kept, moved = store.snapshots.list_snapshots("x"), store.snapshots.list_snapshots("x~1")
    assert [s.tick for s in kept] == [s.tick for s in snaps_before if s.tick <= cut]
    assert [s.tick for s in moved] == [s.tick for s in snaps_before if s.tick > cut]
    assert len(kept) + len(moved) == len(snaps_before)
    for info in moved:  # every moved snapshot (delta or not) still reads back
        loaded, _ = store.snapshots.load(info.id)
        assert loaded.state_hash == info.state_hash
    assert [i.seq for i in store.inputs.read("x")] + [i.seq for i in store.inputs.read("x~1")] == [
        i.seq for i in inputs_before
    ]
    assert all(i.tick >= cut for i in store.inputs.read("x~1"))
    assert len(store.rituals.read("x")) + len(store.rituals.read("x~1")) == len(traces_before)
    assert store.instances.get("late-fork").parent_id == "x~1"
    assert store.instances.get("early-fork").parent_id == "x"


def test_split_branch_past_the_head_is_refused_and_changes_nothing(store: Store) -> None:
    _fill(store, "x", agents=0)
    store.instances.set_head("x", 20)
    head = 20
    with pytest.raises(LineageError, match="cannot revert"):
        store.instances.split_branch("x", head + 1, replace(make_record("x~1"), parent_id="x"))
    assert [r.id for r in store.instances.list_instances()] == ["x"]


def test_links_are_symmetric_idempotent_and_go_with_the_instance(store: Store) -> None:
    for name in ("a", "b", "c"):
        store.instances.create(make_record(name))
    store.instances.link("b", "a")
    store.instances.link("a", "b")
    store.instances.link("a", "c")
    assert store.instances.links("a") == ["b", "c"]
    assert store.instances.links("b") == ["a"]
    assert store.instances.unlink("a", "b") is True
    assert store.instances.unlink("a", "b") is False
    with pytest.raises(NotFoundError):
        store.instances.link("a", "nope")
    store.instances.delete("c")
    assert store.instances.links("a") == []


def test_record_many_stores_rows_in_order_and_reads_them_back(store: Store) -> None:
    store.instances.create(make_record("a"))
    rows = [{"tick": t, "kind": "ritual_sealed", "data": {"kind": "ritual_sealed", "n": t}} for t in (1, 1, 4)]
    assert store.rituals.record_many("a", rows) == 3
    assert store.rituals.record_many("a", []) == 0
    assert [(r.tick, r.kind, r.data) for r in store.rituals.read("a")] == [
        (r["tick"], r["kind"], r["data"]) for r in rows
    ]
