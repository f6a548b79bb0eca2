"""Each mind and daemon visibly does what its docstring says."""

from __future__ import annotations

from collections import defaultdict

from soulfra.world import (
    Act,
    AlterVibe,
    ChangePersonality,
    InjectRitual,
    Input,
    Possess,
    Release,
    Whisper,
    World,
    WorldSpec,
    schedule,
)
from soulfra.world.daemons import collect_seed
from soulfra.world.daemons.thread_weaver import STALE
from soulfra.world.events import (
    AgentPossessed,
    ArtifactProduced,
    Event,
    InputRejected,
    LoopSealed,
    OperatorActed,
    PersonalityChanged,
    PostMade,
    RitualBlessed,
    RitualGathered,
    RitualPerformed,
    RitualProposed,
    RitualRefused,
    RitualSealed,
    SeedApplied,
    TaskAssigned,
    ThreadClosed,
)
from soulfra.world.genesis import DEFAULT_AGENTS
from soulfra.world.model import CHAOS, WARMTH, LoopSeed, LoopTrace
from soulfra.world.vibe import PHASE_INFO, PHASES


def run(world: World, ticks: int, inputs: tuple[Input, ...] = ()) -> list[Event]:
    by_tick = schedule(inputs, world.tick)
    events: list[Event] = []
    for _ in range(ticks):
        events.extend(world.step(by_tick.get(world.tick, ())))
    return events


def authored_by(events: list[Event], agent: str) -> list[Event]:
    """Events that record ``agent`` doing something of its own accord."""
    own = (PostMade, RitualProposed, TaskAssigned, RitualBlessed, RitualRefused, ArtifactProduced)
    return [e for e in events if isinstance(e, own) and getattr(e, "agent", None) == agent]


# -- Cal Riven and the ritual engine --------------------------------------------------------------------------


def test_a_refused_ritual_is_never_performed() -> None:
    refused: set[int] = set()
    performed: set[int] = set()
    for seed in range(6):
        for event in run(World.create(seed, agents=20), 300):
            if isinstance(event, RitualRefused):
                refused.add(event.ritual)
            elif isinstance(event, RitualPerformed):
                performed.add(event.ritual)
            # ids restart per world, so check within each world
        assert not refused & performed
        refused.clear()
        performed.clear()


def test_cal_riven_both_blesses_and_refuses_and_only_governors_judge() -> None:
    events = run(World.create(3), 600)
    judged = [e for e in events if isinstance(e, RitualBlessed | RitualRefused)]
    assert {type(e) for e in judged} == {RitualBlessed, RitualRefused}
    assert {e.agent for e in judged} == {"cal-riven"}


def test_cal_riven_refuses_a_ritual_with_a_possessed_participant() -> None:
    world = World.create(8)
    events = run(
        world,
        60,
        (
            Possess(tick=0, agent="agent-zero"),
            InjectRitual(tick=0, name="test rite", participants=("arty", "agent-zero")),
        ),
    )
    refusals = [e for e in events if isinstance(e, RitualRefused)]
    assert refusals and refusals[0].ritual == 1
    assert refusals[0].reason == "a participant is possessed"
    assert not [e for e in events if isinstance(e, RitualPerformed) and e.ritual == 1]


def test_sealed_rituals_went_through_every_stage_in_order() -> None:
    events = run(World.create(4, agents=10), 400)
    stages: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for e in events:
        if isinstance(e, RitualProposed | RitualGathered | RitualBlessed | RitualPerformed | RitualSealed):
            stages[e.ritual].append((e.tick, e.kind))
    sealed = [r for r, seen in stages.items() if seen[-1][1] == "ritual_sealed"]
    assert len(sealed) >= 3
    for ritual in sealed:
        kinds = [kind for _, kind in stages[ritual]]
        assert kinds == ["ritual_proposed", "ritual_gathered", "ritual_blessed", "ritual_performed", "ritual_sealed"]
        ticks = [tick for tick, _ in stages[ritual]]
        assert ticks == sorted(ticks)


