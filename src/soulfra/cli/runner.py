"""Running a world outside the core: reading input logs, stepping with a schedule, summarising the result.

Owns file formats (JSON-lines input logs and event logs) and measurement; the CLI only translates flags and
prints. Nothing here changes what a world computes.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from soulfra.durable import DurableWorld
from soulfra.errors import ConfigError, InputError, OutputError, UnknownAgentError, WorldFileError
from soulfra.projection import vibe_to_json
from soulfra.world import World, WorldSpec, event_to_json, parse_input, parse_world, schedule
from soulfra.world.events import Event
from soulfra.world.inputs import Input
from soulfra.world.model import VibeReading

MAX_INPUT_LINE = 64 * 1024


def load_world_file(path: Path) -> WorldSpec:
    """Read and validate a world file (TOML); errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise WorldFileError(f"{path}: cannot read world file: {reason}") from exc
    return parse_world(text, source=str(path))


def load_inputs(path: Path) -> list[Input]:
    """Parse a JSON-lines input log; errors name the file and line."""
    return [item for _, item in load_numbered_inputs(path)]


def check_agents(world: World, path: Path, numbered: list[tuple[int, Input]]) -> None:
    """Refuse an input log that names an agent ``world`` does not have, naming the file and line (a world's agents
    never change, so its first state tells for every tick)."""
    for number, item in numbered:
        try:
            world.check(item)
        except UnknownAgentError as exc:
            raise UnknownAgentError(f"{path}:{number}: {exc.detail}") from None


def check_ticks(
    path: Path,
    numbered: list[tuple[int, Input]],
    start_tick: int,
    ticks: int,
    check: Callable[[Input], None] | None = None,
) -> None:
    """Refuse an input log that ``run`` would refuse for its ticks, naming the file and line: an input stamped for a
    tick the world has passed, one past the run's end (``ticks``: 0 runs until stopped), or one ``check`` refuses
    (a kept world's horizon...). The core's errors know no files; this maps them to the line that caused them."""
    end = start_tick + ticks
    for number, item in numbered:
        try:
            schedule((item,), start_tick)
            if ticks and item.tick >= end:
                raise InputError(f"an input is stamped for tick {item.tick}, but the run ends before tick {end}")
            if check is not None:
                check(item)
        except InputError as exc:
            raise type(exc)(f"{path}:{number}: {exc.detail}") from None


def load_numbered_inputs(path: Path) -> list[tuple[int, Input]]:
    """``load_inputs`` with each input's line number."""
    items: list[tuple[int, Input]] = []
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot read input log: {exc.strerror or exc}") from exc
    with handle:
        for number, raw in enumerate(handle, start=1):
            if len(raw) > MAX_INPUT_LINE:
                raise InputError(f"{path}:{number}: line is longer than {MAX_INPUT_LINE} bytes")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"{path}:{number}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line, parse_float=Decimal)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: not valid JSON: {exc.msg}") from None
            try:
                items.append((number, parse_input(obj)))
            except InputError as exc:
                raise InputError(f"{path}:{number}: {exc.detail}") from None
    return items


@dataclass(slots=True)
class RunReport:
    seed: int
    ticks: int
    agents: int
    state_hash: str
    elapsed_s: float
    events: Counter[str] = field(default_factory=Counter)
    vibe: VibeReading | None = None
    loops_sealed: int = 0
    tick: int = 0  # the world's tick at the end
    instance: str | None = None  # the stored instance, for a run with a database
    start_tick: int = 0
    minds: dict[str, int] | None = None  # the language model's replies recorded, by outcome (None: no model asked)
    minds_skipped: int = 0  # thoughts the model's budget did not let the run ask in time (their agents fell back)

    @property
    def agent_steps_per_s(self) -> float:
        return self.agents * self.ticks / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "ticks": self.ticks,
            "agents": self.agents,
            "state_hash": self.state_hash,
            "agent_steps_per_s": round(self.agent_steps_per_s, 1),
            "elapsed_s": round(self.elapsed_s, 6),
            "events": dict(sorted(self.events.items())),
            "loops_sealed": self.loops_sealed,
            "vibe": vibe_to_json(self.vibe),
            "tick": self.tick,
            **({"instance": self.instance, "start_tick": self.start_tick} if self.instance is not None else {}),
            **({"minds": self.minds, "minds_skipped": self.minds_skipped} if self.minds is not None else {}),
        }


