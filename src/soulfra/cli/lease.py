"""The CLI's ``lease`` commands: ``log``, the lease log of a database (every epoch of every writer lease: who held it,
from when, how and when that ended, and the tick its world had committed), checked for two epochs of one key held at
once (exit 65 naming them). It only reads; it never takes or releases a lease.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from soulfra.cli.store import DbOption, JsonOption

if TYPE_CHECKING:
    from soulfra.store.ports import LeaseEpoch

__all__ = ["lease_app", "register"]

lease_app = typer.Typer(help="Read the writer leases' history.", no_args_is_help=True)


@lease_app.command("log")
def log_command(
    db: DbOption,
    instance: Annotated[
        str | None, typer.Option("--instance", help="The epochs of this instance's lease (default: every lease)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Every epoch of the writer leases, oldest first per lease: who held it, from when, how and when that ended;
    exit 65 if two epochs of one lease were held at once."""
    from soulfra.cli.store import _open_existing  # noqa: PLC0415 -- the storage stack loads only here
    from soulfra.errors import HistoryIntegrityError  # noqa: PLC0415
    from soulfra.store.lease_log import epoch_json, overlap_line, overlaps  # noqa: PLC0415

    store = _open_existing(db)
    try:
        history = store.leases.history(instance)
    finally:
        store.close()
    found = overlaps(history)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "epochs": [epoch_json(e) for e in history],
                    "overlaps": [{"earlier": a.epoch, "later": b.epoch, "key": a.key} for a, b in found],
                }
            )
        )
    else:
        _print(history)
    if found:
        raise HistoryIntegrityError("; ".join(overlap_line(a, b) for a, b in found))


def _print(history: list[LeaseEpoch]) -> None:
    table = Table(title=f"lease log ({len(history)} epochs)")
    for column in ("key", "epoch", "pid", "host", "acquired", "ended", "at", "last tick"):
        table.add_column(column, justify="right" if column in ("epoch", "pid", "last tick") else "left")
    when = "%Y-%m-%d %H:%M:%S.%f"
    for e in history:
        table.add_row(
            e.key, str(e.epoch), str(e.pid), e.host, e.acquired_at.strftime(when), e.ended or "not yet",
            "" if e.ended_at is None else e.ended_at.strftime(when), "" if e.last_tick is None else str(e.last_tick),
        )  # fmt: skip
    Console(width=160).print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(lease_app, name="lease")
