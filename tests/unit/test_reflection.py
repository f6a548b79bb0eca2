"""The reflection of a world's state (``soulfra.reflection``): each agent's loop phase by its rules, the loop's phase
by its quarter, the open threads; and the mirror's watches (``soulfra.platforms.watch``), provoked through real
world inputs (dark whispers for a mood collapse, a conversation left for another thread) and quiet in calm worlds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import soulfra.store  # noqa: F401 -- the store package first: projection and the store import each other
from soulfra.platforms.watch import (
    MOOD_COLLAPSE_DROP,
    MOOD_COLLAPSE_WINDOW,
    STALL_TICKS,
    Found,
    MoodWatch,
    ThreadWatch,
)
from soulfra.projection import vibe_to_json
from soulfra.reflection import (
    LOOP_PHASES,
    RECENT_ACTIONS,
    RESPONDING_TICKS,
    agent_loop_json,
    agent_phase,
    loop_json,
    recent_actions,
    threads_json,
)
from soulfra.world import World
from soulfra.world.daemons.thread_weaver import STALE
from soulfra.world.events import event_to_json
from soulfra.world.inputs import Act, Input, Possess, Whisper
from soulfra.world.model import Ritual, Stage

AGENTS = ("cal-riven", "arty", "agent-zero")


def _run(
    world: World, ticks: int, inputs: Iterable[Input] = (), watches: tuple[ThreadWatch, MoodWatch] | None = None
) -> list[Found]:
    """Step ``world`` ``ticks`` ticks with ``inputs`` at their ticks, feeding both watches as the mirror does."""
    threads, mood = watches or (ThreadWatch(), MoodWatch())
    due: dict[int, list[Input]] = {}
    for item in inputs:
        due.setdefault(item.tick, []).append(item)
    found: list[Found] = []
    for _ in range(ticks):
        events = world.step(due.get(world.tick, ()))
        after = world.tick
        found += threads.feed(after, [event_to_json(e) for e in events])
        found += mood.feed(after, vibe_to_json(world.state.vibe))
    return found


def _named(found: Sequence[Found], anomaly: str) -> list[Found]:
    return [f for f in found if f.anomaly == anomaly]


# -- each agent's phase ---------------------------------------------------------------------------------------------


def test_a_world_that_has_not_ticked_is_all_listening() -> None:
    world = World.create(0)
    reply = agent_loop_json(world.state)
    assert reply["population"] == 3
    assert reply["phases"] == {"listening": 3, "reflecting": 0, "responding": 0, "evolving": 0}
    assert [a["id"] for a in reply["agents"]] == list(AGENTS)
    assert all(a["last_acted"] is None for a in reply["agents"])


def test_each_phase_follows_its_rule_first_rule_first() -> None:
    world = World.create(0)
    world.run_to(5, [Possess(tick=0, agent=a) for a in AGENTS])  # nobody acts on their own any more
    state = world.state
    cal, arty, zero = (state.index[a] for a in AGENTS)
    assert {agent_phase(state, i) for i in (cal, arty, zero)} == {"responding"}  # possessed: it only answers
    state.possessed.clear()
    state.memory = {}
    state.whispers = {}
    assert {agent_phase(state, i) for i in (cal, arty, zero)} == {"listening"}
    state.memory[arty] = (f"{state.tick - RESPONDING_TICKS}:post:stars",)
    assert agent_phase(state, arty) == "responding"
    state.memory[arty] = (f"{state.tick - RESPONDING_TICKS - 1}:post:stars",)
    assert agent_phase(state, arty) == "listening"  # it acted, but not lately
    state.whispers[zero] = (state.tick - 1, "look up", "gentle")
    assert agent_phase(state, zero) == "reflecting"
    state.rituals[1] = Ritual(id=1, name="dusk", proposer=cal, invited=(cal, zero), joined=(cal, zero),
                              stage=Stage.GATHERING, proposed=0, stage_tick=0, intensity=1)  # fmt: skip
    assert agent_phase(state, cal) == "evolving"
    assert agent_phase(state, zero) == "reflecting"  # the whisper comes first
    state.memory[zero] = (f"{state.tick - 1}:ritual:1",)
    assert agent_phase(state, zero) == "responding"
    assert agent_loop_json(state)["phases"] == {"listening": 1, "reflecting": 0, "responding": 1, "evolving": 1}


def test_an_operator_post_through_an_agent_shows_in_its_last_action() -> None:
    world = World.create(0)
    inputs: list[Input] = [Possess(tick=0, agent=a) for a in AGENTS]
    inputs.append(Act(tick=3, agent="arty", action="post", topic="stars", text="look"))
    world.run_to(4, inputs)
    row = next(a for a in agent_loop_json(world.state)["agents"] if a["id"] == "arty")
    assert (row["phase"], row["last_acted"], row["last_action"], row["possessed_by"]) == (
        "responding", 3, "post:stars", "puppet-master")  # fmt: skip


def test_recent_actions_are_the_agent_s_latest_acts_newest_first() -> None:
    world = World.create(0)
    inputs: list[Input] = [Possess(tick=0, agent=a) for a in AGENTS]
    topics = [f"topic-{k}" for k in range(RECENT_ACTIONS + 3)]
    inputs += [Act(tick=1 + k, agent="arty", action="post", topic=t, text="x") for k, t in enumerate(topics)]
    inputs.append(Act(tick=len(topics) + 1, agent="arty", action="rest"))  # resting is no action it remembers
    world.run_to(len(topics) + 3, inputs)
    arty = world.state.index["arty"]
    expected = [(1 + k, f"post:{t}") for k, t in enumerate(topics)][::-1][:RECENT_ACTIONS]
    assert recent_actions(world.state, arty) == expected
    assert recent_actions(world.state, arty, 2) == expected[:2]
    assert recent_actions(world.state, world.state.index["cal-riven"]) == []
    row = next(a for a in agent_loop_json(world.state)["agents"] if a["id"] == "arty")
    assert row["recent"] == [{"tick": t, "action": a} for t, a in expected]
    assert (row["last_acted"], row["last_action"]) == expected[0]


def test_phases_are_a_function_of_the_state() -> None:
    one, two = World.create(7, agents=40), World.create(7, agents=40)
    one.run_to(150)
    two.run_to(150)
    assert agent_loop_json(one.state, 0, 1000) == agent_loop_json(two.state, 0, 1000)
    reply = agent_loop_json(one.state, 10, 5)
    assert sum(reply["phases"].values()) == 43
    assert [a["id"] for a in reply["agents"]] == [s.id for s in one.state.specs[10:15]]
    assert set(reply["phases"]) == set(LOOP_PHASES)


def test_the_loop_phase_is_the_quarter_of_the_loop_reached() -> None:
    world = World.create(0)
    length = world.state.loop_length
    seen = []
    for tick in (0, length // 4, length // 2, 3 * length // 4, length - 1, length):
        world.run_to(tick)
        seen.append((loop_json(world.state)["loop"], loop_json(world.state)["phase"]))
    assert seen == [(0, "listening"), (0, "reflecting"), (0, "responding"), (0, "evolving"), (0, "evolving"),
                    (1, "listening")]  # fmt: skip
    assert loop_json(world.state)["start"] == length


def test_threads_say_how_long_they_have_been_quiet() -> None:
    world = World.create(0)
    inputs: list[Input] = [Possess(tick=0, agent=a) for a in AGENTS]
    inputs += [Act(tick=1, agent="arty", action="post", topic="stars", text="look"),
               Act(tick=2, agent="cal-riven", action="post", topic="stars", text="I see")]  # fmt: skip
    world.run_to(10, inputs)
    (thread,) = threads_json(world.state)["threads"]
    assert (thread["topic"], thread["posts"], thread["last_post"], thread["quiet"]) == ("stars", 2, 2, 7)
    assert thread["participants"] == ["cal-riven", "arty"]
    assert [p["agent"] for p in thread["recent"]] == ["arty", "cal-riven"]


# -- mood collapse --------------------------------------------------------------------------------------------------


def test_dark_whispers_to_everyone_collapse_the_mood() -> None:
    world = World.create(0)
    start = 30
    dark = [Whisper(tick=start + k, target="*", text="it is over", tone="dark") for k in range(5)]
    watches = (ThreadWatch(), MoodWatch())
    before = _run(world, start, watches=watches)
    temperature_before = vibe_to_json(world.state.vibe)["temperature"]  # type: ignore[index]
    found = _run(world, 10, dark, watches)
    assert _named(before, "mood-collapse") == []
    (collapse,) = _named(found, "mood-collapse")
    assert start < collapse.tick < start + MOOD_COLLAPSE_WINDOW
    assert collapse.data["drop"] > MOOD_COLLAPSE_DROP
    assert collapse.data["from"] >= temperature_before  # measured from where the mood stood before the whispers
    assert abs(collapse.data["from"] - collapse.data["drop"] - collapse.data["to"]) < 1e-6


def test_a_calm_world_and_gentle_whispers_raise_no_mood_collapse() -> None:
    for seed in range(3):
        assert _named(_run(World.create(seed), 400), "mood-collapse") == []
    gentle = [Whisper(tick=30 + k, target="*", text="all is well", tone="gentle") for k in range(5)]
    assert _named(_run(World.create(0), 60, gentle), "mood-collapse") == []


# -- stalled thread -------------------------------------------------------------------------------------------------


def _conversation_then(elsewhere: bool) -> list[Input]:
    """Every agent possessed; arty and Cal talk of the harvest for four ticks, then (``elsewhere``) of the stars for
    thirty, or fall silent."""
    inputs: list[Input] = [Possess(tick=0, agent=a) for a in AGENTS]
    for k in range(4):
        inputs.append(Act(tick=1 + k, agent=("arty", "cal-riven")[k % 2], action="post", topic="harvest", text="grain"))
    if elsewhere:
        for k in range(30):
            inputs.append(Act(tick=5 + k, agent=("arty", "cal-riven")[k % 2], action="post", topic="stars", text="x"))
    return inputs


def test_a_conversation_left_for_another_thread_is_reported_stalled() -> None:
    world = World.create(0)
    found = _named(_run(world, 40, _conversation_then(elsewhere=True)), "stalled-thread")
    assert len(found) == 1
    (stall,) = found
    assert (stall.data["topic"], stall.data["last_post"], stall.data["posts"]) == ("harvest", 4, 4)
    assert stall.tick == 4 + STALL_TICKS
    assert stall.data["active_elsewhere"] == ["arty", "cal-riven"]
    harvest = next(t for t in threads_json(world.state)["threads"] if t["topic"] == "harvest")
    assert harvest["quiet"] >= STALL_TICKS  # the state the anomaly was computed from


def test_a_thread_quiet_because_everyone_is_quiet_is_not_stalled() -> None:
    assert _named(_run(World.create(0), 40, _conversation_then(elsewhere=False)), "stalled-thread") == []


def test_a_calm_large_world_raises_no_anomaly() -> None:
    # Measured: seeds 0-5 at 200 agents raise none in 600 ticks (a 3-agent world's few threads do stall now and
    # then: its agents leave a topic together, which is what the anomaly names).
    assert _run(World.create(0, agents=200), 300) == []


def test_a_thread_whose_closing_the_watch_missed_is_forgotten() -> None:
    watch = ThreadWatch()
    posts = [{"kind": "post_made", "tick": t, "agent": a, "thread": 1, "topic": "harvest", "text": "."}
             for t, a in enumerate(("arty", "cal-riven", "arty"))]  # fmt: skip
    watch.feed(3, posts)
    assert watch.feed(3 + STALE + 5, []) == []  # its participants never posted elsewhere
    later = [{"kind": "post_made", "tick": 3 + STALE + 5, "agent": a, "thread": 2, "topic": "x",
             "text": "."} for a in ("arty", "cal-riven")]  # fmt: skip
    assert watch.feed(3 + STALE + 6, later) == []  # thread 1 is gone: no stall for a thread the weaver closed
