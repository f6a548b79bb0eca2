"""LoopReseedDaemon: at the first tick of a loop, applies the seed the previous loop left behind."""

from __future__ import annotations

from soulfra.world.events import Event, SeedApplied
from soulfra.world.model import WorldState


class LoopReseedDaemon:
    def apply(self, state: WorldState, events: list[Event]) -> None:
        seed = state.pending_seed
        if seed is None or state.tick != state.loop.start:
            return
        state.loop.themes = seed.themes
        state.loop.intentions = seed.intentions
        state.loop.baseline = seed.baseline
        state.pending_seed = None
        events.append(
            SeedApplied(
                tick=state.tick,
                loop=seed.loop,
                themes=seed.themes,
                intentions=seed.intentions,
                baseline=seed.baseline,
            )
        )