@contextmanager
def event_log(path: Path | None) -> Iterator[Callable[[list[Event]], None]]:
    """A sink that appends each tick's events to ``path`` as JSON lines (or discards them)."""
    if path is None:

        def discard(events: list[Event]) -> None:
            del events

        yield discard
        return
    try:
        handle: IO[str] = path.open("w", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write event log: {exc.strerror or exc}") from exc
    failed = False

    def write(events: list[Event]) -> None:
        nonlocal failed
        try:
            for event in events:
                handle.write(json.dumps(event_to_json(event), ensure_ascii=False, separators=(",", ":")) + "\n")
            handle.flush()  # a crash loses at most the tick in progress
        except OSError as exc:
            failed = True
            raise OutputError(f"{path}: cannot write event log: {exc.strerror or exc}") from exc

    try:
        yield write
    finally:
        try:
            handle.close()
        except OSError as exc:
            if not failed:  # otherwise the write error is already on its way up
                raise OutputError(f"{path}: cannot write event log: {exc.strerror or exc}") from exc


def run(
    world: World | DurableWorld,
    ticks: int,
    inputs: list[Input],
    *,
    on_tick: Callable[[list[Event]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    before_tick: Callable[[], Sequence[Input] | None] | None = None,
) -> RunReport:
    """Step ``world`` ``ticks`` times (0: until ``should_stop``), applying ``inputs`` at their ticks.

    A ``DurableWorld`` stores (and commits) ``inputs`` before the first tick; ``before_tick`` runs ahead of every
    tick, where a live source of inputs can submit them, and may return inputs stamped for the coming tick (a
    language model's recorded replies): a ``DurableWorld`` stores them first, a ``World`` steps with them.
    """
    if ticks < 0 or (ticks == 0 and should_stop is None):
        raise ConfigError("ticks must be at least 1 (0, run until stopped, needs a way to stop)")
    core = world.world if isinstance(world, DurableWorld) else world
    start_tick = core.tick
    by_tick = schedule(inputs, start_tick)
    if ticks and by_tick and max(by_tick) >= start_tick + ticks:
        late = max(by_tick)
        raise InputError(f"an input is stamped for tick {late}, but the run ends before tick {start_tick + ticks}")
    for item in inputs:
        core.check(item)
    if isinstance(world, DurableWorld):
        world.submit(inputs)
        durable = world

        def step(extra: Sequence[Input]) -> list[Event]:
            if extra:
                durable.submit(extra)
            return durable.step()
    else:

        def step(extra: Sequence[Input]) -> list[Event]:
            return core.step([*by_tick.get(core.tick, ()), *extra])

    counts: Counter[str] = Counter()
    begun = time.perf_counter()
    done = 0
    while (ticks and done < ticks) or (not ticks and not (should_stop and should_stop())):
        extra = before_tick() if before_tick is not None else None
        events = step(extra or ())
        for event in events:
            counts[event.kind] += 1
        if on_tick is not None:
            on_tick(events)
        done += 1
        if ticks and should_stop is not None and should_stop():
            break
    elapsed = time.perf_counter() - begun
    return RunReport(
        seed=core.state.seed,
        ticks=done,
        agents=core.state.size,
        state_hash=core.state_hash(),
        elapsed_s=elapsed,
        events=counts,
        vibe=core.state.vibe,
        loops_sealed=counts.get("loop_sealed", 0),
        tick=core.tick,
        instance=world.instance_id if isinstance(world, DurableWorld) else None,
        start_tick=start_tick,
    )
