"""The ``soulfra`` commands that work on a database: ``db upgrade``, ``state``, ``history``, ``verify``, and the
pieces ``run --db`` needs (opening the store, live inputs from stdin with acknowledgements).

Thin: each command translates flags into calls on ``soulfra.durable`` and the store, and prints the result.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from soulfra.errors import HistoryIntegrityError, InputError, NotFoundError, SoulfraError

if TYPE_CHECKING:
    from soulfra.durable import DurableWorld
    from soulfra.store import SqlStore

# The storage stack (SQLAlchemy, numpy) is imported inside each command: `soulfra --help` must not load it.

DbOption = Annotated[str, typer.Option("--db", help="Database URL: sqlite:///PATH or postgresql://USER@HOST/DB")]
InstanceOption = Annotated[
    str | None, typer.Option("--instance", help="Instance id (default: the newest instance in the database).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]

db_app = typer.Typer(help="Manage a Soulfra database.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(db: DbOption, as_json: JsonOption = False) -> None:
    """Create or migrate the database schema to the newest version (safe to repeat)."""
    from soulfra.store import upgrade  # noqa: PLC0415
    from soulfra.store.database import make_engine  # noqa: PLC0415

    engine = make_engine(db)
    try:
        before, after = upgrade(engine)
    finally:
        engine.dispose()
    if before != after and before is not None:  # a new database has nothing to attribute yet
        _audit_upgrade(db, before, after)
    if as_json:
        typer.echo(json.dumps({"before": before, "after": after, "migrated": before != after}))
    elif before == after:
        typer.echo(f"schema already at revision {after}")
    else:
        typer.echo(f"schema migrated from {before or 'empty'} to revision {after}")


def _audit_upgrade(db: str, before: str, after: str) -> None:
    from soulfra.meta.audit_signing import signed_recorder  # noqa: PLC0415
    from soulfra.security.identity import cli_identity  # noqa: PLC0415
    from soulfra.settings import SoulfraSettings  # noqa: PLC0415
    from soulfra.store import SqlStore  # noqa: PLC0415

    store = SqlStore.open(db)
    try:
        signed_recorder(store, db, SoulfraSettings.load().home).record(
            cli_identity(), "db.upgrade", detail={"from": before, "to": after}
        )
    finally:
        store.close()


def _open_existing(db: str) -> SqlStore:
    """A store for reading: a SQLite file that does not exist is an error, not a new empty database."""
    from soulfra.store import SqlStore  # noqa: PLC0415
    from soulfra.store.database import make_engine  # noqa: PLC0415

    engine = make_engine(db)
    try:
        if engine.dialect.name == "sqlite" and not Path(engine.url.database or "").expanduser().exists():
            raise NotFoundError(f"no database at {engine.url.database} (runs create one: soulfra run --db {db})")
    finally:
        engine.dispose()
    return SqlStore.open(db)


def db_revision(db: str) -> str | None:
    from soulfra.store.database import current_revision, make_engine  # noqa: PLC0415

    engine = make_engine(db)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


def state_command(
    db: DbOption,
    instance: InstanceOption = None,
    tick: Annotated[int | None, typer.Option(min=0, help="The tick to rebuild (default: the latest).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Print the state of a stored instance at any past tick, rebuilt from a snapshot and the input log."""
    from soulfra.durable import resolve_instance, state_at  # noqa: PLC0415
    from soulfra.projection import fixed_to_number, vibe_to_json  # noqa: PLC0415
    from soulfra.world.encoding import state_hash  # noqa: PLC0415

    store = _open_existing(db)
    try:
        record = resolve_instance(store, instance)
        at = record.head_tick if tick is None else tick
        nearest = store.snapshots.nearest(record.id, at)
        state = state_at(store, record.id, at)
    finally:
        store.close()
    summary: dict[str, Any] = {
        "instance": record.id,
        "seed": record.seed,
        "tick": state.tick,
        "state_hash": state_hash(state),
        "agents": state.size,
        "loop": state.loop.index,
        "head_tick": record.head_tick,
        "snapshot_tick": nearest.tick if nearest is not None else None,
        "replayed_ticks": state.tick - (nearest.tick if nearest is not None else 0),
        "vibe": vibe_to_json(state.vibe),
        "mood": {
            "valence": fixed_to_number(int(state.valence.mean())) if state.size else 0.0,
            "energy": fixed_to_number(int(state.energy.mean())) if state.size else 0.0,
        },
    }
    if as_json:
        typer.echo(json.dumps(summary))
        return
    table = Table(title=f"{record.id} at tick {state.tick}", show_header=False)
    for key in ("seed", "state_hash", "agents", "loop", "head_tick", "snapshot_tick", "replayed_ticks"):
        table.add_row(key, str(summary[key]))
    vibe = summary["vibe"]
    table.add_row("vibe", "-" if vibe is None else f"{vibe['condition']} (forecast {vibe['forecast']})")
    Console().print(table)


