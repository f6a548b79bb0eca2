"""Language minds for a world stepped by synchronous code (``soulfra run``): a ``MindAsker`` on an event loop of
its own, in a thread, so that the model's calls go on while the world ticks. Between two ticks the caller asks
for the replies due at the coming one (``replies_due``); the asker reads the state only then, while the caller
waits, so the world is never read while it steps. Must not: step the world, or store anything itself.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from soulfra.durable import DurableWorld
from soulfra.language.asker import MindAsker, MindSettings, logged_replies, open_asker
from soulfra.metrics import Metrics
from soulfra.world import World
from soulfra.world.inputs import MindReply, parse_input

T = TypeVar("T")

__all__ = ["ThreadedAsker"]


class ThreadedAsker:
    """Asks the model for a synchronously stepped world's language agents; use as a context manager (``close``
    cancels the calls under way and stops the thread). ``outcomes`` counts the replies handed out, by outcome;
    ``skipped`` the thoughts never asked, as the budget would not admit them in time (their agents fell back)."""

    def __init__(self, settings: MindSettings, metrics: Metrics | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="soulfra-minds", daemon=True)
        self._thread.start()
        self.metrics = metrics or Metrics()
        self.asker: MindAsker = self._call(self._open(settings, self.metrics))
        self.outcomes: Counter[str] = Counter()
        self._logged: set[tuple[str, int]] | None = None  # replies a continued instance's log holds already

    @staticmethod
    async def _open(settings: MindSettings, metrics: Metrics) -> MindAsker:
        return open_asker(settings, metrics)  # made on the loop, whose tasks and client it uses

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def replies_due(self, world: World | DurableWorld) -> list[MindReply]:
        """Ask for each thought pending in ``world``'s state that has no ask yet, then the replies due at its
        coming tick (waited for within the budget), as inputs stamped for it. Call between ticks only."""
        if isinstance(world, DurableWorld):
            if self._logged is None:
                self._logged = logged_replies(world)
            core = world.world
        else:
            core, self._logged = world, set()
        replies = []
        for item in self._call(self._ask_and_collect(core, self._logged)):
            reply = parse_input(item)  # checked as any logged input is
            if isinstance(reply, MindReply):
                self.outcomes[reply.outcome] += 1
                replies.append(reply)
        return replies

    @property
    def skipped(self) -> int:
        value = self.metrics.registry.get_sample_value("soulfra_mind_calls_total", {"outcome": "skipped"})
        return int(value or 0)

    async def _ask_and_collect(self, core: World, logged: set[tuple[str, int]]) -> list[dict[str, Any]]:
        self.asker.ask(core.state, logged)
        return await self.asker.collect(core.tick)

    def close(self) -> None:
        if not self._loop.is_closed():
            self._call(self.asker.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> ThreadedAsker:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
