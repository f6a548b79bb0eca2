"""The live terminal view of one world, shared by ``soulfra run --live`` (a local world) and ``soulfra watch`` (a
running server's instance): what a frame shows, the feeds of latest posts and rituals, and drawing both with Rich.

It knows no world and no server: each command turns what it has (a ``World``, the API's JSON) into a ``Frame`` and
events in their JSON shape (``event_to_json``, the stream's ``data``), so both draw the same view from one code path.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

__all__ = ["AGENT_ROWS", "FEED_ROWS", "AgentRow", "Feeds", "Frame", "Weather", "mood_bar", "render", "vibe_line"]

AGENT_ROWS = 12
FEED_ROWS = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class Weather:
    """The vibe weather as shown: numbers already decimals (display only, never fed back into a world)."""

    condition: str
    colour: str
    frequency: int
    temperature: float
    pressure: float
    wind: float
    forecast: str
    narrative: str

    @classmethod
    def from_json(cls, body: Mapping[str, Any] | None) -> Weather | None:
        """The API's weather object (``vibe_to_json``'s shape); None for no reading yet."""
        if body is None:
            return None
        return cls(
            condition=str(body["condition"]), colour=str(body["colour"]), frequency=int(body["frequency"]),
            temperature=float(body["temperature"]), pressure=float(body["pressure"]), wind=float(body["wind"]),
            forecast=str(body["forecast"]), narrative=str(body["narrative"]),
        )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRow:
    name: str
    mind: str
    valence: float
    arousal: float
    energy: float
    possessed_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One instant of a world as the view shows it: at most ``AGENT_ROWS`` agents of ``size``; ``note`` says what
    the frame may not show (a paused runtime, a lost connection), empty when nothing."""

    tick: int
    loop: int
    size: int
    vibe: Weather | None
    agents: tuple[AgentRow, ...]
    instance: str | None = None
    note: str = ""


def mood_bar(value: float, width: int = 10) -> Text:
    """A bar from -1 to 1, centred: red to the left, green to the right."""
    half = width // 2
    filled = round(abs(value) * half)
    left = " " * (half - filled) + "█" * filled if value < 0 else " " * half
    right = "█" * filled + " " * (half - filled) if value >= 0 else " " * half
    return Text.assemble((left, "red"), "│", (right, "green"), f" {value:+.2f}")


def vibe_line(vibe: Weather | None) -> Text:
    if vibe is None:
        return Text("no reading yet", style="dim")
    return Text.assemble(
        (vibe.condition, f"bold {vibe.colour}"),
        f"  {vibe.frequency} Hz  temperature {vibe.temperature:+.2f}",
        f"  pressure {vibe.pressure:.2f}  wind {vibe.wind:.2f}",
        f"  forecast {vibe.forecast}  — {vibe.narrative}",
    )


class Feeds:
    """The latest posts and ritual news, as lines, from events in their JSON shape (``{"kind", "tick", ...}``)."""

    def __init__(self) -> None:
        self.posts: deque[str] = deque(maxlen=FEED_ROWS)
        self.rituals: deque[str] = deque(maxlen=FEED_ROWS)

    def clear(self) -> None:
        self.posts.clear()
        self.rituals.clear()

    def absorb(self, events: Iterable[Mapping[str, Any]], names: Mapping[str, str]) -> None:
        """Add the lines of the events worth a line; ``names`` gives agents' names by id (the id when unknown)."""
        for event in events:
            kind, tick = event.get("kind"), event.get("tick")

            def name(key: str = "agent", event: Mapping[str, Any] = event) -> str:
                agent = str(event.get(key, "?"))
                return names.get(agent, agent)

            if kind == "post_made":
                self.posts.append(f"[{tick}] {name()} in #{event.get('topic')}: {event.get('text')}")
            elif kind == "whisper_heard":
                self.posts.append(
                    f"[{tick}] whisper to {event.get('agent')} ({event.get('tone')}): {event.get('text')}"
                )
            elif kind == "ritual_proposed":
                self.rituals.append(f"[{tick}] {event.get('name')} #{event.get('ritual')} proposed by {name()}")
            elif kind == "ritual_performed":
                count = len(event.get("participants") or ())
                self.rituals.append(f"[{tick}] {event.get('name')} #{event.get('ritual')} performed by {count}")
            elif kind == "ritual_refused":
                self.rituals.append(f"[{tick}] ritual #{event.get('ritual')} refused: {event.get('reason')}")
            elif kind == "ritual_lapsed":
                self.rituals.append(f"[{tick}] ritual #{event.get('ritual')} lapsed: {event.get('reason')}")
            elif kind == "ritual_sealed":
                digest = str(event.get("digest", ""))[:8]
                self.rituals.append(f"[{tick}] {event.get('name')} #{event.get('ritual')} sealed {digest}")


def render(frame: Frame, feeds: Feeds) -> RenderableType:
    """The view: the vibe weather under a title with the tick, the agents, the latest posts, the rituals."""
    agents = Table(expand=True, box=None, pad_edge=False)
    for column in ("agent", "mind", "mood", "arousal", "energy", ""):
        agents.add_column(column)
    for row in frame.agents[:AGENT_ROWS]:
        agents.add_row(
            row.name,
            row.mind,
            mood_bar(row.valence),
            f"{row.arousal:.2f}",
            f"{row.energy:.2f}",
            f"possessed by {row.possessed_by}" if row.possessed_by is not None else "",
        )
    if frame.size > AGENT_ROWS:
        agents.add_row(f"… and {frame.size - AGENT_ROWS} more", "", "", "", "", "")
    where = f"Soulfra {frame.instance}" if frame.instance else "Soulfra"
    title = f"{where} — tick {frame.tick}, loop {frame.loop}, {frame.size} agents"
    return Group(
        Panel(
            vibe_line(frame.vibe), title=title, title_align="left", subtitle=frame.note or None, subtitle_align="left"
        ),
        Panel(agents, title="agents", title_align="left"),
        # Text, not markup: a post or a whisper may hold brackets (a whisper's text is anyone's with a token)
        Panel(Text("\n".join(feeds.posts) or "(quiet)"), title="latest posts", title_align="left"),
        Panel(Text("\n".join(feeds.rituals) or "(none yet)"), title="rituals", title_align="left"),
    )
