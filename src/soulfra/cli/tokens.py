"""The CLI's ``token`` commands: create, list and revoke API tokens, on a database directly (``--db``, audited as
this process: ``cli:<user>``) or through a running server (as the token the command sends, which must be an admin's).
"""

from __future__ import annotations

import getpass
import json
from typing import Annotated, Any

import typer

from soulfra.cli.server import DEFAULT_URL, LocalJsonOption, TokenOption, UrlOption, _request

__all__ = ["register", "token_app"]

token_app = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)

DbOption = Annotated[str | None, typer.Option("--db", help="Work on a database directly (no server): its URL")]


def _line(row: dict[str, Any]) -> str:
    scope = ",".join(row["instances"]) if row.get("instances") else "every instance"
    state = f"revoked {row['revoked_at']}" if row.get("revoked_at") else f"expires {row.get('expires_at') or 'never'}"
    return f"{row['name']:<24} {row['role']:<14} {scope:<24} {state}"


def _offline(db: str, action: str, work: Any) -> Any:
    """Run ``work(tokens)`` on the database ``db``, audited as this process's user."""
    from soulfra.errors import SoulfraError  # noqa: PLC0415 -- the storage stack loads only here
    from soulfra.meta.audit_signing import signed_recorder  # noqa: PLC0415
    from soulfra.security.identity import process_identity  # noqa: PLC0415
    from soulfra.security.tokens import TokenService  # noqa: PLC0415
    from soulfra.settings import SoulfraSettings  # noqa: PLC0415
    from soulfra.store import SqlStore  # noqa: PLC0415

    store = SqlStore.open(db)
    try:
        recorder = signed_recorder(store, db, SoulfraSettings.load().home)
        identity = process_identity(f"cli:{getpass.getuser()}")
        try:
            result, detail = work(TokenService(store), identity.name)
        except SoulfraError as exc:
            recorder.record(identity, action, outcome=exc.code, detail={"error": exc.detail})
            raise
        if action != "token.list":
            recorder.record(identity, action, detail=detail)
        return result
    finally:
        store.close()


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option("--name", help="Its name (unique among live tokens)")],
    role: Annotated[str, typer.Option("--role", help="viewer, operator, puppet-master or admin")],
    expires: Annotated[str | None, typer.Option("--expires", help="Lifetime: 30d, 12h, 90m... (default: none)")] = None,
    instances: Annotated[
        str | None, typer.Option("--instances", help="Only these instances, comma-separated (default: every one)")
    ] = None,
    db: DbOption = None,
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    as_json: LocalJsonOption = False,
) -> None:
    """Create a token and print it: this is the only time it is shown."""
    scope = None if instances is None else [i.strip() for i in instances.split(",") if i.strip()]
    if db is not None:
        from soulfra.api.admin import token_json  # noqa: PLC0415
        from soulfra.security.tokens import parse_duration  # noqa: PLC0415

        lifetime = None if expires is None else parse_duration(expires)

        def create(tokens: Any, by: str) -> tuple[dict[str, Any], dict[str, Any]]:
            record, secret = tokens.create(name=name, role=role, by=by, expires_in=lifetime, instances=scope)
            return {**token_json(record), "token": secret}, {"name": name, "role": role, "instances": scope}

        reply = _offline(db, "token.create", create)
    else:
        body = {"name": name, "role": role, "expires": expires, "instances": scope}
        reply = _request("POST", url, "/api/tokens", body)
    if as_json:
        typer.echo(json.dumps(reply))
        return
    typer.echo(reply["token"])
    typer.echo(f"token {reply['name']} ({reply['role']}): shown this once; keep it secret", err=True)


@token_app.command("list")
def token_list(
    db: DbOption = None, url: UrlOption = DEFAULT_URL, _token: TokenOption = None, as_json: LocalJsonOption = False
) -> None:
    """Every token with its role, scope and expiry (never the token itself)."""
    if db is not None:
        from soulfra.api.admin import token_json  # noqa: PLC0415

        rows = _offline(db, "token.list", lambda tokens, _by: ([token_json(r) for r in tokens.list()], {}))
        reply: dict[str, Any] = {"tokens": rows}
    else:
        reply = _request("GET", url, "/api/tokens")
    if as_json:
        typer.echo(json.dumps(reply))
        return
    for row in reply["tokens"]:
        typer.echo(_line(row))


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="The token's name")],
    db: DbOption = None,
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    as_json: LocalJsonOption = False,
) -> None:
    """Revoke a token: every server refuses it within a second."""
    if db is not None:
        from soulfra.api.admin import token_json  # noqa: PLC0415

        reply = _offline(db, "token.revoke", lambda tokens, _by: (token_json(tokens.revoke(name)), {"name": name}))
    else:
        reply = _request("DELETE", url, f"/api/tokens/{name}")
    if as_json:
        typer.echo(json.dumps(reply))
        return
    typer.echo(f"revoked {reply['name']}")


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
