"""Properties: what the tick keeps to go faster (the task board, the invitation index, the index of threads that
share participants, mood drift over every agent at once with its draw keys and trait targets kept) answers exactly
as the plain computation does."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from soulfra.world import World
from soulfra.world.encoding import state_hash
from soulfra.world.inputs import ChangePersonality
from soulfra.world.minds.base import MoodDrift, drift_moods
from soulfra.world.model import Ritual, Stage, Task, Thread, WorldState
from soulfra.world.tasks import TaskBoard
from soulfra.world.viewing import Invitations

AGENTS = 6


def _task_for(tasks: dict[int, Task], agent: int) -> int | None:
    """The plain scan: the oldest task ``agent`` holds, else the oldest unclaimed one."""
    held = sorted(t.id for t in tasks.values() if t.assignee == agent)
    unclaimed = sorted(t.id for t in tasks.values() if t.assignee == -1)
    return held[0] if held else unclaimed[0] if unclaimed else None


# a change to the board: (task id, new assignee: -1 unclaimed, None removed)
changes = st.lists(st.tuples(st.integers(1, 12), st.one_of(st.none(), st.integers(-1, AGENTS - 1))), max_size=40)


@given(start=changes, later=changes)
def test_the_task_board_answers_as_a_scan_of_the_tasks_after_any_changes(
    start: list[tuple[int, int | None]], later: list[tuple[int, int | None]]
) -> None:
    tasks: dict[int, Task] = {}

    def apply(task_id: int, assignee: int | None) -> None:
        if assignee is None:
            tasks.pop(task_id, None)
        else:
            tasks[task_id] = Task(id=task_id, goal="g", assigned_by=0, assignee=assignee, progress=0, required=3)

    for task_id, assignee in start:
        apply(task_id, assignee)
    board = TaskBoard(tasks)
    for task_id, assignee in later:
        apply(task_id, assignee)
        board.changed(tasks, task_id)
        assert [board.for_agent(a) for a in range(AGENTS)] == [_task_for(tasks, a) for a in range(AGENTS)]


# a change to the rituals: (ritual id, (stage, invited, joined); None removes it)
ritual_shape = st.tuples(
    st.sampled_from((Stage.GATHERING, Stage.AWAITING)),
    st.lists(st.integers(0, AGENTS - 1), max_size=4),
    st.lists(st.integers(0, AGENTS - 1), max_size=3),
)
ritual_changes = st.lists(st.tuples(st.integers(1, 6), st.one_of(st.none(), ritual_shape)), max_size=30)


@given(start=ritual_changes, later=ritual_changes)
def test_the_invitation_index_answers_as_a_scan_of_the_rituals_after_any_changes(
    start: list[tuple[int, tuple[str, list[int], list[int]] | None]],
    later: list[tuple[int, tuple[str, list[int], list[int]] | None]],
) -> None:
    rituals: dict[int, Ritual] = {}

    def apply(ritual_id: int, shape: tuple[str, list[int], list[int]] | None) -> None:
        if shape is None:
            rituals.pop(ritual_id, None)
            return
        stage, invited, joined = shape
        rituals[ritual_id] = Ritual(
            id=ritual_id, name="r", proposer=0, invited=tuple(invited), joined=tuple(joined), stage=stage,
            proposed=0, stage_tick=0, intensity=0,
        )  # fmt: skip

    for ritual_id, shape in start:
        apply(ritual_id, shape)
    index = Invitations(rituals)
    for ritual_id, shape in later:
        apply(ritual_id, shape)
        index.changed(rituals, ritual_id)
        scan = [
            any(r.stage == Stage.GATHERING and a in r.invited and a not in r.joined for r in rituals.values())
            for a in range(AGENTS)
        ]
        assert [index.waiting(a) for a in range(AGENTS)] == scan


def _weavable(threads: dict[int, Thread]) -> tuple[int, int] | None:
    """The plain scan: the oldest thread sharing two participants with a younger one, and the oldest such."""
    ordered = sorted(threads.values(), key=lambda t: t.id)
    for i, older in enumerate(ordered):
        for younger in ordered[i + 1 :]:
            if len(set(older.participants) & set(younger.participants)) >= 2:
                return younger.id, older.id
    return None


participants = st.lists(st.integers(0, 9), max_size=5, unique=True).map(lambda p: tuple(sorted(p)))
# a change to the threads: (thread id, its participants; None closes it), and whether the world is asked after it
thread_changes = st.lists(
    st.tuples(st.integers(1, 8), st.one_of(st.none(), participants), st.booleans()), min_size=1, max_size=30
)


@settings(max_examples=300)
@given(changes=thread_changes)
def test_the_weavable_pair_kept_between_calls_is_the_pair_a_plain_scan_finds(
    changes: list[tuple[int, tuple[int, ...] | None, bool]],
) -> None:
    world = World.create(1, agents=7)
    threads = world.state.threads
    for thread_id, members, ask in changes:
        if members is None:
            threads.pop(thread_id, None)
        else:
            old = threads.get(thread_id)
            kept = old.participants if old is not None and old.participants == members else members
            threads[thread_id] = Thread(
                id=thread_id, topic="t", opened=0, last=0, posts=1, participants=kept, recent=()
            )
        if ask:  # several changes may come between two questions
            assert world.weavable() == _weavable(threads)
    assert world.weavable() == _weavable(threads)


def test_the_weavable_pair_follows_a_state_put_in_place_of_the_old_one() -> None:
    world = World.create(1, agents=7)
    world.state.threads[1] = Thread(id=1, topic="a", opened=0, last=0, posts=1, participants=(1, 2, 3), recent=())
    world.state.threads[2] = Thread(id=2, topic="b", opened=0, last=0, posts=1, participants=(2, 3), recent=())
    assert world.weavable() == (2, 1)
    world.state = world.state.copy()
    del world.state.threads[2]
    assert world.weavable() is None


def _drifted(state: WorldState, move: object) -> str:
    copy = state.copy()
    assert callable(move)
    move(copy)
    return state_hash(copy)


def test_mood_drift_over_every_agent_in_place_equals_drift_over_their_indices() -> None:
    world = World.create(5, agents=300)
    world.run_to(7)
    state = world.state
    everyone = np.arange(state.size, dtype=np.int64)
    half = everyone[::2]
    assert _drifted(state, MoodDrift(None)) == _drifted(state, lambda s: drift_moods(s, everyone))
    assert _drifted(state, MoodDrift(half)) == _drifted(state, lambda s: drift_moods(s, half))
    assert _drifted(state, MoodDrift(None)) != state_hash(state)


def test_mood_drift_over_every_agent_follows_a_world_of_another_size() -> None:
    small, large = World.create(3, agents=20).state, World.create(4, agents=70).state
    reused = MoodDrift(None)  # its draw keys and trait targets are made for the first world it moves
    assert _drifted(small, reused) == _drifted(small, MoodDrift(None))
    assert _drifted(large, reused) == _drifted(large, MoodDrift(None))
    assert _drifted(small, reused) == _drifted(small, MoodDrift(None))


def test_mood_drift_reads_the_traits_again_once_they_change() -> None:
    kept = World.create(9, agents=50)
    kept.run_to(5)  # its drift keeps the targets of the traits it began with
    fresh, unchanged = World(kept.state.copy()), World(kept.state.copy())  # these keep nothing yet
    change = ChangePersonality(tick=5, agent="arty", traits=(("warmth", 0), ("chaos", 1_000_000)))
    for world in (kept, fresh):
        world.step([change])
        world.run_to(20)
    unchanged.run_to(20)
    assert kept.state_hash() == fresh.state_hash() != unchanged.state_hash()
