"""The CLI's puppet-master commands: ``instance`` (create, list, show, delete), ``god`` (in ``soulfra.cli.god``),
``export`` and ``import`` (a server over HTTP, or a database with ``--db``), ``package`` (show, edit offline, apply)
and ``keys`` (the installation key and the trusted keys)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from soulfra.cli import god as cli_god
from soulfra.cli.bars import bars
from soulfra.cli.god import emit, json_arg
from soulfra.cli.options import AGENTS_HELP, RATE_HELP, rate_rule
from soulfra.cli.server import (
    DEFAULT_URL,
    JsonOption,
    LocalJsonOption,
    TokenOption,
    UrlOption,
    _request,
    auth_headers,
    failure_note,
    server_error,
    unreachable,
)
from soulfra.cli.specs import personality_spec, ritual_spec, vibe_spec
from soulfra.errors import InputError, OutputError, ServerUnavailableError
from soulfra.limits import MAX_GENERATED_AGENTS

if TYPE_CHECKING:
    import httpx

__all__ = ["register"]

instance_app = typer.Typer(help="Create, list, inspect and delete instances on a running server.", no_args_is_help=True)
package_app = typer.Typer(help="Inspect, edit offline and apply .soulpkg packages.", no_args_is_help=True)
keys_app = typer.Typer(help="The installation's signing key and the keys it trusts.", no_args_is_help=True)

PACKAGE_MEDIA_TYPE = "application/vnd.soulfra.package+zip"  # as soulfra.api.meta serves and takes it
DbOption = Annotated[str | None, typer.Option("--db", help="Work on a database directly (no server): its URL")]
TrustOption = Annotated[
    list[Path] | None, typer.Option("--trust-key", metavar="FILE", help="Also trust this public key file (repeatable)")
]


# -- instance ------------------------------------------------------------------------------------------------------


@instance_app.command("create")
def instance_create(
    instance_id: Annotated[str | None, typer.Option("--id", help="Its id (default: world-<seed>)")] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**64 - 1, help="Its seed, 0 to 2**64-1")] = 0,
    agents: Annotated[int, typer.Option(min=0, max=MAX_GENERATED_AGENTS, help=AGENTS_HELP)] = 0,
    world: Annotated[Path | None, typer.Option(help="A world file (TOML)")] = None,
    rate: Annotated[float | None, typer.Option(callback=rate_rule, help=RATE_HELP + " (default: the server's)")] = None,
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an instance with its own seed and world; it starts ticking at once."""
    body: dict[str, Any] = {"seed": seed, "agents": agents, "rate": rate}
    if instance_id is not None:
        body["id"] = instance_id
    if world is not None:
        try:
            body["world"] = world.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read the world file {world}: {exc.strerror}") from None
    reply = _request("POST", url, "/api/instances", body)
    emit(reply, as_json, f"created {reply['id']} (seed {reply['seed']}, {reply.get('agents', '?')} agents)")


@instance_app.command("list")
def instance_list(url: UrlOption = DEFAULT_URL, as_json: JsonOption = False, _token: TokenOption = None) -> None:
    """Every instance with its state, tick and parent."""
    reply = _request("GET", url, "/api/instances")
    if as_json:
        typer.echo(json.dumps(reply))
        return
    typer.echo(f"{'id':<24} {'state':<10} {'tick':<13}from")
    for row in reply["instances"]:
        parent = f" <- {row['parent_id']}@{row['fork_tick']}" if row.get("parent_id") else ""
        merge = f" + {row['merge_parent_id']}" if row.get("merge_parent_id") else ""
        typer.echo(
            f"{row['id']:<24} {row.get('state', row['status']):<10} tick {row.get('tick', '-'):<8}{parent}{merge}"
            + failure_note(row.get("failure"))
        )


