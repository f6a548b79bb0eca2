"""Response models of the public surface and of the mirror and protocol reads: the vibe weather, echoes, ritual
traces, unified snapshots, anomalies, loop seeds, the rule set and validation results.

The surface's own reads answer with the bytes it cached (``JsonBytes``); their models document those bytes and the
tests validate samples of them, but the routes do not decode and encode them again.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from soulfra.api.models.base import Closed, Open

__all__ = [
    "Anomalies",
    "Anomaly",
    "Echo",
    "Echoes",
    "FoundViolations",
    "LoopSeed",
    "ProtocolViolations",
    "Rules",
    "Seeds",
    "Trace",
    "Traces",
    "UnifiedList",
    "UnifiedRow",
    "UnifiedSnapshot",
    "Validation",
    "Violation",
    "Weather",
    "WeatherReading",
    "WeatherReport",
]


class Weather(Closed):
    """The vibe weather: numbers here are for display, rounded from the world's fixed point."""

    condition: str
    temperature: float
    pressure: float
    wind: float
    forecast: str
    frequency: int
    colour: str
    emotion: str
    narrative: str


class WeatherReading(Weather):
    """The weather as it was at ``tick``."""

    tick: int


class WeatherReport(Closed):
    tick: int
    weather: Weather | None = Field(description="None before the first tick")
    history: list[WeatherReading]


class Echo(Open):
    """One echo: a post, a whisper heard, an artifact; the other fields depend on ``kind``."""

    agent: str
    tick: int
    kind: str


class Echoes(Closed):
    tick: int
    agent: str | None = Field(default=None, description="Only when one agent's echoes were asked for")
    echoes: list[Echo]


class Trace(Open):
    """One step of a ritual's timeline (proposed, gathered, blessed, refused, performed, sealed) or another trace;
    the other fields depend on ``kind``."""

    kind: str
    tick: int


class Traces(Closed):
    tick: int
    traces: list[Trace]


class Violation(Closed):
    rule: str
    detail: str


class Validation(Closed):
    subject: str
    valid: bool
    checked: list[str]
    violations: list[Violation]


class FoundViolations(Closed):
    """One validation that found violations."""

    validation: int = Field(description="Its number among the protocol platform's validations (1 is the first)")
    subject: str
    instance: str = Field(description="The instance it was about")
    checked: list[str]
    violations: list[Violation]


class ProtocolViolations(Closed):
    validations: int = Field(description="Validations since the protocol platform started")
    violations: int = Field(description="Violations they found")
    kept: int = Field(description="How many validations with violations are kept (the oldest go first)")
    recent: list[FoundViolations] = Field(description="The latest validations that found violations, newest first")


class Licence(Closed):
    fork: bool
    export: bool
    max_forks: int | None


class Rules(Closed):
    max_agents: int
    required_agents: list[str]
    max_input_bytes: int
    max_lineage_depth: int
    licence: Licence
    rules: list[str]


class UnifiedRow(Closed):
    """A unified snapshot as listed: the tick, the hash of the merged view, the pause it cost and its conflicts."""

    id: int
    tick: int
    system_hash: str
    pause_ns: int
    conflicts: list[dict[str, Any]]


class UnifiedList(Closed):
    unified: list[UnifiedRow]


class UnifiedSnapshot(Open):
    """The active platform merge of one tick: the merged view, the four platforms' own views, the conflicts and how
    each was settled, the stored snapshot. A stored record is returned as it was stored: the fields after
    ``conflicts`` are left out where it has none."""

    tick: int
    system_hash: str = Field(description="The hash of the merged view")
    merged: dict[str, Any]
    conflicts: list[dict[str, Any]]
    views: dict[str, dict[str, Any]] | None = Field(default=None, description="Each platform's own view")
    instance: str | None = None
    snapshot: dict[str, Any] | None = Field(default=None, description="The stored snapshot of the merged tick")
    pause_ns: int | None = Field(default=None, description="How long the runtime's ticks were held")
    took_ns: int | None = None
    id: int | None = None


class Anomaly(Open):
    """Something the mirror noticed (``anomaly`` names what), at ``tick``."""

    kind: str
    anomaly: str
    tick: int
    detail: str


class Anomalies(Closed):
    tick: int
    anomalies: list[Anomaly]


class LoopSeed(Closed):
    """A loop's seed as the mirror's trace collector built it from the traces of loop ``from_loop``."""

    loop: int
    from_loop: int
    themes: list[str]
    intentions: list[str]
    posts: int
    performed: int
    refused: int
    artifacts: int
    tick: int


class Seeds(Closed):
    tick: int
    seeds: list[LoopSeed]
