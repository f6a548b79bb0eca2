"""``soulfra run``: a world run from this process, offline, for a number of ticks (or until stopped), with its
inputs from a file or stdin, paced, drawn live, or kept in a database; with --model-url its language agents ask a
model (``soulfra.language.driver``) and the replies are recorded as inputs. Reading and measuring are
``soulfra.cli.runner``'s; this module translates the flags and prints."""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from soulfra.cli import server as cli_server
from soulfra.cli import store as cli_store
from soulfra.cli.options import (
    AGENTS_HELP,
    RATE_HELP,
    LanguageAgentsOption,
    ModelInFlightOption,
    ModelJsonOption,
    ModelOption,
    ModelTimeoutOption,
    ModelUrlOption,
    rate_rule,
)
from soulfra.errors import ConfigError
from soulfra.limits import MAX_GENERATED_AGENTS

if TYPE_CHECKING:
    from soulfra.cli.runner import RunReport
    from soulfra.durable import DurableWorld
    from soulfra.language import MindSettings
    from soulfra.world import World
    from soulfra.world.events import Event
    from soulfra.world.inputs import Input

__all__ = ["run_command"]

PROGRESS_MIN_STEPS = 200_000  # show a progress bar when a run is at least this many agent-steps


class _StopFlag:
    """Set by Ctrl-C (SIGINT) or SIGTERM so a run ends cleanly after the tick under way."""

    def __init__(self) -> None:
        self.raised = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame
        self.raised = True

    def stopped(self) -> bool:
        return self.raised


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[_StopFlag]:
    """A flag Ctrl-C and SIGTERM set, instead of ending the process, for what runs inside."""
    flag = _StopFlag()
    previous = signal.signal(signal.SIGINT, flag), signal.signal(signal.SIGTERM, flag)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