def history_command(
    db: DbOption,
    instance: InstanceOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many rows of each kind (the latest).")] = 20,
    as_json: JsonOption = False,
) -> None:
    """List a stored instance's snapshots, sealed loops and inputs."""
    from soulfra.durable import resolve_instance  # noqa: PLC0415
    from soulfra.world.inputs import input_to_json  # noqa: PLC0415

    store = _open_existing(db)
    try:
        record = resolve_instance(store, instance)
        snapshots = store.snapshots.list_snapshots(record.id)
        loops = store.rituals.read(record.id, kinds=("loop_sealed",))
        inputs = store.inputs.latest(record.id, limit=limit)
        input_total = store.inputs.count(record.id)
    finally:
        store.close()
    out = {
        "instance": record.id,
        "seed": record.seed,
        "head_tick": record.head_tick,
        "parent": record.parent_id,
        "snapshots": [
            {"id": s.id, "tick": s.tick, "type": s.type, "state_hash": s.state_hash, "codec": s.codec,
             "delta_of": s.base_id, "dictionary": s.dictionary_id, "raw_size": s.raw_size,
             "stored_size": s.stored_size}
            for s in snapshots[-limit:]
        ],
        "loops": [
            {"loop": r.data["loop"], "start": r.data["start"], "end": r.data["end"],
             "state_hash": r.data["state_hash"]}
            for r in loops[-limit:]
        ],
        "inputs": [{"seq": s.seq, "tick": s.tick, **input_to_json(s.input)} for s in inputs],
        "totals": {"snapshots": len(snapshots), "loops": len(loops), "inputs": input_total},
    }  # fmt: skip
    if as_json:
        typer.echo(json.dumps(out))
        return
    console = Console()
    console.print(f"{record.id}: seed {record.seed}, durable to tick {record.head_tick}")
    snaps = Table(title=f"snapshots ({len(snapshots)})")
    for column in ("tick", "type", "state hash", "stored", "raw", "codec"):
        snaps.add_column(column, justify="right" if column in ("tick", "stored", "raw") else "left")
    for s in snapshots[-limit:]:
        codec = s.codec + (f" Δ#{s.base_id}" if s.base_id else "") + (" +dict" if s.dictionary_id else "")
        snaps.add_row(str(s.tick), s.type, s.state_hash[:19] + "…", f"{s.stored_size:,}", f"{s.raw_size:,}", codec)
    console.print(snaps)
    loop_table = Table(title=f"loops sealed ({len(loops)})")
    for column in ("loop", "ticks", "state hash"):
        loop_table.add_column(column)
    for r in loops[-limit:]:
        loop_table.add_row(str(r.data["loop"]), f"{r.data['start']}-{r.data['end']}", r.data["state_hash"][:19] + "…")
    console.print(loop_table)
    input_table = Table(title=f"inputs ({input_total})")
    for column in ("seq", "tick", "input"):
        input_table.add_column(column)
    for entry in inputs:
        input_table.add_row(str(entry.seq), str(entry.tick), json.dumps(input_to_json(entry.input), ensure_ascii=False))
    console.print(input_table)


