"""The ``soulfra`` command: translates flags into calls on the runner and prints the result.

Errors never reach the user as tracebacks: a usage error or a ``SoulfraError`` becomes one line on stderr and an
exit code from ``EXIT_CODES``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import typer
from rich.console import Console
from typer.core import TyperGroup

from soulfra import __version__
from soulfra.cli import audit as cli_audit
from soulfra.cli import lease as cli_lease
from soulfra.cli import meta as cli_meta
from soulfra.cli import server as cli_server
from soulfra.cli import store as cli_store
from soulfra.cli import tokens as cli_tokens
from soulfra.cli import watch as cli_watch
from soulfra.cli.cluster import cluster_app
from soulfra.cli.model import model_app
from soulfra.cli.run import run_command
from soulfra.cli.serve import serve_app
from soulfra.errors import (
    AuthenticationError,
    BodyTimeoutError,
    BusError,
    BusTimeoutError,
    CodecError,
    ConfigError,
    ConflictError,
    HistoryIntegrityError,
    InputError,
    InstanceFailedError,
    LeaseHeldError,
    LeaseLostError,
    LineageError,
    MergeError,
    NotFoundError,
    OutputError,
    PackageError,
    PermissionDeniedError,
    PlatformError,
    RateLimitedError,
    ServerUnavailableError,
    SoulfraError,
    StorageError,
    StorageUnavailableError,
    ValidationFailedError,
    WorldFileError,
)

if TYPE_CHECKING:
    pass

# `soulfra --help`, `--version` and every command's --help load no world, storage, server or benchmark code, nor the
# HTTP client, the settings or Rich's progress bars: each command imports what it needs when it runs (the
# ``noqa: PLC0415`` imports here and in the other cli modules), and the bench commands that live in soulfra.bench load
# only when `soulfra bench` is asked for. A client command (status, whisper, instance list...) loads httpx and the
# settings but no more. tests/integration/test_cli_startup.py holds them to it.

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
# One table from error class to exit code (sysexits.h where one fits): the most specific class listed wins. A class
# that is not listed takes its nearest listed ancestor's code only where that code is right for it too;
# tests/unit/test_error_map.py pins the code of every class of the tree, so a new class cannot go without a decision.
EXIT_CODES: dict[type, int] = {
    SoulfraError: 1,  # never raised itself; a code this CLI has no class for (a newer server's): a plain failure
    ConfigError: EXIT_USAGE,  # the command line (or a file it names) asks for what cannot be done
    # The data is wrong; running again unchanged fails again (EX_DATAERR). UnknownAgentError and BodyTooLargeError take
    # InputError's 65; DecompressionLimitError takes CodecError's; PackageSignatureError and PackageLimitError take
    # PackageError's.
    WorldFileError: 65,
    InputError: 65,
    CodecError: 65,
    ConflictError: 65,
    HistoryIntegrityError: 65,
    ValidationFailedError: 65,  # the protocol's rules refuse the data itself: waiting changes nothing
    PackageError: 65,
    LineageError: 65,
    MergeError: 65,
    NotFoundError: 66,  # EX_NOINPUT
    OutputError: 74,  # EX_IOERR
    StorageError: 74,
    # Something needed is not there (EX_UNAVAILABLE). BusUnavailableError and NoRespondersError take BusError's 69.
    StorageUnavailableError: 69,
    BusError: 69,
    ServerUnavailableError: 69,
    # Passing: the same command can succeed later (EX_TEMPFAIL). OverrideActiveError takes PlatformError's 75 (it holds
    # until an operator resumes the instance).
    LeaseHeldError: 75,  # another process runs that world; try again once it stops
    LeaseLostError: 75,
    PlatformError: 75,  # paused, overridden, busy
    InstanceFailedError: 75,  # the instance failed: restart its server
    BusTimeoutError: 75,  # the platform is there but did not answer in time
    BodyTimeoutError: 75,  # the request's body stalled on its way to the server
    # Access (EX_NOPERM): the credentials, or what they allow, must change first. LicenceError takes 77 too;
    # UnsupportedMediaError and BadHostError take InputError's 65. Too many requests passes (EX_TEMPFAIL).
    AuthenticationError: 77,
    PermissionDeniedError: 77,
    RateLimitedError: 75,
}

app = typer.Typer(
    name="soulfra",
    help="Deterministic autonomous multi-agent worlds.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class _BenchGroup(TyperGroup):
    """``soulfra bench``: the commands defined in ``soulfra.bench`` are imported when this group lists or runs them."""

    lazy: ClassVar[dict[str, tuple[str, str]]] = {
        "api": ("soulfra.bench.api", "api_command"),
        "cluster": ("soulfra.bench.cluster", "cluster_command"),
        "dashboard": ("soulfra.bench.dashboard", "dashboard_command"),
        "minds": ("soulfra.bench.minds", "minds_command"),
        "package": ("soulfra.bench.package", "package_command"),
    }

    # Typed Any: Typer 0.29 keeps its click types in a private vendored module (typer._click).
    def list_commands(self, ctx: Any) -> list[str]:
        return [*self.lazy, *super().list_commands(ctx)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        module, attribute = self.lazy[cmd_name]
        try:
            command = getattr(importlib.import_module(module), attribute)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"`soulfra bench {cmd_name}` needs the bench extra (pip install 'soulfra[bench]'): no module {exc.name}"
            ) from None
        single = typer.Typer(add_completion=False, rich_markup_mode=None)
        single.command(cmd_name)(command)
        return typer.main.get_command(single)


bench_app = typer.Typer(
    cls=_BenchGroup, help="Measure Soulfra beside its peers, in the same run.", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")
app.add_typer(cli_store.db_app, name="db")
app.command("state")(cli_store.state_command)
app.command("history")(cli_store.history_command)
app.command("verify")(cli_store.verify_command)
cli_server.register(app)
app.add_typer(serve_app, name="serve")
app.add_typer(cluster_app, name="cluster")
app.add_typer(model_app, name="model")
cli_meta.register(app)
cli_audit.register(app)
cli_lease.register(app)
cli_tokens.register(app)
cli_watch.register(app)


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


app.command("run")(run_command)


@bench_app.command("tick")
def bench_tick(
    sizes: Annotated[str, typer.Option(help="Comma-separated agent counts.")] = "100,1000,10000",
    ticks: Annotated[int, typer.Option(min=1, help="Ticks per measurement.")] = 50,
    repeats: Annotated[int, typer.Option(min=1, help="Measurements per size; the best is kept.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Agent-steps per second: the built-in minds, and the mood-contagion rule beside Mesa."""
    from soulfra.bench import tick as tick_bench  # noqa: PLC0415

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


@bench_app.command("storage")
def bench_storage(
    sizes: Annotated[str, typer.Option(help="Comma-separated agent counts.")] = "10,100,1000",
    ticks: Annotated[int, typer.Option(min=10, help="Ticks stored per measurement.")] = 1000,
    reads: Annotated[int, typer.Option(min=1, help="Reads of old ticks per measurement (latency percentiles).")] = 50,
    intervals: Annotated[
        str, typer.Option(help="Snapshot intervals for the interval curve (at the largest size).")
    ] = "1,5,10,20,50,100",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Durable storage beside LangGraph's SqliteSaver: ticks/s, bytes per tick, read latency, fork cost."""
    from soulfra.bench import storage as storage_bench  # noqa: PLC0415

    counts = _int_list(sizes, "--sizes", minimum=3)
    curve = _int_list(intervals, "--intervals", minimum=1)
    results = storage_bench.run(counts, ticks=ticks, reads=reads, intervals=curve)
    if as_json:
        typer.echo(json.dumps(results))
    else:
        Console().print(storage_bench.render(results))


def _int_list(text: str, flag: str, *, minimum: int) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{flag} must be comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < minimum:
        raise ConfigError(f"{flag} needs at least one number, each {minimum} or more")
    return values


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
