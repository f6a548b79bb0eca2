"""PUPPET_MASTER_INTERVENTION: personality, ritual and vibe interventions act from the next tick, and a rewrite
replays an edited history as a new branch."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from soulfra.bus import InMemoryBus
from soulfra.durable import state_at
from soulfra.errors import (
    InputError,
    LineageError,
    UnknownAgentError,
)
from soulfra.meta.commands import parse_command
from soulfra.meta.engine import PuppetMasterEngine
from soulfra.verification import replay, verify
from soulfra.world import (
    DEFAULT_WORLD,
    Whisper,
)
from soulfra.world.model import TRAITS, WARMTH, VibeOverride

from .meta_engine_support import (
    AGENTS,
    SEED,
    OpenEngine,
    agent,
    create,
    freeze,
    god,
    hash_at,
    live_state,
    logged,
    marks,
    settle,
    thaw,
    traces,
    whisper,
)

# -- PUPPET_MASTER_INTERVENTION ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_interventions_change_a_personality_inject_a_ritual_and_alter_the_vibe(
    engine: PuppetMasterEngine,
) -> None:
    await create(engine, "a")
    at = (await settle(engine, ["a"], 3))["a"]
    base = {"type": "PUPPET_MASTER_INTERVENTION", "instance": "a"}
    commands: list[dict[str, Any]] = [
        {"kind": "personality", "agent": "arty", "traits": {"warmth": 0.25, "chaos": "0.5"}},
        {"kind": "ritual", "name": "tide rite", "participants": ["arty", "cal-riven"], "blessed": True},
        {"kind": "vibe", "condition": "trust-surge", "intensity": 0.6, "duration": 15},
    ]
    replies = [await god(engine, {**base, **command}) for command in commands]
    assert [(r["kind"], r["ack"]["tick"], r["ack"]["type"]) for r in replies] == [
        ("personality", at, "intervene"), ("ritual", at, "intervene"), ("vibe", at, "intervene")
    ]  # fmt: skip
    with pytest.raises(ValidationError, match="needs"):
        parse_command({**base, "kind": "personality", "agent": "arty"})

    await thaw(engine, "a")
    await settle(engine, ["a"], at + 1)
    arty = agent(live_state(engine, "a"), "arty")
    before, after = state_at(engine.store, "a", at), state_at(engine.store, "a", at + 1)
    assert int(before.traits[arty, WARMTH]) != 250_000
    assert int(after.traits[arty, WARMTH]) == 250_000
    assert int(after.traits[arty, TRAITS.index("chaos")]) == 500_000
    assert before.vibe_override is None
    assert after.vibe_override == VibeOverride(condition="trust-surge", intensity=600_000, until=at + 15)
    assert [(t, d["name"]) for t, d in traces(engine, "a", "ritual_injected")] == [(at, "tide rite")]
    assert [t for t, _ in traces(engine, "a", "personality_changed")] == [at]
    assert [t for t, _ in traces(engine, "a", "vibe_altered")] == [at]
    assert verify(engine.store, "a").ok


async def history_with_two_whispers(engine: PuppetMasterEngine) -> tuple[int, int, int]:
    """Instance "a" with whispers at t0+3 and t0+9, frozen at t0+15 or later: (t0, seq of the later one, head)."""
    await create(engine, "a")
    t0 = (await freeze(engine, "a"))["a"]
    await whisper(engine, "a", "early", tick=t0 + 3)
    late = await whisper(engine, "a", "late", tick=t0 + 9)
    await thaw(engine, "a")
    head = (await settle(engine, ["a"], t0 + 15))["a"]
    return t0, late, head


@pytest.mark.anyio
async def test_a_rewrite_without_edits_is_a_branch_equal_to_its_source(engine: PuppetMasterEngine) -> None:
    t0, _, head = await history_with_two_whispers(engine)
    result = await god(engine, {"type": "PUPPET_MASTER_INTERVENTION", "instance": "a", "kind": "rewrite",
                                "from_tick": t0 + 6, "id": "r"})  # fmt: skip
    assert (result["branch"], result["from_tick"], result["dropped"], result["added"]) == ("r", t0 + 6, 0, 0)
    record = engine.store.instances.get("r")
    assert (record.parent_id, record.fork_tick, record.world["origin"]) == ("a", t0 + 6, "rewrite")
    assert result["source_state_hash"] == hash_at(engine, "a", head)
    assert hash_at(engine, "r", head) == hash_at(engine, "a", head)
    assert (result["tick"], result["state_hash"]) == (head, result["source_state_hash"])
    assert ("PUPPET_MASTER_INTERVENTION", head) in marks(engine, "a")
    assert verify(engine.store, "r").ok


@pytest.mark.anyio
async def test_a_rewrite_replays_the_edited_history_as_a_new_branch(engine: PuppetMasterEngine) -> None:
    t0, late, head = await history_with_two_whispers(engine)
    source_log = engine.store.inputs.read("a")
    added = {"type": "whisper", "target": "arty", "text": "instead", "tone": "dark", "tick": t0 + 7}
    result = await god(engine, {"type": "PUPPET_MASTER_INTERVENTION", "instance": "a", "kind": "rewrite",
                                "from_tick": t0 + 6, "drop": [late], "add": [added], "id": "r"})  # fmt: skip
    assert (result["dropped"], result["added"]) == (1, 1)
    edited = [s.input for s in source_log if s.seq != late] + [Whisper(tick=t0 + 7, target="arty", text="instead",
                                                                       tone="dark")]  # fmt: skip
    expected = replay(SEED, DEFAULT_WORLD, AGENTS, edited, head)
    assert hash_at(engine, "r", head) == expected
    assert expected != hash_at(engine, "a", head)
    assert [i.text for i in logged(engine, "r") if isinstance(i, Whisper)] == ["instead"]
    assert [i.text for i in logged(engine, "a") if isinstance(i, Whisper)] == ["early", "late"]  # source untouched
    assert verify(engine.store, "r").ok

    with pytest.raises(InputError, match="no input with seq"):
        await god(engine, {"type": "PUPPET_MASTER_INTERVENTION", "instance": "a", "kind": "rewrite",
                           "from_tick": t0 + 10, "drop": [late]})  # fmt: skip
    with pytest.raises(LineageError):
        await god(engine, {"type": "PUPPET_MASTER_INTERVENTION", "instance": "a", "kind": "rewrite",
                           "from_tick": head + 50})  # fmt: skip


class LaggingBus(InMemoryBus):
    """The in-memory bus with a network's latency: a request lets other tasks run before it is answered, as a
    request over NATS does."""

    async def request(self, subject: str, payload: bytes, *, timeout: float) -> bytes:
        await asyncio.sleep(0.005)
        return await super().request(subject, payload, timeout=timeout)


@pytest.mark.anyio
async def test_a_rewrite_reports_its_branch_at_the_source_head_when_the_bus_lags(open_engine: OpenEngine) -> None:
    engine = open_engine(bus=LaggingBus())
    await create(engine, "a")
    head = (await settle(engine, ["a"], 5))["a"]
    result = await god(engine, {"type": "PUPPET_MASTER_INTERVENTION", "instance": "a", "kind": "rewrite",
                                "from_tick": 0, "id": "r"})  # fmt: skip
    assert hash_at(engine, "r", head) == result["source_state_hash"]
    # Was: _rewrite reads the branch's tick and hash after launching it and awaiting the source's mark, so on a
    # bus that yields the branch has ticked on and the report no longer describes the source's head
    assert (result["tick"], result["state_hash"]) == (head, result["source_state_hash"])


@pytest.mark.anyio
async def test_a_rewrite_adding_an_input_for_an_unknown_agent_makes_no_branch(engine: PuppetMasterEngine) -> None:
    await create(engine, "a")
    await settle(engine, ["a"], 10)
    with pytest.raises(UnknownAgentError):
        await god(engine, {"type": "PUPPET_MASTER_INTERVENTION", "instance": "a", "kind": "rewrite", "from_tick": 2,
                           "add": [{"type": "whisper", "target": "nobody", "text": "x"}]})  # fmt: skip
    assert [r["id"] for r in engine.list_instances()] == ["a"]
