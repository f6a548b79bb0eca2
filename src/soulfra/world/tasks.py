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
