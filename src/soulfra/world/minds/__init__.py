"""The built-in minds, by the key a world file names them with (the class name works too)."""

from __future__ import annotations

from soulfra.world.minds.agent_zero import AgentZeroEngine
from soulfra.world.minds.arty import ArtyOrchestrator
from soulfra.world.minds.base import Mind, View, drift_moods
from soulfra.world.minds.cal_riven import CalRivenAgent
from soulfra.world.minds.contagion import MoodContagion

MINDS: dict[str, Mind] = {
    mind.key: mind for mind in (CalRivenAgent(), ArtyOrchestrator(), AgentZeroEngine(), MoodContagion())
}
MIND_ALIASES: dict[str, str] = {type(mind).__name__: key for key, mind in MINDS.items()}

__all__ = [
    "MINDS",
    "MIND_ALIASES",
    "AgentZeroEngine",
    "ArtyOrchestrator",
    "CalRivenAgent",
    "Mind",
    "MoodContagion",
    "View",
    "drift_moods",
]
