"""The ``soulfra`` command: translates flags into calls on the runner and prints the result.

Errors never reach the user as tracebacks: a usage error or a ``SoulfraError`` becomes one line on stderr and an
exit code from ``EXIT_CODES``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from soulfra import __version__
from soulfra.bench import tick as tick_bench
from soulfra.console import LiveView, summary
from soulfra.errors import CodecError, ConfigError, InputError, OutputError, SoulfraError, WorldFileError
from soulfra.runner import RunReport, event_log, load_inputs, load_world_file, run
from soulfra.world import DEFAULT_WORLD, World
from soulfra.world.events import Event
from soulfra.world.inputs import Input

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
EXIT_CODES: dict[type, int] = {
    ConfigError: EXIT_USAGE,
    WorldFileError: 65,  # EX_DATAERR
    InputError: 65,
    CodecError: 65,
    OutputError: 74,  # EX_IOERR
}
PROGRESS_MIN_STEPS = 200_000  # show a progress bar when a run is at least this many agent-steps

app = typer.Typer(
    name="soulfra",
    help="Deterministic autonomous multi-agent worlds.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
bench_app = typer.Typer(help="Measure Soulfra beside its peers, in the same run.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"soulfra {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Deterministic autonomous multi-agent worlds."""


class _StopFlag:
    """Set by Ctrl-C (SIGINT) so a live run ends cleanly after the current tick."""

    def __init__(self) -> None:
        self.raised = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame
        self.raised = True

    def stopped(self) -> bool:
        return self.raised


@app.command("run")
def run_command(
    seed: Annotated[int, typer.Option(min=0, help="The world's seed (0 to 2**64-1).")] = 0,
    ticks: Annotated[int, typer.Option(min=0, help="Ticks to run; 0 with --live runs until Ctrl-C.")] = 100,
    agents: Annotated[int, typer.Option(min=0, help="Generated agents to add to the named ones.")] = 0,
    world: Annotated[Path | None, typer.Option(help="World file (TOML) defining the world and its agents.")] = None,
    inputs: Annotated[Path | None, typer.Option(help="Input log (JSON lines) of operator inputs by tick.")] = None,
    events: Annotated[Path | None, typer.Option(help="Write every event to this file as JSON lines.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a summary.")] = False,
    live: Annotated[bool, typer.Option("--live", help="Show the world in the terminal as it runs.")] = False,
    rate: Annotated[float, typer.Option(min=0.1, max=1000.0, help="Ticks per second with --live.")] = 5.0,
) -> None:
    """Run a world headless for a number of ticks and report its state hash."""
    if live and as_json:
        raise ConfigError("--live and --json cannot be combined")
    if ticks == 0 and not live:
        raise ConfigError("--ticks must be at least 1 (0 runs until Ctrl-C, with --live only)")
    spec = load_world_file(world) if world is not None else DEFAULT_WORLD
    items = load_inputs(inputs) if inputs is not None else []
    instance = World.create(seed, spec, agents=agents)
    err = Console(stderr=True)
    with event_log(events) as sink:
        if live:
            report = _run_live(instance, ticks, items, sink, rate)
        elif err.is_terminal and instance.state.size * ticks >= PROGRESS_MIN_STEPS:
            with Progress(
                TextColumn("ticking"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                console=err, transient=True,
            ) as progress:  # fmt: skip
                task = progress.add_task("run", total=ticks)

                def advance(batch: list[Event]) -> None:
                    sink(batch)
                    progress.advance(task)

                report = run(instance, ticks, items, on_tick=advance)
        else:
            report = run(instance, ticks, items, on_tick=sink)
    if as_json:
        typer.echo(json.dumps(report.to_json()))
    else:
        Console().print(summary(report))


def _run_live(
    instance: World, ticks: int, items: list[Input], sink: Callable[[list[Event]], None], rate: float
) -> RunReport:
    """Run paced at ``rate`` ticks per second, redrawing after every tick; Ctrl-C ends after the current tick."""
    view = LiveView(instance)
    flag = _StopFlag()
    previous = signal.signal(signal.SIGINT, flag)
    interval = 1.0 / rate
    next_at = time.monotonic()
    try:
        with Live(view.render(), auto_refresh=False, console=Console()) as display:

            def on_tick(batch: list[Event]) -> None:
                nonlocal next_at
                sink(batch)
                view.absorb(batch)
                display.update(view.render(), refresh=True)
                next_at += interval
                while not flag.raised and (remaining := next_at - time.monotonic()) > 0:
                    time.sleep(min(remaining, 0.05))  # pacing the display, checking for Ctrl-C

            return run(instance, ticks, items, on_tick=on_tick, should_stop=flag.stopped)
    finally:
        signal.signal(signal.SIGINT, previous)


@bench_app.command("tick")
def bench_tick(
    sizes: Annotated[str, typer.Option(help="Comma-separated agent counts.")] = "100,1000,10000",
    ticks: Annotated[int, typer.Option(min=1, help="Ticks per measurement.")] = 50,
    repeats: Annotated[int, typer.Option(min=1, help="Measurements per size; the best is kept.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Agent-steps per second: the built-in minds, and the mood-contagion rule beside Mesa."""
    try:
        counts = [int(part) for part in sizes.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--sizes must be comma-separated whole numbers, got {sizes!r}") from None
    if not counts or min(counts) < 2:
        raise ConfigError("--sizes needs at least one agent count of 2 or more")
    results = tick_bench.run(counts, ticks=ticks, repeats=repeats)
    if as_json:
        typer.echo(json.dumps(results))
    else:
        Console().print(tick_bench.render(results))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning every expected failure into one line and an exit code."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        code = app(args=argv, prog_name="soulfra", standalone_mode=False)
    except typer.TyperException as exc:  # usage errors: unknown option, bad value, missing command
        message = exc.format_message().strip()
        if "\n" in message:  # no arguments at all: the message is the help text
            Console(highlight=False).print(message, markup=False)
        else:
            err.print(f"soulfra: error: {message}", markup=False)
        sys.exit(EXIT_USAGE)
    except SoulfraError as exc:
        err.print(f"soulfra: error: {exc.detail}", markup=False)
        sys.exit(next((EXIT_CODES[cls] for cls in type(exc).__mro__ if cls in EXIT_CODES), 1))
    except (typer.Abort, KeyboardInterrupt):
        err.print("soulfra: interrupted", markup=False)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:  # stdout closed early (`soulfra run --json | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_BROKEN_PIPE)
    sys.exit(code if isinstance(code, int) else 0)
