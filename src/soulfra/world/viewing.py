"""The read side of ``World`` that minds consult while they decide (the mind ``View``): topics, rituals waiting for
a governor or for an agent's answer, the task an agent should work, room on the boards, threads to weave.

Most agents that act ask some of these, so they are kept cheap: while the agents decide (``_act`` is then the only
thing that changes the state, and tells these indexes of what it changed) who has invitations and who holds which
task are indexed on first use and dropped after; which threads share participants is kept, and counted again only
for the threads a post changed. Each answer equals what a plain scan of the id-sorted records gives.
"""

from __future__ import annotations

from soulfra.world import tasks
from soulfra.world.actions import Action, AssignTask, Bless, JoinRitual, ProposeRitual, Refuse, Work
from soulfra.world.daemons.ritual_engine import max_active
from soulfra.world.minds.voice import TOPICS
from soulfra.world.model import Ritual, Stage, Task, Thread, WorldState
from soulfra.world.rng import Stream

__all__ = ["Viewing"]


class Viewing:
    """The ``View`` half of ``World``, which sets ``state`` and calls ``_start_viewing`` before using it."""

    state: WorldState

    def _start_viewing(self) -> None:
        self._deciding = False  # set by the tick while the agents decide
        self._board: tasks.TaskBoard | None = None
        self._invited: Invitations | None = None
        self._weaving: SharedParticipants | None = None  # which threads share participants, kept as they change

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
        threads = self.state.threads
        index = self._weaving
        if index is None or index.threads is not threads:
            index = self._weaving = SharedParticipants(threads)
        return index.pair()


class SharedParticipants:
    """Which pairs of ``threads`` share two participants or more, kept as the threads change: a post changes one
    thread's participants by an agent or two, and only the threads those agents take part in are counted again.

    Read from ``threads`` (a dict the index keeps watching, which may change between calls) at each ``pair``: a thread
    whose participants are no longer the very tuple read last time, or that opened or closed since, is read again.
    Each tuple read is held here, so no other tuple can take its identity.
    """

    __slots__ = ("_answer", "_holders", "_pairs", "_pairs_changed", "_read", "_shared", "threads")

    def __init__(self, threads: dict[int, Thread]) -> None:
        self.threads = threads
        self._read: dict[int, tuple[tuple[int, ...], frozenset[int]]] = {}  # thread -> its participants, as read
        self._holders: dict[int, set[int]] = {}  # agent -> the threads it takes part in
        self._shared: dict[tuple[int, int], int] = {}  # (older, younger) thread -> participants in common (1 or more)
        self._pairs: set[tuple[int, int]] = set()  # the (older, younger) pairs with two or more in common
        self._answer: tuple[int, int] | None = None
        self._pairs_changed = False

    def pair(self) -> tuple[int, int] | None:
        """(younger, older): ``Viewing.weavable``'s answer for the threads as they are now."""
        read = self._read
        for key, thread in self.threads.items():
            held = read.get(key)
            if held is None or held[0] is not thread.participants:
                self._reread(key, thread.participants)
        if len(read) > len(self.threads):
            for key in [key for key in read if key not in self.threads]:
                self._reread(key, None)
        if self._pairs_changed:
            self._pairs_changed = False
            older_younger = min(self._pairs) if self._pairs else None
            self._answer = None if older_younger is None else (older_younger[1], older_younger[0])
        return self._answer

    def _reread(self, key: int, participants: tuple[int, ...] | None) -> None:
        """Count thread ``key`` again with these participants (None: it has closed)."""
        old = self._read.pop(key, (None, frozenset()))[1]
        new = frozenset(participants) if participants is not None else frozenset()
        for agent in new - old:
            self._count(key, agent, 1)
        for agent in old - new:
            self._count(key, agent, -1)
        if participants is not None:
            self._read[key] = (participants, new)

    def _count(self, key: int, agent: int, step: int) -> None:
        holders = self._holders.get(agent)
        if holders is None:
            holders = self._holders[agent] = set()
        if step < 0:
            holders.discard(key)
        shared, pairs = self._shared, self._pairs
        for other in holders:
            pair = (key, other) if key < other else (other, key)
            count = shared.get(pair, 0) + step
            if count:
                shared[pair] = count
            else:
                del shared[pair]
            if count == 2 and step > 0:
                pairs.add(pair)
                self._pairs_changed = True
            elif count == 1 and step < 0:
                pairs.discard(pair)
                self._pairs_changed = True
        if step > 0:
            holders.add(key)
        elif not holders:
            del self._holders[agent]


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
