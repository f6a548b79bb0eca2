"""The InputLog's contract, run on every backend: sequence numbers, the order and bounds of a read, pages and the
log's tail, and every input type read back equal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import get_args

from soulfra.store import Store
from soulfra.world import (
    Act,
    AlterVibe,
    ChangePersonality,
    CrossPost,
    InjectRitual,
    Input,
    Mark,
    Possess,
    Release,
    Whisper,
)
from soulfra.world.inputs import Decision, MindReply
from soulfra.world.vibe import PHASES

from .support import _is_utc, make_record

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
