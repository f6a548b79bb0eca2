"""The task board: work that orchestrators hand out and executors turn into artifacts, and the ledger of it."""

from __future__ import annotations

from dataclasses import replace

from soulfra.world.events import ArtifactProduced, Event, TaskAssigned, TaskClaimed
from soulfra.world.fixed import SCALE
from soulfra.world.model import Task, WorldState


def max_open(state: WorldState) -> int:
    return min(128, 4 + state.size // 100)


def assign(state: WorldState, agent: int, goal: str, required: int, events: list[Event]) -> Task:
    task = Task(id=state.take_id("task"), goal=goal, assigned_by=agent, assignee=-1, progress=0, required=required)
    state.tasks[task.id] = task
    events.append(TaskAssigned(tick=state.tick, task=task.id, goal=goal, agent=state.specs[agent].id))
    return task


def work(state: WorldState, agent: int, task_id: int, events: list[Event]) -> str | None:
    """Claim (if unclaimed) and advance a task; returns why not, or None."""
    task = state.tasks.get(task_id)
    if task is None:
        return "no such open task"
    if task.assignee not in (-1, agent):
        return "the task belongs to another agent"
    who = state.specs[agent].id
    if task.assignee == -1:
        events.append(TaskClaimed(tick=state.tick, task=task_id, agent=who))
    progress = task.progress + 1 + 2 * int(state.focus[agent]) // SCALE
    if progress < task.required:
        state.tasks[task_id] = replace(task, assignee=agent, progress=progress)
        return None
    del state.tasks[task_id]
    count = state.ledger.get("artifacts", 0) + 1
    state.ledger["artifacts"] = count
    state.ledger[f"artifacts:{who}"] = state.ledger.get(f"artifacts:{who}", 0) + 1
    state.loop.artifacts += 1
    events.append(ArtifactProduced(tick=state.tick, task=task_id, agent=who, artifact=f"{task.goal} #{count}"))
    return None


class TaskBoard:
    """Who holds which open task and which are unclaimed, so that ``task_for`` takes a few lookups instead of a
    pass over the board. Built from ``state.tasks``; it must be told of every change made to them while in use."""

    __slots__ = ("_held", "_owner", "_unclaimed")

    def __init__(self, tasks: dict[int, Task]) -> None:
        self._owner: dict[int, int] = {}  # task -> its assignee (-1: unclaimed)
        self._held: dict[int, set[int]] = {}
        self._unclaimed: set[int] = set()
        for task in tasks.values():
            self._place(task.id, task.assignee)

    def _place(self, task_id: int, assignee: int) -> None:
        self._owner[task_id] = assignee
        if assignee == -1:
            self._unclaimed.add(task_id)
        else:
            self._held.setdefault(assignee, set()).add(task_id)

    def changed(self, tasks: dict[int, Task], task_id: int) -> None:
        """Read one task again, after it was added, changed or removed."""
        old = self._owner.pop(task_id, None)
        if old == -1:
            self._unclaimed.discard(task_id)
        elif old is not None:
            held = self._held[old]
            held.discard(task_id)
            if not held:
                del self._held[old]
        task = tasks.get(task_id)
        if task is not None:
            self._place(task_id, task.assignee)

    def for_agent(self, agent: int) -> int | None:
        """The oldest task ``agent`` holds, else the oldest unclaimed one, else None."""
        held = self._held.get(agent)
        if held:
            return min(held)
        return min(self._unclaimed) if self._unclaimed else None
