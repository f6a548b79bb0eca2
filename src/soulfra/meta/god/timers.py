"""FreezeTimers: the timers that end timed freezes, one per frozen instance, re-armed after a restart.

A timer only asks for a thaw when its time comes (through the ``thaw`` it was given, so the thaw is a god command
like any other, locked and audited); it never pauses, resumes or marks a world itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from soulfra.errors import NotFoundError, PlatformError
from soulfra.offload import off_loop
from soulfra.store.ports import InstanceRecord, Store
from soulfra.world.inputs import Mark

__all__ = ["FreezeTimers", "now"]

log = logging.getLogger(__name__)


def now() -> datetime:
    return datetime.now(UTC)


class FreezeTimers:
    def __init__(self, store: Store, thaw: Callable[[str], Awaitable[object]]) -> None:
        self._store = store
        self._thaw = thaw  # thaws one instance as the freeze timer
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def arm(self, instance_id: str, delay: float) -> None:
        self._tasks[instance_id] = asyncio.get_running_loop().create_task(self._thaw_later(instance_id, delay))

    async def rearm(self, record: InstanceRecord) -> None:
        """A frozen instance's timed freeze, continued after a restart: the end its last FREEZE_TIME mark noted."""
        logged = await off_loop(self._store.inputs.read, record.id, from_tick=record.head_tick)
        marks = [
            s.input for s in logged
            if isinstance(s.input, Mark) and s.input.command in ("FREEZE_TIME", "THAW_TIME")
        ]  # fmt: skip
        if not marks or marks[-1].command != "FREEZE_TIME":
            return
        try:
            until = json.loads(marks[-1].note).get("until")
            end = datetime.fromisoformat(until) if isinstance(until, str) else None
        except (ValueError, AttributeError):
            return
        if end is not None:
            self.arm(record.id, max(0.0, (end - now()).total_seconds()))

    def cancel(self, instance_id: str) -> None:
        timer = self._tasks.pop(instance_id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    def cancel_all(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()

    async def _thaw_later(self, instance_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        self._tasks.pop(instance_id, None)
        try:
            await self._thaw(instance_id)
        except (NotFoundError, PlatformError) as exc:  # deleted or stopped meanwhile
            log.info("thawing %s after its freeze: %s", instance_id, exc.detail)