def test_a_performed_ritual_lifts_its_participants() -> None:
    world = World.create(9)
    run(world, 5)
    before = world.state.valence.copy()
    events = run(world, 1, (InjectRitual(tick=5, name="lift", participants=("arty", "agent-zero"), blessed=True),))
    assert [e for e in events if isinstance(e, RitualSealed)]
    arty, zero = world.state.index["arty"], world.state.index["agent-zero"]
    assert world.state.valence[arty] > before[arty] + 30_000
    assert world.state.valence[zero] > before[zero] + 30_000
    assert world.state.affinity[arty][zero] >= 80_000


# -- Arty and Agent Zero ---------------------------------------------------------------------------------------


def test_arty_proposes_and_assigns_and_agent_zero_produces_artifacts() -> None:
    events = run(World.create(21), 500)
    assert {e.agent for e in events if isinstance(e, RitualProposed)} == {"arty"}
    assert {e.agent for e in events if isinstance(e, TaskAssigned)} == {"arty"}
    artifacts = [e for e in events if isinstance(e, ArtifactProduced)]
    assert artifacts and {e.agent for e in artifacts} == {"agent-zero"}


def test_arty_proposes_more_rituals_when_warmer() -> None:
    def proposals(warmth: str) -> int:
        inputs = (ChangePersonality(tick=0, agent="arty", traits=(("warmth", int(float(warmth) * 1e6)),)),)
        return sum(isinstance(e, RitualProposed) for seed in range(4) for e in run(World.create(seed), 400, inputs))

    assert proposals("1.0") > proposals("0.0")


# -- whispers and possession -----------------------------------------------------------------------------------


def test_a_whisper_changes_what_the_agent_does_next() -> None:
    plain, whispered = World.create(31), World.create(31)
    run(plain, 10)
    run(whispered, 10)
    text = "the lanterns are going out"
    quiet = plain.step()
    heard = whispered.step([Whisper(tick=10, target="agent-zero", text=text, tone="urgent")])
    replies = [e for e in heard if isinstance(e, PostMade) and e.agent == "agent-zero"]
    assert len(replies) == 1
    assert text in replies[0].text and replies[0].topic == "lanterns"
    assert not [e for e in quiet if isinstance(e, PostMade) and e.agent == "agent-zero" and text in e.text]
    assert 10 not in whispered.state.whispers  # acted on, so no longer pending


def test_a_possessed_agent_takes_no_autonomous_action_until_released() -> None:
    world = World.create(2)
    before = run(world, 50)
    assert authored_by(before, "arty"), "arty should be active on its own"
    possessed = run(world, 200, (Possess(tick=50, agent="arty"),))
    assert any(isinstance(e, AgentPossessed) for e in possessed)
    assert authored_by(possessed, "arty") == []
    after = run(world, 200, (Release(tick=250, agent="arty"),))
    assert authored_by(after, "arty")


def test_an_operator_acts_through_a_possessed_agent() -> None:
    world = World.create(2)
    events = run(
        world,
        3,
        (
            Possess(tick=0, agent="arty"),
            Act(tick=1, agent="arty", action="post", text="hello from above", topic="signals"),
            Act(tick=2, agent="agent-zero", action="post", text="not possessed"),
        ),
    )
    posts = [e for e in events if isinstance(e, PostMade) and e.agent == "arty"]
    assert [(p.tick, p.text, p.topic) for p in posts] == [(1, "hello from above", "signals")]
    assert [e.action for e in events if isinstance(e, OperatorActed)] == ["post"]
    rejected = [e for e in events if isinstance(e, InputRejected)]
    assert len(rejected) == 1 and "not possessed" in rejected[0].reason


def test_inputs_naming_unknown_agents_are_rejected_not_raised() -> None:
    events = run(World.create(1), 2, (Whisper(tick=0, target="nobody", text="hi"), Release(tick=1, agent="arty")))
    reasons = [e.reason for e in events if isinstance(e, InputRejected)]
    assert len(reasons) == 2
    assert "unknown agent 'nobody'" in reasons[0]
    assert "not possessed" in reasons[1]


# -- interventions -----------------------------------------------------------------------------------------------


def test_change_personality_sets_the_traits() -> None:
    world = World.create(1)
    events = run(world, 1, (ChangePersonality(tick=0, agent="cal-riven", traits=(("warmth", 0), ("chaos", 999_000))),))
    cal = world.state.index["cal-riven"]
    assert world.state.traits[cal, WARMTH] == 0 and world.state.traits[cal, CHAOS] == 999_000
    assert any(isinstance(e, PersonalityChanged) for e in events)