def run_command(
    ctx: typer.Context,
    seed: Annotated[int, typer.Option(min=0, help="The world's seed (0 to 2**64-1).")] = 0,
    ticks: Annotated[int, typer.Option(min=0, help="Ticks to run; 0 runs until Ctrl-C (with --live or --db).")] = 100,
    agents: Annotated[int, typer.Option(min=0, max=MAX_GENERATED_AGENTS, help=AGENTS_HELP + ".")] = 0,
    world: Annotated[Path | None, typer.Option(help="World file (TOML) defining the world and its agents.")] = None,
    inputs: Annotated[
        str | None, typer.Option(help="Input log (JSON lines) of operator inputs by tick; '-' reads stdin live (--db).")
    ] = None,
    events: Annotated[Path | None, typer.Option(help="Write every event to this file as JSON lines.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a summary.")] = False,
    live: Annotated[bool, typer.Option("--live", help="Show the world in the terminal as it runs.")] = False,
    rate: Annotated[
        float | None,
        typer.Option(callback=rate_rule, help=RATE_HELP + " (default: 5 with --live, else as fast as it goes)."),
    ] = None,
    db: Annotated[
        str | None, typer.Option(help="Persist the run in this database (sqlite:///PATH or postgresql://...).")
    ] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="With --db: start a new instance even if one exists.")] = False,
    snapshot_every: Annotated[int, typer.Option(min=1, help="With --db: store a snapshot every this many ticks.")] = 20,
    language_agents: LanguageAgentsOption = False,
    model_url: ModelUrlOption = None,
    model: ModelOption = None,
    model_in_flight: ModelInFlightOption = 8,
    model_timeout: ModelTimeoutOption = 10.0,
    model_json: ModelJsonOption = "auto",
) -> None:
    """Run a world for a number of ticks and report its state hash; with --db, persist it (or continue it). With
    --model-url, its language agents ask that model, and their replies are recorded (in --db's input log)."""
    from soulfra.cli.runner import check_agents, check_ticks, load_numbered_inputs, load_world_file  # noqa: PLC0415
    from soulfra.durable import DurabilitySettings, DurableWorld  # noqa: PLC0415
    from soulfra.meta.audit_signing import signed_recorder  # noqa: PLC0415
    from soulfra.security.identity import cli_identity  # noqa: PLC0415
    from soulfra.settings import ModelSettings, SoulfraSettings  # noqa: PLC0415
    from soulfra.store import SqlStore  # noqa: PLC0415
    from soulfra.world import DEFAULT_WORLD, World  # noqa: PLC0415

    if live and as_json:
        raise ConfigError("--live and --json cannot be combined")
    if ticks == 0 and not (live or db):
        raise ConfigError("--ticks must be at least 1 (0 runs until Ctrl-C, with --live or --db only)")
    if inputs == "-" and db is None:
        raise ConfigError("--inputs - (live inputs from stdin) needs --db: inputs are acknowledged once stored")
    if fresh and db is None:
        raise ConfigError("--fresh needs --db")
    models = cli_server.load_settings(ctx, ModelSettings)
    minds = models.mind_settings()
    spec = models.world_spec(load_world_file(world) if world is not None else DEFAULT_WORLD)
    numbered = load_numbered_inputs(Path(inputs)) if inputs not in (None, "-") else []
    genesis = World.create(seed, spec, agents=agents) if numbered or db is None else None
    if genesis is not None and numbered:  # every agent an input names, checked before any tick runs: the mistake
        check_agents(genesis, Path(str(inputs)), numbered)  # names its file and line
        if db is None:  # a kept world's ticks are known once it is opened
            check_ticks(Path(str(inputs)), numbered, genesis.tick, ticks)
    items = [item for _, item in numbered]
    if db is None:  # the world the agents were checked against (made above whenever db is None), run from genesis
        instance: World | DurableWorld = genesis if genesis is not None else World.create(seed, spec, agents=agents)
        _run_and_report(instance, ticks, items, events, as_json=as_json, live=live, rate=rate, stdin=False, minds=minds)
        return
    store = SqlStore.open(db)
    try:
        settings = DurabilitySettings(snapshot_every=snapshot_every)
        known = {record.id for record in store.instances.find(seed)}
        with signed_recorder(store, db, SoulfraSettings.load().home).recording(
            cli_identity(), "instance.run", detail={"ticks": ticks}
        ) as action:
            durable = DurableWorld.open_or_create(store, seed, spec, agents=agents, fresh=fresh, settings=settings)
            created = durable.instance_id not in known
            made = {"seed": seed, **durable.record.world} if created else {}
            action.refine("instance.create" if created else None, instance_id=durable.instance_id,
                          detail={"from_tick": durable.tick, **made})  # fmt: skip
            try:
                if numbered:  # a kept world may be past the log's first ticks: the late line is named
                    check_ticks(Path(str(inputs)), numbered, durable.tick, ticks, durable.check)
                _run_and_report(
                    durable,
                    ticks,
                    items,
                    events,
                    as_json=as_json,
                    live=live,
                    rate=rate,
                    stdin=inputs == "-",
                    minds=minds,
                )
            finally:
                durable.close()
                action.refine(detail={"to_tick": durable.tick})
    finally:
        store.close()


