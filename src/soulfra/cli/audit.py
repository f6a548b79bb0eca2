"""The CLI's ``audit`` commands: ``verify`` (the hash chain and its signed heads; exit 65 naming the first bad row)
and ``list`` (the rows, filtered). Both only read, from a database (by default ``soulfra up``'s own) and the signed
head kept beside it; the signatures are checked with this installation's key (``SOULFRA_HOME``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from soulfra.cli.store import JsonOption

if TYPE_CHECKING:
    from soulfra.security.audit_verify import HeadVerifier
    from soulfra.store.ports import AuditEntry

__all__ = ["audit_app", "register"]

audit_app = typer.Typer(help="Verify and read the audit log.", no_args_is_help=True)

DATA_DIR = Path("soulfra-data")  # `soulfra up`'s data directory by default

AuditDbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: sqlite:///soulfra-data/soulfra.db, `soulfra up`'s own)"),
]
HeadOption = Annotated[
    Path | None,
    typer.Option(
        "--head",
        help="The signed head file kept outside the database (default: the database file's name and "
        ".audit-head.json, beside a SQLite database)",
    ),
]


def _database(db: str | None) -> str:
    return db if db is not None else f"sqlite:///{DATA_DIR / 'soulfra.db'}"


def _head_beside(db: str) -> Path | None:
    """The signed head file beside a SQLite database, where every Soulfra process that writes to it keeps it."""
    from soulfra.security.audit import head_file_for  # noqa: PLC0415 -- the storage stack loads only here

    return head_file_for(db)


def _installation_key(public_key: Path | None) -> HeadVerifier | None:
    """What checks a signed head: the public key in ``public_key`` (the installation's, exported), else this
    installation's own (None when it has no key pair yet)."""
    from soulfra.meta.keys import KeyRing, key_id, read_public_key, verify  # noqa: PLC0415
    from soulfra.settings import SoulfraSettings  # noqa: PLC0415

    if public_key is not None:
        own = read_public_key(public_key)
    else:
        ring = KeyRing(SoulfraSettings.load().home)
        if not ring.key_path.exists():
            return None
        own = ring.public_key()

    def check(named: str, signature: bytes, data: bytes) -> bool:
        return named == key_id(own) and verify(own, signature, data)

    return check


@audit_app.command("verify")
def verify_command(
    db: AuditDbOption = None,
    head: HeadOption = None,
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key", help="Check the signed heads with this .pub file (default: this installation's key)"
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Verify the audit log's hash chain and its signed heads; exit 65 naming the first bad row."""
    from soulfra.cli.store import _open_existing  # noqa: PLC0415
    from soulfra.errors import HistoryIntegrityError  # noqa: PLC0415
    from soulfra.security.audit_verify import verify_chain  # noqa: PLC0415

    url = _database(db)
    head_file = head if head is not None else _head_beside(url)
    store = _open_existing(url)
    try:
        report = verify_chain(store, head_file=head_file, trusted_key=_installation_key(public_key))
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(report.to_json()))
    elif report.ok:
        typer.echo(report.line())
    if not report.ok:
        raise HistoryIntegrityError(report.line())


@audit_app.command("list")
def list_command(
    db: AuditDbOption = None,
    instance: Annotated[str | None, typer.Option("--instance", help="Rows naming this instance")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Rows of this identity")] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="Rows of this action (a prefix ending in '.': all under it)")
    ] = None,
    outcome: Annotated[str | None, typer.Option("--outcome", help="ok, or a refusal's error code")] = None,
    after: Annotated[int, typer.Option("--after", min=0, help="Rows after this id")] = 0,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000, help="At most this many rows")] = 100,
    as_json: JsonOption = False,
) -> None:
    """The audit log's rows, oldest first: who did what, to which instances, with what outcome."""
    from soulfra.cli.store import _open_existing  # noqa: PLC0415

    store = _open_existing(_database(db))
    try:
        entries = store.audit.read(
            instance_id=instance, actor=actor, action=action, outcome=outcome, after_id=after, limit=limit
        )
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({"entries": [_entry_json(e) for e in entries]}))
        return
    table = Table(title=f"audit log ({len(entries)} rows)")
    for column in ("id", "time", "actor", "role", "action", "instances", "outcome", "source", "request"):
        table.add_column(column)
    for e in entries:
        instances = ", ".join(e.instances) or (e.instance_id or "")
        table.add_row(
            str(e.id), e.timestamp.strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.role or "", e.action, instances,
            e.outcome, e.source or "", (e.request_id or "")[:12],
        )  # fmt: skip
    Console(width=160).print(table)


def _entry_json(e: AuditEntry) -> dict[str, object]:
    return {
        "id": e.id, "timestamp": e.timestamp.isoformat(), "actor": e.actor, "role": e.role, "source": e.source,
        "request_id": e.request_id, "action": e.action, "instance_id": e.instance_id, "instances": list(e.instances),
        "outcome": e.outcome, "detail": e.detail, "prev_hash": e.prev_hash, "row_hash": e.row_hash,
    }  # fmt: skip


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