def test_alter_vibe_holds_the_condition_then_lets_go() -> None:
    world = World.create(1)
    run(world, 20)
    natural = world.state.vibe
    assert natural is not None
    forced = next(phase for phase in PHASES if phase != natural.condition)
    conditions = []
    for _ in range(30):
        inputs = [AlterVibe(tick=20, condition=forced, intensity=900_000, duration=10)] if world.tick == 20 else []
        world.step(inputs)
        assert world.state.vibe is not None
        conditions.append(world.state.vibe.condition)
    assert conditions[:10] == [forced] * 10
    assert world.state.vibe_override is None


def test_the_vibe_is_read_every_tick_with_its_phase_details() -> None:
    world = World.create(6, agents=50)
    seen = set()
    for _ in range(200):
        world.step()
        vibe = world.state.vibe
        assert vibe is not None and vibe.condition in PHASES and vibe.forecast in PHASES
        assert vibe.frequency == PHASE_INFO[vibe.condition].frequency
        assert 0 <= vibe.pressure <= 1_000_000 and 0 <= vibe.wind <= 1_000_000
        seen.add(vibe.condition)
    assert len(seen) >= 2


# -- threads ---------------------------------------------------------------------------------------------------


def test_thread_weaver_closes_stale_threads_and_bounds_open_ones() -> None:
    world = World.create(12, agents=100)
    events = run(world, 300)
    closed = [e for e in events if isinstance(e, ThreadClosed)]
    assert closed
    for thread in world.state.threads.values():
        assert world.tick - 1 - thread.last <= STALE
    assert len(world.state.threads) <= 8 + world.state.size // 50
    topics = [t.topic for t in world.state.threads.values()]
    assert len(topics) == len(set(topics))  # same-topic threads get woven together


# -- loops -----------------------------------------------------------------------------------------------------


def test_loops_seal_every_loop_length_ticks_with_the_state_hash() -> None:
    world = World(World.create(14, WorldSpec(loop_length=25, agents=DEFAULT_AGENTS)).state)
    sealed = []
    for _ in range(100):
        events = world.step()
        for e in events:
            if isinstance(e, LoopSealed):
                assert e.state_hash == world.state_hash()
                sealed.append((e.loop, e.start, e.end))
    assert sealed == [(0, 0, 24), (1, 25, 49), (2, 50, 74), (3, 75, 99)]


def test_the_trace_collector_builds_the_seed_from_the_loop() -> None:
    trace = LoopTrace(index=4, start=400, digest=b"", topics={"tides": 9, "maps": 3, "trust": 9, "echoes": 1})
    trace.refused, trace.performed, trace.artifacts, trace.baseline = 3, 1, 2, 100_000
    seed = collect_seed(trace, mean_valence=300_000)
    assert seed == LoopSeed(
        loop=5, themes=("tides", "trust", "maps"), intentions=("reconcile", "build"), baseline=200_000
    )


def test_a_loop_seed_changes_the_next_loop() -> None:
    world = World.create(17, WorldSpec(loop_length=50, agents=DEFAULT_AGENTS))
    run(world, 50)
    assert world.state.pending_seed is not None
    altered = World(world.state.copy())
    seed = altered.state.pending_seed
    assert seed is not None
    altered.state.pending_seed = LoopSeed(loop=seed.loop, themes=("moonlit ferries",), intentions=(), baseline=0)
    original_events, altered_events = run(world, 50), run(altered, 50)
    applied = [e for e in altered_events if isinstance(e, SeedApplied)]
    assert applied and applied[0].themes == ("moonlit ferries",)
    assert any(isinstance(e, PostMade) and e.topic == "moonlit ferries" for e in altered_events)
    assert not any(isinstance(e, PostMade) and e.topic == "moonlit ferries" for e in original_events)


def test_every_event_class_is_registered_once_with_a_unique_kind() -> None:
    from soulfra.world import events  # noqa: PLC0415

    defined = {
        obj for obj in vars(events).values() if isinstance(obj, type) and issubclass(obj, Event) and obj is not Event
    }
    assert set(events.EVENT_TYPES) == defined
    assert len(events.EVENT_KINDS) == len(set(events.EVENT_KINDS)) == len(defined)
