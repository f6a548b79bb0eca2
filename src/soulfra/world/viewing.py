"""The read side of ``World`` that minds consult while they decide (the mind ``View``): topics, rituals waiting for
a governor or for an agent's answer, the task an agent should work, room on the boards, threads to weave.

Most agents that act ask some of these, so they are kept cheap: while the agents decide (``_act`` is then the only
thing that changes the state, and tells these indexes of what it changed) who has invitations and who holds which
task are indexed on first use and dropped after; the weavable pair is kept with the thread shapes it was found
for. Each answer equals what a plain scan of the id-sorted records gives.
"""

from __future__ import annotations

from functools import reduce

from soulfra.world import tasks
from soulfra.world.actions import Action, AssignTask, Bless, JoinRitual, ProposeRitual, Refuse, Work
from soulfra.world.daemons.ritual_engine import max_active
from soulfra.world.minds.voice import TOPICS
from soulfra.world.model import Ritual, Stage, Task, WorldState
from soulfra.world.rng import Stream

__all__ = ["Viewing"]


class Viewing:
    """The ``View`` half of ``World``, which sets ``state`` and calls ``_start_viewing`` before using it."""

    state: WorldState

    def _start_viewing(self) -> None:
        self._deciding = False  # set by the tick while the agents decide
        self._board: tasks.TaskBoard | None = None
        self._invited: Invitations | None = None
        # the weavable pair, with the threads' ids and participants it was found for
        self._weavable: tuple[list[int], list[tuple[int, ...]], tuple[int, int] | None] | None = None
        self._masks: dict[int, tuple[tuple[int, ...], int]] = {}  # thread id -> (its participants, as a bit set)
        self._bits: dict[int, int] = {}  # agent -> its bit in those sets, given in the order agents are first seen

    def _begin_deciding(self) -> None:
        self._deciding = True

    def _end_deciding(self) -> None:
        self._deciding = False
        self._board = self._invited = None

    def _touched(self, action: Action) -> None:
        """Keep the indexes true after ``action`` was tried (done or not): it may have changed rituals or tasks."""
        if isinstance(action, ProposeRitual | JoinRitual | Bless | Refuse):
            if self._invited is not None:
                ritual = self.state.next_id.get("ritual", 1) - 1 if isinstance(action, ProposeRitual) else action.ritual
                self._invited.changed(self.state.rituals, ritual)
        elif self._board is not None:
            if isinstance(action, Work):
                self._board.changed(self.state.tasks, action.task)
            elif isinstance(action, AssignTask):
                self._board.changed(self.state.tasks, self.state.next_id.get("task", 1) - 1)

    def topic_for(self, agent: int, rng: Stream) -> str:
        state = self.state
        themes = state.loop.themes
        if themes and rng.chance(600_000):
            return themes[rng.below(len(themes))]
        goals = state.specs[agent].goals
        if goals and rng.chance(700_000):
            return goals[rng.below(len(goals))]
        return rng.choice(TOPICS)

    def awaiting_blessing(self) -> tuple[Ritual, ...]:
        waiting = [r for r in self.state.rituals.values() if r.stage == Stage.AWAITING]
        return tuple(sorted(waiting, key=lambda r: r.id)) if waiting else ()

    def invitations(self, agent: int) -> tuple[Ritual, ...]:
        if self._deciding:
            if self._invited is None:
                self._invited = Invitations(self.state.rituals)
            if not self._invited.waiting(agent):
                return ()
        # few rituals match: filtering before sorting gives what filtering the id-sorted records would
        invited = [
            r
            for r in self.state.rituals.values()
            if r.stage == Stage.GATHERING and agent in r.invited and agent not in r.joined
        ]
        return tuple(sorted(invited, key=lambda r: r.id)) if invited else ()

    def task_for(self, agent: int) -> Task | None:
        if self._deciding:
            if self._board is None:
                self._board = tasks.TaskBoard(self.state.tasks)
            found = self._board.for_agent(agent)
            return None if found is None else self.state.tasks[found]
        held = unclaimed = None
        for task in self.state.tasks.values():
            if task.assignee == agent:
                if held is None or task.id < held.id:
                    held = task
            elif task.assignee == -1 and (unclaimed is None or task.id < unclaimed.id):
                unclaimed = task
        return held if held is not None else unclaimed

    def has_room(self, kind: str) -> bool:
        if kind == "ritual":
            return len(self.state.rituals) < max_active(self.state)
        return len(self.state.tasks) < tasks.max_open(self.state)

    def weavable(self) -> tuple[int, int] | None:
        """The oldest thread that shares two participants with a younger one, and the oldest such younger one."""
        # The answer depends on the threads' ids and participants alone, which most posts leave as they were (a
        # post by one already taking part keeps the very tuple): two lists, compared item by item, mostly by identity.
        threads = self.state.threads
        ids = list(threads)  # each thread is kept under its id
        parts = [thread.participants for thread in threads.values()]
        kept = self._weavable
        if kept is not None and kept[0] == ids and kept[1] == parts:
            return kept[2]
        order = sorted(ids)
        if order == ids:  # threads are kept in the order they opened: oldest first
            pair = self._weavable_pair(ids, parts)
        else:
            by_id = dict(zip(ids, parts, strict=True))
            pair = self._weavable_pair(order, [by_id[key] for key in order])
        self._weavable = (ids, parts, pair)
        return pair

    def _weavable_pair(self, ids: list[int], parts: list[tuple[int, ...]]) -> tuple[int, int] | None:
        # Each thread's participants as a bit set (an int), kept by thread while its participants stay the same
        # tuple (held here, so no other tuple can take its identity): a post changes one thread's at most. An
        # agent's bit is the next free one when it is first seen in a thread, not its index: the few hundred agents
        # that post in threads make sets of a few hundred bits, where indexes would make sets as wide as the world.
        masks, bits = self._masks, self._bits
        if len(masks) > MASKS_KEPT or len(bits) > BITS_KEPT:
            masks.clear()
            bits.clear()
        members = []
        for key, participants in zip(ids, parts, strict=True):
            held = masks.get(key)
            if held is None or held[0] is not participants:
                for agent in participants:
                    if agent not in bits:
                        bits[agent] = 1 << len(bits)
                held = masks[key] = (participants, reduce(int.__or__, map(bits.__getitem__, participants), 0))
            members.append(held[1])
        # Usually no pair qualifies. A thread can only pair with a younger one if two of its participants post in
        # some younger thread at all: one backward pass finds those threads, and the pairwise check runs for them
        # alone, oldest first, just as a plain scan of every pair would. Two or more bits: ``x & (x - 1)``.
        later = 0
        candidates: list[tuple[int, int]] = []
        for i in range(len(members) - 1, -1, -1):
            shared = later & members[i]
            if shared & (shared - 1):
                candidates.append((i, shared))
            later |= members[i]
        for i, shared in reversed(candidates):
            for j in range(i + 1, len(members)):
                both = shared & members[j]
                if both & (both - 1):
                    return ids[j], ids[i]
        return None


