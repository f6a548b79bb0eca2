"""Terminal rendering of a local world with Rich: the live view of ``run --live`` (drawn by ``soulfra.cli.view``,
which ``soulfra watch`` shares) and the run summary. Reads a world; never changes it."""

from __future__ import annotations

from rich.console import RenderableType
from rich.panel import Panel
from rich.table import Table

from soulfra.cli.runner import RunReport
from soulfra.cli.view import AGENT_ROWS, AgentRow, Feeds, Frame, Weather, render, vibe_line
from soulfra.projection import fixed_to_number, vibe_to_json
from soulfra.world import World, event_to_json
from soulfra.world.events import Event
from soulfra.world.model import VibeReading


def weather(vibe: VibeReading | None) -> Weather | None:
    """A world's vibe reading as the view shows it."""
    return Weather.from_json(vibe_to_json(vibe))


def frame(world: World) -> Frame:
    """The view's frame of ``world`` as it is now."""
    state = world.state
    rows = tuple(
        AgentRow(
            name=spec.name,
            mind=spec.mind,
            valence=fixed_to_number(int(state.valence[i])),
            arousal=fixed_to_number(int(state.arousal[i])),
            energy=fixed_to_number(int(state.energy[i])),
            possessed_by=state.possessed.get(i),
        )
        for i, spec in enumerate(state.specs[:AGENT_ROWS])
    )
    return Frame(tick=state.tick, loop=state.loop.index, size=state.size, vibe=weather(state.vibe), agents=rows)


class LiveView:
    """Keeps the latest posts and ritual news of a local world and renders it each tick."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.feeds = Feeds()
        self._names = {spec.id: spec.name for spec in world.state.specs}  # a world's agents never change

    def absorb(self, events: list[Event]) -> None:
        self.feeds.absorb((event_to_json(event) for event in events), self._names)

    def render(self) -> RenderableType:
        return render(frame(self.world), self.feeds)


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
    table.add_row("vibe", vibe_line(weather(report.vibe)))
    events = ", ".join(f"{kind} {count:,}" for kind, count in sorted(report.events.items()))
    table.add_row("events", events or "none")
    if report.minds is not None:
        replies = ", ".join(f"{outcome} {count:,}" for outcome, count in report.minds.items())
        skipped = f"; {report.minds_skipped:,} not asked (over budget)" if report.minds_skipped else ""
        table.add_row("model replies", (replies or "none recorded") + skipped)
    return Panel(table, title="Soulfra run", title_align="left")
