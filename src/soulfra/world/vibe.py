"""Vibe weather: the instance's collective mood read as weather, derived from the agents every tick.

The condition is one of five phases, classified from mean valence (temperature), mean arousal and the spread of
valences; pressure is the phase's intensity, wind the share of agents that acted, and the forecast classifies the
reading the current trend leads to. An ``AlterVibe`` intervention holds a condition for a while.
"""

from __future__ import annotations

from dataclasses import dataclass

from soulfra.world.fixed import SCALE, clamp

CALM_BLOOM = "calm-bloom"
ECHO_STORM = "echo-storm"
TRUST_SURGE = "trust-surge"
DRIFT_WAVE = "drift-wave"
CHAOS_BLOOM = "chaos-bloom"
PHASES = (CALM_BLOOM, ECHO_STORM, TRUST_SURGE, DRIFT_WAVE, CHAOS_BLOOM)

HISTORY = 8


@dataclass(frozen=True, slots=True)
class PhaseInfo:
    frequency: int
    colour: str
    emotion: str
    narrative: str
    mood: tuple[int, int]  # the (valence, arousal) an AlterVibe pulls agents toward


PHASE_INFO = {
    CALM_BLOOM: PhaseInfo(432, "#7fb7be", "peaceful", "a hush settles; thoughts open slowly", (350_000, 150_000)),
    ECHO_STORM: PhaseInfo(528, "#d17a22", "creative", "ideas echo and cascade from voice to voice", (300_000, 850_000)),
    TRUST_SURGE: PhaseInfo(639, "#5aa469", "harmonious", "trust runs high; the circle draws close", (750_000, 450_000)),
    DRIFT_WAVE: PhaseInfo(
        741, "#6c63ff", "exploratory", "attention drifts outward, flowing and unmoored", (-50_000, 450_000)
    ),
    CHAOS_BLOOM: PhaseInfo(
        852, "#c2185b", "transformative", "old patterns break; something new is forming", (-300_000, 900_000)
    ),
}


def classify(temperature: int, arousal: int, spread: int) -> tuple[str, int]:
    """The phase and its intensity (0..SCALE) for a mood reading."""
    if spread > 450_000 and arousal > 500_000:
        return CHAOS_BLOOM, clamp((spread + arousal) // 2, 0, SCALE)
    if arousal > 560_000 and temperature >= 0:
        return ECHO_STORM, clamp(arousal, 0, SCALE)
    if temperature > 250_000 and spread < 300_000:
        return TRUST_SURGE, clamp(temperature + (SCALE - spread) // 4, 0, SCALE)
    if arousal < 420_000 and temperature >= -100_000:
        return CALM_BLOOM, clamp(SCALE - arousal, 0, SCALE)
    return DRIFT_WAVE, clamp(SCALE - abs(temperature) - arousal // 4, 0, SCALE)


def forecast(history: tuple[tuple[int, int, int], ...]) -> str:
    """The phase the recent trend leads to, ``HISTORY`` ticks ahead."""
    if not history:
        return CALM_BLOOM
    first, last = history[0], history[-1]
    projected = [last[i] + (last[i] - first[i]) for i in range(3)]
    return classify(
        clamp(projected[0], -SCALE, SCALE), clamp(projected[1], 0, SCALE), clamp(projected[2], 0, 2 * SCALE)
    )[0]