def verify_command(
    db: DbOption,
    instance: InstanceOption = None,
    as_json: JsonOption = False,
    workers: Annotated[
        int,
        typer.Option(
            min=0,
            help="Processes that replay at once, each a stretch of the history between stored snapshots "
            "(0, the default: one per CPU this process may use; a short history is replayed in one).",
        ),
    ] = 0,
) -> None:
    """Replay an instance's whole input log and compare every stored state hash; exit 65 on any mismatch."""
    from soulfra.cli.bars import bars  # noqa: PLC0415
    from soulfra.durable import resolve_instance  # noqa: PLC0415
    from soulfra.verification import verify  # noqa: PLC0415
    from soulfra.verification_spans import available_cpus  # noqa: PLC0415

    workers = workers or available_cpus()
    store = _open_existing(db)
    try:
        record = resolve_instance(store, instance)
        with bars(enabled=not as_json) as shown:
            if shown.enabled:
                replayed = shown.ticks()
                report = verify(store, record.id, workers=workers, on_tick=lambda t: replayed(t, record.head_tick))
            else:
                report = verify(store, record.id, workers=workers)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(report.to_json()))
    elif report.ok:
        typer.echo(
            f"ok: {report.instance_id} replayed to tick {report.ticks} with {report.inputs} inputs; "
            f"{report.snapshots_checked} stored hashes match; state {report.state_hash}"
        )
    else:
        for m in report.mismatches:
            typer.echo(f"MISMATCH at tick {m.tick} ({m.what}): stored {m.stored}, replayed {m.replayed}")
    if not report.ok:
        raise HistoryIntegrityError(f"{len(report.mismatches)} stored hash(es) of {report.instance_id} do not replay")


class LiveInputs:
    """Inputs read from a stream (stdin) as they arrive; each is acknowledged on ``out`` once committed.

    A line without a ``tick`` applies at the next tick. A bad line is reported on ``out`` and skipped; a blank
    line is skipped silently, as in an input log.
    """

    def __init__(self, fd: int, out: Callable[[dict[str, Any]], None]) -> None:
        from soulfra.cli.runner import MAX_INPUT_LINE  # noqa: PLC0415

        self._max_line = MAX_INPUT_LINE
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue()
        self._out = out
        self.closed = False
        self._thread = threading.Thread(target=self._read, args=(fd,), name="soulfra-inputs", daemon=True)
        self._thread.start()

    def _read(self, fd: int) -> None:
        """Lines from the raw file descriptor. A daemon thread blocked in ``os.read`` holds no lock of the
        interpreter's; one blocked in a buffered reader would make the process abort as it exits (the run may end,
        or fail, while stdin is still open). A line longer than ``MAX_INPUT_LINE`` is cut there (and refused)."""
        pending = b""
        number = 0
        skipping = False  # the rest of an over-long line
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if skipping:
                    skipping = False
                    continue
                number += 1
                self._queue.put((number, line + b"\n"))
            if len(pending) > self._max_line and not skipping:
                number += 1
                self._queue.put((number, pending))
                skipping = True
            if skipping:
                pending = b""
        if pending and not skipping:
            self._queue.put((number + 1, pending))
        self._queue.put(None)

    def submit_to(self, durable: DurableWorld) -> None:
        """Take every line that has arrived, store the good ones in one commit, then acknowledge them."""
        batch: list[tuple[int, Any]] = []
        while True:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                break
            if entry is None:
                self.closed = True
                break
            number, raw = entry
            if not raw.strip():
                continue
            try:
                batch.append((number, self._parse(raw, durable.tick, self._max_line)))
            except SoulfraError as exc:
                self._out({"rejected": number, "code": exc.code, "detail": exc.detail})
        good = []
        for number, item in batch:
            try:
                durable.check(item)
            except SoulfraError as exc:
                self._out({"rejected": number, "code": exc.code, "detail": exc.detail})
                continue
            good.append((number, item))
        stored = durable.submit([item for _, item in good])
        for (number, _), done in zip(good, stored, strict=True):
            self._out({"ack": done.seq, "tick": done.tick, "line": number})

    @staticmethod
    def _parse(raw: bytes, tick: int, max_line: int) -> Any:
        from soulfra.durable import stamp_input  # noqa: PLC0415

        if len(raw) > max_line:
            raise InputError(f"line is longer than {max_line} bytes")
        try:
            obj = json.loads(raw.decode("utf-8"), parse_float=Decimal)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"not a JSON object: {exc}") from None
        return stamp_input(obj, tick)


def print_json_line(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
