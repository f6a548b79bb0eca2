"""Terminal rendering with Rich: the live world view and the run summary. Reads a world; never changes it."""

from __future__ import annotations

from collections import deque

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from soulfra.cli.runner import RunReport
from soulfra.projection import fixed_to_number
from soulfra.world import World
from soulfra.world.events import (
    Event,
    PostMade,
    RitualLapsed,
    RitualPerformed,
    RitualProposed,
    RitualRefused,
    RitualSealed,
    WhisperHeard,
)
from soulfra.world.model import VibeReading

AGENT_ROWS = 12
FEED_ROWS = 8


def mood_bar(value: float, width: int = 10) -> Text:
    """A bar from -1 to 1, centred: red to the left, green to the right."""
    half = width // 2
    filled = round(abs(value) * half)
    left = " " * (half - filled) + "█" * filled if value < 0 else " " * half
    right = "█" * filled + " " * (half - filled) if value >= 0 else " " * half
    return Text.assemble((left, "red"), "│", (right, "green"), f" {value:+.2f}")


def vibe_line(vibe: VibeReading | None) -> Text:
    if vibe is None:
        return Text("no reading yet", style="dim")
    return Text.assemble(
        (vibe.condition, f"bold {vibe.colour}"),
        f"  {vibe.frequency} Hz  temperature {fixed_to_number(vibe.temperature):+.2f}",
        f"  pressure {fixed_to_number(vibe.pressure):.2f}  wind {fixed_to_number(vibe.wind):.2f}",
        f"  forecast {vibe.forecast}  — {vibe.narrative}",
    )


class LiveView:
    """Keeps the latest posts and ritual news and renders the world each tick."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.posts: deque[str] = deque(maxlen=FEED_ROWS)
        self.rituals: deque[str] = deque(maxlen=FEED_ROWS)

    def absorb(self, events: list[Event]) -> None:
        specs = {spec.id: spec.name for spec in self.world.state.specs}
        for event in events:
            if isinstance(event, PostMade):
                self.posts.append(
                    f"[{event.tick}] {specs.get(event.agent, event.agent)} in #{event.topic}: {event.text}"
                )
            elif isinstance(event, WhisperHeard):
                self.posts.append(f"[{event.tick}] whisper to {event.agent} ({event.tone}): {event.text}")
            elif isinstance(event, RitualProposed):
                self.rituals.append(f"[{event.tick}] {event.name} #{event.ritual} proposed by {specs[event.agent]}")
            elif isinstance(event, RitualPerformed):
                self.rituals.append(
                    f"[{event.tick}] {event.name} #{event.ritual} performed by {len(event.participants)}"
                )
            elif isinstance(event, RitualRefused):
                self.rituals.append(f"[{event.tick}] ritual #{event.ritual} refused: {event.reason}")
            elif isinstance(event, RitualLapsed):
                self.rituals.append(f"[{event.tick}] ritual #{event.ritual} lapsed: {event.reason}")
            elif isinstance(event, RitualSealed):
                self.rituals.append(f"[{event.tick}] {event.name} #{event.ritual} sealed {event.digest[:8]}")

    def render(self) -> RenderableType:
        state = self.world.state
        agents = Table(expand=True, box=None, pad_edge=False)
        for column in ("agent", "mind", "mood", "arousal", "energy", ""):
            agents.add_column(column)
        for i, spec in enumerate(state.specs[:AGENT_ROWS]):
            agents.add_row(
                spec.name,
                spec.mind,
                mood_bar(fixed_to_number(int(state.valence[i]))),
                f"{fixed_to_number(int(state.arousal[i])):.2f}",
                f"{fixed_to_number(int(state.energy[i])):.2f}",
                f"possessed by {state.possessed[i]}" if i in state.possessed else "",
            )
        if state.size > AGENT_ROWS:
            agents.add_row(f"… and {state.size - AGENT_ROWS} more", "", "", "", "", "")
        title = f"Soulfra — tick {state.tick}, loop {state.loop.index}, {state.size} agents"
        return Group(
            Panel(vibe_line(state.vibe), title=title, title_align="left"),
            Panel(agents, title="agents", title_align="left"),
            Panel("\n".join(self.posts) or "(quiet)", title="latest posts", title_align="left"),
            Panel("\n".join(self.rituals) or "(none yet)", title="rituals", title_align="left"),
        )


def summary(report: RunReport) -> RenderableType:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("seed", str(report.seed))
    table.add_row("ticks", f"{report.ticks:,}")
    table.add_row("agents", f"{report.agents:,}")
    table.add_row("state hash", report.state_hash)
    table.add_row("speed", f"{report.agent_steps_per_s:,.0f} agent-steps/s ({report.elapsed_s:.2f} s)")
    table.add_row("loops sealed", str(report.loops_sealed))
    table.add_row("vibe", vibe_line(report.vibe))
    events = ", ".join(f"{kind} {count:,}" for kind, count in sorted(report.events.items()))
    table.add_row("events", events or "none")
    return Panel(table, title="Soulfra run", title_align="left")