def _run_and_report(
    instance: World | DurableWorld,
    ticks: int,
    items: list[Input],
    events: Path | None,
    *,
    as_json: bool,
    live: bool,
    rate: float | None,
    stdin: bool,
    minds: MindSettings | None = None,
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415

    from soulfra.cli.console import summary  # noqa: PLC0415
    from soulfra.cli.runner import event_log, run  # noqa: PLC0415
    from soulfra.durable import DurableWorld  # noqa: PLC0415
    from soulfra.language.driver import ThreadedAsker  # noqa: PLC0415 -- httpx loads only for a model

    err = Console(stderr=True)
    core = instance.world if isinstance(instance, DurableWorld) else instance
    submit_live: Callable[[], None] | None = None
    if stdin and isinstance(instance, DurableWorld):
        source = cli_store.LiveInputs(sys.stdin.fileno(), cli_store.print_json_line)
        submit_live = functools.partial(source.submit_to, instance)
    kept = isinstance(instance, DurableWorld)
    with event_log(events) as sink, contextlib.ExitStack() as stack:
        asker = None if minds is None else stack.enter_context(ThreadedAsker(minds))

        def before_tick() -> list[Input]:
            if submit_live is not None:
                submit_live()
            return [] if asker is None else list(asker.replies_due(instance))

        # Kept, live, paced or endless: Ctrl-C and SIGTERM end the run after the tick under way, whichever way it is
        # drawn. A plain run from memory keeps Ctrl-C's default (exit 130): nothing of it is kept to go on from.
        flag = stack.enter_context(_stopped_by_signals()) if kept or live or rate is not None or ticks == 0 else None
        should_stop = flag.stopped if flag is not None else None
        if live:
            report = _run_live(instance, ticks, items, sink, 5.0 if rate is None else rate, before_tick, should_stop)
        elif rate is not None:
            report = _run_paced(instance, ticks, items, sink, rate, before_tick, should_stop)
        elif err.is_terminal and core.state.size * ticks >= PROGRESS_MIN_STEPS:
            with Progress(
                TextColumn("ticking"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                console=err, transient=True,
            ) as progress:  # fmt: skip
                task = progress.add_task("run", total=ticks)

                def advance(batch: list[Event]) -> None:
                    sink(batch)
                    progress.advance(task)

                report = run(instance, ticks, items, on_tick=advance, should_stop=should_stop, before_tick=before_tick)
        else:
            report = run(instance, ticks, items, on_tick=sink, should_stop=should_stop, before_tick=before_tick)
        if asker is not None:
            report.minds, report.minds_skipped = dict(sorted(asker.outcomes.items())), asker.skipped
    if as_json:
        typer.echo(json.dumps(report.to_json()))
    else:
        Console().print(summary(report))
    if kept and (ticks == 0 or report.ticks < ticks):  # stopped by Ctrl-C or SIGTERM, after a whole tick
        err.print(
            f"soulfra: stopped at tick {report.tick} of {report.instance}, every tick up to it stored; "
            "run again with the same --db and --seed to go on from there",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def _run_paced(
    instance: World | DurableWorld,
    ticks: int,
    items: list[Input],
    sink: Callable[[list[Event]], None],
    rate: float,
    before_tick: Callable[[], list[Input]] | None,
    should_stop: Callable[[], bool] | None,
) -> RunReport:
    """Run at ``rate`` ticks per second (0: as fast as it goes), ending after the tick under way once
    ``should_stop``."""
    from soulfra.cli.runner import run  # noqa: PLC0415

    interval = 1.0 / rate if rate else 0.0
    next_at = time.monotonic()

    def on_tick(batch: list[Event]) -> None:
        nonlocal next_at
        sink(batch)
        next_at += interval
        while not (should_stop and should_stop()) and (remaining := next_at - time.monotonic()) > 0:
            time.sleep(min(remaining, 0.05))  # pacing, checking for a stop

    return run(instance, ticks, items, on_tick=on_tick, should_stop=should_stop, before_tick=before_tick)


def _run_live(
    instance: World | DurableWorld,
    ticks: int,
    items: list[Input],
    sink: Callable[[list[Event]], None],
    rate: float,
    before_tick: Callable[[], list[Input]] | None,
    should_stop: Callable[[], bool] | None,
) -> RunReport:
    """Run paced at ``rate`` ticks per second (0: as fast as it goes), redrawing after every tick; ends after the
    tick under way once ``should_stop``."""
    from rich.live import Live  # noqa: PLC0415

    from soulfra.cli.console import LiveView  # noqa: PLC0415
    from soulfra.cli.runner import run  # noqa: PLC0415
    from soulfra.durable import DurableWorld  # noqa: PLC0415

    view = LiveView(instance.world if isinstance(instance, DurableWorld) else instance)
    interval = 1.0 / rate if rate else 0.0
    next_at = time.monotonic()
    with Live(view.render(), auto_refresh=False, console=Console()) as display:

        def on_tick(batch: list[Event]) -> None:
            nonlocal next_at
            sink(batch)
            view.absorb(batch)
            display.update(view.render(), refresh=True)
            next_at += interval
            while not (should_stop and should_stop()) and (remaining := next_at - time.monotonic()) > 0:
                time.sleep(min(remaining, 0.05))  # pacing the display, checking for a stop

        return run(instance, ticks, items, on_tick=on_tick, should_stop=should_stop, before_tick=before_tick)
