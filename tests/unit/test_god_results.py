"""God-command results are typed: each kind names the instances it touched and the one its audit record is filed
under, and its reply is exactly what the API's response model for it describes. Each command names the existing
instances it touches, which the engine locks and checks before the command runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from soulfra.api.models import GodReply
from soulfra.bus import InMemoryBus
from soulfra.meta.commands import parse_command
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.meta.results import (
    AbandonedBranch,
    CloneResult,
    ForkMade,
    ForkResult,
    FreezeResult,
    GodResult,
    InputAck,
    InterventionResult,
    LinkResult,
    MergeBase,
    MergeResult,
    MessageResult,
    PossessionResult,
    RevertResult,
    RewriteResult,
    ThawResult,
    TickOf,
    UnlinkResult,
)
from soulfra.platforms.instance import InstanceSettings
from soulfra.store import SqlStore
from soulfra.world import DEFAULT_WORLD

ACK = InputAck(seq=3, tick=7, type="whisper")
MADE = ForkMade(id="a-fork", tick=7, state_hash="b2:00", modifications=1)
REPORT: dict[str, Any] = {"state_hash": "b2:11", "policies": {}, "changes": {}, "renumbered": {}, "conflicts": []}

# One of each kind of result, with the instances it touched and the one its audit record names.
SAMPLES: list[tuple[GodResult, tuple[str, ...], str | None]] = [
    (FreezeResult(frozen=(TickOf(instance="a", tick=7),), until=None), ("a",), None),
    (ThawResult(thawed=(TickOf(instance="a", tick=7), TickOf(instance="b", tick=2))), ("a", "b"), None),
    (CloneResult(source="a", made=MADE), ("a", "a-fork"), "a"),
    (ForkResult(source="a", tick=7, forks=(MADE,)), ("a", "a-fork"), "a"),
    (
        MergeResult(id="m", parents=("a", "b"), base=MergeBase(instance="a", tick=1), tick=7, report=REPORT),
        ("m", "a", "b"),
        "m",
    ),
    (PossessionResult(instance="a", agent="arty", action="possess", ack=ACK), ("a",), "a"),
    (LinkResult(source="a", target="b", links=("b",)), ("a", "b"), "a"),
    (UnlinkResult(source="a", target="b", removed=False), ("a", "b"), "a"),
    (MessageResult(source="a", target="b", action="whisper", ack=ACK), ("a", "b"), "a"),
    (
        RevertResult(
            instance="a",
            tick=1,
            state_hash="b2:22",
            branches=("a-branch",),
            abandoned_branch=AbandonedBranch(id="a-branch", from_tick=1, head_tick=7),
        ),
        ("a", "a-branch"),
        "a",
    ),
    (InterventionResult(instance="a", kind="vibe", ack=ACK), ("a",), "a"),
    (
        RewriteResult(
            instance="a",
            branch="a-rewrite",
            from_tick=1,
            dropped=0,
            added=1,
            tick=7,
            state_hash="b2:33",
            source_state_hash="b2:44",
        ),
        ("a", "a-rewrite"),
        "a",
    ),
]


def _concrete(cls: type[GodResult]) -> set[str]:
    """The names of every result class below ``cls`` (by name: a slotted dataclass replaces the class it was made
    from, which may linger among the subclasses)."""
    found = set()
    for sub in cls.__subclasses__():
        if not sub.__name__.startswith("_"):
            found.add(sub.__name__)
        found |= _concrete(sub)
    return found


def test_every_kind_of_result_is_sampled() -> None:
    assert {type(result).__name__ for result, _, _ in SAMPLES} == _concrete(GodResult)


@pytest.mark.parametrize(("result", "instances", "subject"), SAMPLES, ids=lambda v: type(v).__name__)
def test_a_result_names_what_it_touched(result: GodResult, instances: tuple[str, ...], subject: str | None) -> None:
    assert result.instances() == instances
    assert result.subject == subject


@pytest.mark.parametrize(("result", "instances", "subject"), SAMPLES, ids=lambda v: type(v).__name__)
def test_a_reply_is_what_the_api_model_describes(
    result: GodResult, instances: tuple[str, ...], subject: str | None
) -> None:
    reply = result.reply()
    assert reply["type"] == result.command
    assert reply["ok"] is True
    adapter: TypeAdapter[Any] = TypeAdapter(GodReply)
    assert adapter.dump_python(adapter.validate_python(reply), mode="json", by_alias=True) == reply


@pytest.mark.parametrize(
    ("command", "touches"),
    [
        ({"type": "FREEZE_TIME"}, ("a", "b")),
        ({"type": "FREEZE_TIME", "instances": ["b"]}, ("b",)),
        ({"type": "THAW_TIME"}, ("a", "b")),
        ({"type": "CLONE_INSTANCE", "source": "a", "id": "new"}, ("a",)),
        ({"type": "REALITY_FORK", "source": "b", "forks": [{"id": "x"}, {}]}, ("b",)),
        ({"type": "MERGE_INSTANCES", "ours": "a", "theirs": "b", "id": "m"}, ("a", "b")),
        ({"type": "AGENT_POSSESSION", "instance": "a", "agent": "arty"}, ("a",)),
        ({"type": "TIMELINE_REVERT", "instance": "b", "tick": 3}, ("b",)),
        ({"type": "CROSS_INSTANCE_COMMUNICATION", "action": "link", "source": "b", "target": "a"}, ("b", "a")),
        ({"type": "PUPPET_MASTER_INTERVENTION", "instance": "a", "kind": "rewrite", "from_tick": 0}, ("a",)),
    ],
    ids=lambda v: v["type"] if isinstance(v, dict) else None,
)
def test_a_command_names_the_existing_instances_it_touches(command: dict[str, Any], touches: tuple[str, ...]) -> None:
    assert parse_command(command).touches(["a", "b"]) == touches


@pytest.fixture
async def engine(tmp_path: Path, anyio_backend: str) -> AsyncIterator[PuppetMasterEngine]:
    store = SqlStore.open(f"sqlite:///{tmp_path / 'soulfra.db'}")
    bus = InMemoryBus()
    running = PuppetMasterEngine(store, bus, EngineSettings(instance=InstanceSettings(rate=None)))
    try:
        yield running
    finally:
        try:
            await running.close()
        finally:
            await bus.close()
            store.close()


@pytest.mark.anyio
async def test_the_audit_files_each_command_under_its_results_subject(engine: PuppetMasterEngine) -> None:
    for instance_id in ("a", "b"):
        await engine.create_instance(seed=3, spec=DEFAULT_WORLD, agents=1, instance_id=instance_id)
    commands: list[dict[str, Any]] = [
        {"type": "FREEZE_TIME", "instances": ["a"]},
        {"type": "THAW_TIME", "instances": ["a"]},
        {"type": "CLONE_INSTANCE", "source": "a", "id": "c"},
        {"type": "MERGE_INSTANCES", "ours": "a", "theirs": "c", "id": "m", "start": False},
        {"type": "CROSS_INSTANCE_COMMUNICATION", "action": "link", "source": "b", "target": "a"},
    ]
    subjects = [(await engine.execute(parse_command(command))).subject for command in commands]
    assert subjects == [None, None, "a", "m", "b"]
    audited = [e for e in engine.store.audit.read() if e.action.startswith("god.")]
    assert [(e.action, e.instance_id) for e in audited] == [
        (f"god.{command['type'].lower()}", subject) for command, subject in zip(commands, subjects, strict=True)
    ]
    assert {(e.actor, e.role, e.outcome) for e in audited} == {("puppet-master", "puppet-master", "ok")}
    assert [e.instances for e in audited] == [("a",), ("a",), ("a", "c"), ("a", "c", "m"), ("a", "b")]