MASKS_KEPT = 4096  # threads whose participants' bit sets a world keeps before it forgets them all...
BITS_KEPT = 4096  # ...and agents given a bit in them before all of those bits are given anew


class Invitations:
    """How many gathering rituals invite each agent that has not joined them. Built from ``state.rituals``; it
    must be told of every ritual changed while it is in use."""

    __slots__ = ("_count", "_pending")

    def __init__(self, rituals: dict[int, Ritual]) -> None:
        self._count: dict[int, int] = {}
        self._pending: dict[int, tuple[int, ...]] = {}  # ritual -> the invitees counted for it
        for ritual in rituals.values():
            self._add(ritual)

    def _add(self, ritual: Ritual) -> None:
        if ritual.stage != Stage.GATHERING:
            return
        pending = tuple(agent for agent in ritual.invited if agent not in ritual.joined)
        self._pending[ritual.id] = pending
        for agent in pending:
            self._count[agent] = self._count.get(agent, 0) + 1

    def changed(self, rituals: dict[int, Ritual], ritual_id: int) -> None:
        """Read one ritual again, after it was added, changed or removed."""
        for agent in self._pending.pop(ritual_id, ()):
            left = self._count[agent] - 1
            if left:
                self._count[agent] = left
            else:
                del self._count[agent]
        ritual = rituals.get(ritual_id)
        if ritual is not None:
            self._add(ritual)

    def waiting(self, agent: int) -> bool:
        """Whether some gathering ritual invites ``agent``, which has not joined it."""
        return agent in self._count