@instance_app.command("show")
def instance_show(
    instance_id: Annotated[str, typer.Argument(help="The instance")],
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """One instance: state, lineage, forks, abandoned branches and links."""
    reply = _request("GET", url, f"/api/instances/{instance_id}")
    if as_json:
        typer.echo(json.dumps(reply))
        return
    typer.echo(f"{reply['id']}: {reply['state']} at tick {reply['tick']} (seed {reply['seed']}, {reply['status']})")
    if reply.get("failure"):
        typer.echo(f"  failure  {failure_note(reply['failure']).strip()}")
    lineage = " <- ".join(f"{p['instance']}@{p['tick']}" for p in reply["lineage"]) or "(root)"
    typer.echo(f"  lineage   {lineage}")
    typer.echo(f"  children  {', '.join(reply['children']) or '-'}")
    branches = ", ".join(f"{b['id']} (ticks {b['from_tick']}-{b['head_tick']})" for b in reply["branches"])
    typer.echo(f"  branches  {branches or '-'}")
    typer.echo(f"  links     {', '.join(reply['links']) or '-'}")


@instance_app.command("delete")
def instance_delete(
    instance_id: Annotated[str, typer.Argument(help="The instance")],
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop an instance and delete it with its history (refused while forks or branches descend from it)."""
    reply = _request("DELETE", url, f"/api/instances/{instance_id}")
    emit(reply, as_json, f"deleted {reply['deleted']} (it had reached tick {reply['head_tick']})")


# -- export / import -----------------------------------------------------------------------------------------------


def export_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="The package file to write")],
    instance: Annotated[
        list[str] | None, typer.Option("--instance", "-i", metavar="ID", help="Instance (repeatable)")
    ] = None,
    all_instances: Annotated[bool, typer.Option("--all", help="Every instance (a package of packages)")] = False,
    compact: Annotated[
        bool, typer.Option(help="Leave out the states the importer can rebuild by replay (smaller, slower import)")
    ] = False,
    db: DbOption = None,
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    as_json: LocalJsonOption = False,
) -> None:
    """Export instances as one signed .soulpkg: one instance, several, or --all (default: the newest one)."""
    if db is not None:
        from soulfra.meta.offline import export_db  # noqa: PLC0415 -- the storage stack loads only here

        with bars() as shown:
            reply = export_db(
                db,
                instance or [],
                home=_home(),
                all_instances=all_instances,
                output=output,
                compact=compact,
                progress=shown.bytes("export"),
            )
    else:
        params: list[tuple[str, str | int | float | bool | None]] = [("instance", i) for i in instance or []]
        compact_param: list[tuple[str, str | int | float | bool | None]] = [("compact", "true")] if compact else []
        if params and not all_instances and len(params) == 1:
            path = f"/api/instances/{params[0][1]}/export"
            params = []
        elif all_instances or params:
            path = "/api/export"
        else:
            path = f"/api/instances/{_request('GET', url, '/api/instances')['default']}/export"
        size = _download(url, path, params + compact_param, output)
        reply = {"output": str(output), "bytes": size}
    emit(reply, as_json, f"wrote {output} ({reply['bytes']:,} bytes)")


def _download(url: str, path: str, params: list[tuple[str, str | int | float | bool | None]], output: Path) -> int:
    import httpx  # noqa: PLC0415 -- the HTTP client loads only when a command talks to a server

    try:
        with httpx.stream(
            "GET", url.rstrip("/") + path, params=params, timeout=120.0, headers=auth_headers()
        ) as response:
            if response.status_code >= 400:
                response.read()
                raise _reply_error(url, response)
            total = int(response.headers.get("content-length", 0))
            with bars() as shown, _atomic(output) as handle:
                progress = shown.bytes("download")
                done = 0
                for chunk in response.iter_bytes():
                    handle.write(chunk)
                    done += len(chunk)
                    progress(done, total)
    except httpx.HTTPError as exc:
        raise unreachable(url, exc) from None
    return done


@contextlib.contextmanager
def _atomic(output: Path) -> Iterator[Any]:
    """Write beside ``output`` and rename at the end: a failed download leaves nothing behind."""
    try:
        handle = tempfile.NamedTemporaryFile(dir=output.parent, prefix=f".{output.name}.", delete=False)  # noqa: SIM115
    except OSError as exc:
        raise OutputError(f"cannot write {output}: {exc.strerror}") from None
    try:
        with handle:
            yield handle
        os.replace(handle.name, output)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def import_command(
    package: Annotated[Path, typer.Argument(help="The .soulpkg file")],
    db: DbOption = None,
    verify_replay: Annotated[bool, typer.Option("--verify-replay", help="Replay each history, check its hash")] = False,
    as_id: Annotated[str | None, typer.Option("--as", help="Import a one-instance package under this id")] = None,
    trust_key: TrustOption = None,
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    as_json: LocalJsonOption = False,
) -> None:
    """Import a package: signature, hashes, sizes, paths and the protocol's rules are checked; nothing is written
    unless everything passes."""
    if db is not None:
        from soulfra.meta.offline import import_db  # noqa: PLC0415 -- the storage stack loads only here

        with bars() as shown:  # the bytes read, then the ticks replayed (a compact package's, or --verify-replay's)
            reply = import_db(db, package, home=_home(), as_id=as_id, verify_replay=verify_replay,
                              trusted=trust_key or [], progress=shown.bytes("import"),
                              on_tick=shown.ticks())  # fmt: skip
    else:
        if trust_key:
            raise InputError("--trust-key applies to --db imports; a server trusts the keys of its own installation")
        try:
            data = package.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {package}: {exc.strerror}") from None
        params: dict[str, str] = {"verify_replay": "true" if verify_replay else "false"}
        if as_id is not None:
            params["as_id"] = as_id
        reply = _post_bytes(url, "/api/import", data, params)
    lines = [f"imported {row['id']} at tick {row['head_tick']} ({row['state_hash'][:19]}"
             + (", replay verified)" if row["replayed"] else ")") for row in reply["imported"]]  # fmt: skip
    emit(reply, as_json, "\n".join(lines))


def _post_bytes(url: str, path: str, data: bytes, params: dict[str, str]) -> dict[str, Any]:
    import httpx  # noqa: PLC0415 -- the HTTP client loads only when a command talks to a server

    try:
        response = httpx.post(url.rstrip("/") + path, content=data, params=params, timeout=300.0,
                              headers={"content-type": PACKAGE_MEDIA_TYPE, **auth_headers()})  # fmt: skip
    except httpx.HTTPError as exc:
        raise unreachable(url, exc) from None
    if response.status_code >= 400:
        raise _reply_error(url, response)
    try:
        return dict(response.json())
    except ValueError:
        raise ServerUnavailableError(f"{url} answered without JSON; is it a Soulfra server?") from None


def _reply_error(url: str, response: httpx.Response) -> Exception:
    """The error a server's refusal names, or a readable one when the reply is not Soulfra's JSON."""
    try:
        body = response.json()
        return server_error(str(body.get("code", "error")), str(body.get("detail", response.text)))
    except (ValueError, AttributeError):
        return ServerUnavailableError(f"{url} answered {response.status_code} without JSON; is it a Soulfra server?")


# -- package -------------------------------------------------------------------------------------------------------


@package_app.command("show")
def package_show(
    package: Annotated[Path, typer.Argument(help="The .soulpkg file")],
    trust_key: TrustOption = None,
    as_json: LocalJsonOption = False,
) -> None:
    """The package's verified manifest: what it holds, who signed it, what was edited."""
    from soulfra.meta.offline import show_package  # noqa: PLC0415

    info = show_package(package, home=_home(), trusted=trust_key or [])
    if as_json:
        typer.echo(json.dumps(info))
        return
    typer.echo(f"{package}: {info['kind']} package, signed by {info['key_id']}")
    for row in info["instances"]:
        typer.echo(f"  {row['id']}: ticks {row['base_tick']}-{row['head_tick']}, head {row['head_hash'][:19]}, "
                   f"{plural(row['edits'], 'edit')}")  # fmt: skip


@package_app.command("edit")
def package_edit(
    package: Annotated[Path, typer.Argument(help="The .soulpkg file to edit (it is not changed)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The new package")],
    personality: Annotated[
        list[str] | None, typer.Option(metavar="SPEC", help="AGENT:TRAIT=V[,TRAIT=V] (repeatable)")
    ] = None,
    ritual: Annotated[
        list[str] | None, typer.Option(metavar="SPEC", help="NAME:AGENT,AGENT[:blessed] (repeatable)")
    ] = None,
    vibe: Annotated[
        list[str] | None, typer.Option(metavar="SPEC", help="CONDITION[:INTENSITY[:DURATION]] (repeatable)")
    ] = None,
    rewrite_from: Annotated[int | None, typer.Option(min=0, help="Rewrite history from this tick")] = None,
    drop: Annotated[
        list[int] | None, typer.Option(metavar="SEQ", help="rewrite: leave out the input with this seq")
    ] = None,
    add: Annotated[list[str] | None, typer.Option(metavar="JSON", help="rewrite: add this input (JSON)")] = None,
    trust_key: TrustOption = None,
    as_json: LocalJsonOption = False,
) -> None:
    """Edit a package offline; the new package is signed by this installation and records every change."""
    from soulfra.meta.offline import edit_package  # noqa: PLC0415

    edits: list[dict[str, Any]] = [
        *({"op": "personality", **personality_spec(text)} for text in personality or []),
        *({"op": "ritual", **ritual_spec(text)} for text in ritual or []),
        *({"op": "vibe", **vibe_spec(text)} for text in vibe or []),
    ]
    if rewrite_from is not None:
        edits.append({"op": "rewrite", "from_tick": rewrite_from, "drop": drop or [],
                      "add": [json_arg(a, "--add") for a in add or []]})  # fmt: skip
    elif drop or add:
        raise InputError("--drop and --add belong to a rewrite: give --rewrite-from TICK")
    if not edits:
        raise InputError("nothing to edit: give --personality, --ritual, --vibe or --rewrite-from")
    with bars() as shown:  # a rewrite (and a compact package) replays the history
        reply = edit_package(package, output, edits, home=_home(), trusted=trust_key or [], on_tick=shown.ticks())
    emit(reply, as_json, f"wrote {output}: {plural(len(edits), 'edit')}, head {reply['head_hash'][:19]}")


@package_app.command("apply")
def package_apply(
    package: Annotated[Path, typer.Argument(help="An edited .soulpkg")],
    instance: Annotated[str | None, typer.Option("--instance", "-i", help="Apply to this instance instead")] = None,
    trust_key: TrustOption = None,
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a package's edits down into its live instance, as interventions."""
    from soulfra.meta.offline import package_commands  # noqa: PLC0415

    commands = package_commands(package, home=_home(), trusted=trust_key or [], instance=instance)
    if not commands:
        raise InputError(f"{package} records no edits to apply")
    results = [_request("POST", url, "/api/god", command) for command in commands]
    emit({"applied": results}, as_json, "\n".join(_applied_line(r) for r in results))


def _applied_line(result: dict[str, Any]) -> str:
    if result.get("kind") == "rewrite":
        return f"rewrite applied to {result['instance']} as branch {result['branch']}"
    return f"{result['kind']} applied to {result['instance']} at tick {result['ack']['tick']}"


# -- keys ----------------------------------------------------------------------------------------------------------


def plural(count: int, noun: str) -> str:
    """``1 edit``, ``2 edits``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _home() -> Path:
    """This installation's home, where its key and the keys it trusts live: ``SOULFRA_HOME``, else ``~/.soulfra``."""
    from soulfra.settings import SoulfraSettings  # noqa: PLC0415 -- pydantic-settings loads only when a command runs

    return SoulfraSettings.load().home


@keys_app.command("show")
def keys_show(as_json: LocalJsonOption = False) -> None:
    """This installation's key id (made on first use) and the keys it trusts."""
    from soulfra.meta.keys import KeyRing, key_id  # noqa: PLC0415

    ring = KeyRing(_home())
    own = key_id(ring.signer().public_key)
    reply = {"home": str(ring.home), "key_id": own, "trusted": sorted(ring.trusted())}
    emit(reply, as_json, f"installation key {own} in {ring.home}; trusted: {', '.join(reply['trusted'])}")


@keys_app.command("export")
def keys_export(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the public key")],
    as_json: LocalJsonOption = False,
) -> None:
    """Write this installation's public key, for another installation to trust."""
    from soulfra.meta.keys import KeyRing, key_id  # noqa: PLC0415

    ring = KeyRing(_home())
    own = key_id(ring.signer().public_key)
    written = ring.export_public(output)
    emit({"written": str(written), "key_id": own}, as_json, f"wrote {written}")


@keys_app.command("trust")
def keys_trust(
    key: Annotated[Path, typer.Argument(help="A public key file (soulfra keys export)")],
    as_json: LocalJsonOption = False,
) -> None:
    """Trust packages signed by this key from now on."""
    from soulfra.meta.keys import KeyRing  # noqa: PLC0415

    trusted = KeyRing(_home()).trust(key)
    emit({"trusted": trusted}, as_json, f"trusting key {trusted}")


def register(app: typer.Typer) -> None:
    app.add_typer(instance_app, name="instance")
    app.add_typer(cli_god.god_app, name="god")
    app.add_typer(package_app, name="package")
    app.add_typer(keys_app, name="keys")
    app.command("export")(export_command)
    app.command("import")(import_command)
