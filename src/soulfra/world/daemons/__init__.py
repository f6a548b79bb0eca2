"""The world's daemons: they run every tick, after the agents have acted."""

from __future__ import annotations

from soulfra.world.daemons.final_export import FinalExportDaemon, collect_seed
from soulfra.world.daemons.loop_reseed import LoopReseedDaemon
from soulfra.world.daemons.ritual_engine import RitualEngine
from soulfra.world.daemons.thread_weaver import ThreadWeaver

__all__ = ["FinalExportDaemon", "LoopReseedDaemon", "RitualEngine", "ThreadWeaver", "collect_seed"]
