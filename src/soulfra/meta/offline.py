"""Packages without a server: export from and import into a database by URL, show, edit and turn edits into
god commands. What ``soulfra export --db``, ``import --db`` and ``package ...`` run. Each is handed the
installation's ``home`` (its signing key and trusted keys) by the caller, which reads it from the settings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from soulfra.durable import resolve_instance
from soulfra.errors import PackageError, SoulfraError
from soulfra.meta.audit_signing import signed_recorder
from soulfra.meta.keys import KeyRing, read_public_key
from soulfra.meta.package import Limits, read_package, write_package
from soulfra.meta.transfer import apply_edits, bundle_for, edit_bundle, import_bundles
from soulfra.security.identity import cli_identity
from soulfra.store import SqlStore

__all__ = ["edit_package", "export_db", "import_db", "package_commands", "show_package"]

Progress = Callable[[int, int], None]


def _keyring(home: Path, trusted: Sequence[Path]) -> KeyRing:
    return KeyRing(home, extra_trusted=[read_public_key(path) for path in trusted])


def export_db(
    db: str,
    instances: Sequence[str],
    *,
    home: Path,
    all_instances: bool,
    output: Path,
    compact: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the named instances (all, or the newest) of a database as one signed package."""
    store = SqlStore.open(db)
    try:
        if all_instances:
            ids = [record.id for record in store.instances.list_instances()]
        else:
            ids = list(instances) or [resolve_instance(store, None).id]
        bundles = [bundle_for(store, instance_id) for instance_id in ids]
    finally:
        store.close()
    manifest = write_package(output, bundles, _keyring(home, ()).signer(), progress=progress, compact=compact)
    return {"output": str(output), "bytes": output.stat().st_size, "instances": ids, "kind": manifest["kind"]}


def import_db(
    db: str,
    package: Path,
    *,
    home: Path,
    as_id: str | None = None,
    verify_replay: bool = False,
    trusted: Sequence[Path] = (),
    progress: Progress | None = None,
    on_tick: Progress | None = None,
) -> dict[str, Any]:
    """Verify a package and store its instances in a database; nothing is written unless all of it passes.
    ``progress`` hears of the bytes read, ``on_tick`` of the ticks replayed (a compact package's history, or each
    history with ``verify_replay``), each as ``(done, total)``."""
    detail: dict[str, Any] = {"package": str(package), "as": as_id}
    try:
        read = read_package(package, _keyring(home, trusted), limits=Limits(), progress=progress, on_tick=on_tick)
    except SoulfraError as exc:
        _record_refusal(db, home, exc, detail)
        raise
    store = SqlStore.open(db)
    try:
        detail["key_id"] = read.key_id
        with signed_recorder(store, db, home).recording(cli_identity(), "package.import", detail=detail):
            imported = import_bundles(store, read.bundles, as_id=as_id, verify_replay=verify_replay, on_tick=on_tick)
    finally:
        store.close()
    return {"key_id": read.key_id, "imported": imported}


def _record_refusal(db: str, home: Path, refusal: SoulfraError, detail: dict[str, Any]) -> None:
    """Audit an import refused before the database was opened, if the database can be opened at all (a refusal
    says why in its own words: one the audit cannot be written for is still raised)."""
    try:
        store = SqlStore.open(db)
    except SoulfraError:
        return
    try:
        recorder = signed_recorder(store, db, home)
        recorder.record(
            cli_identity(), "package.import", outcome=refusal.code, detail={**detail, "error": refusal.detail}
        )
    finally:
        store.close()


def show_package(package: Path, *, home: Path, trusted: Sequence[Path] = ()) -> dict[str, Any]:
    """The verified package: its kind, who signed it, and each instance's ticks, head hash and edits."""
    read = read_package(package, _keyring(home, trusted))
    rows = [
        {"id": b.instance["id"], "base_tick": b.instance["base_tick"], "head_tick": b.instance["head_tick"],
         "head_hash": b.instance["head_hash"], "edits": len(b.edits)}
        for b in read.bundles
    ]  # fmt: skip
    return {"kind": read.manifest["kind"], "key_id": read.key_id, "instances": rows}


def edit_package(
    package: Path,
    output: Path,
    edits: list[dict[str, Any]],
    *,
    home: Path,
    trusted: Sequence[Path] = (),
    on_tick: Progress | None = None,
) -> dict[str, Any]:
    """A new package with ``edits`` made and recorded, signed by this installation; the input is not changed.
    ``on_tick`` hears ``(done, total)`` of each history replayed (a compact package's as it is read, a rewrite's)."""
    read = read_package(package, _keyring(home, trusted), on_tick=on_tick)
    if len(read.bundles) != 1:
        raise PackageError(f"{package} holds {len(read.bundles)} instances; edit one instance's package at a time")
    edited = edit_bundle(read.bundles[0], edits, on_tick=on_tick)
    write_package(output, [edited], _keyring(home, ()).signer())
    return {"output": str(output), "edits": edited.edits, "head_hash": edited.instance["head_hash"]}


def package_commands(
    package: Path, *, home: Path, trusted: Sequence[Path] = (), instance: str | None = None
) -> list[dict[str, Any]]:
    """The god commands that carry a package's recorded edits into its live instance (or ``instance``)."""
    read = read_package(package, _keyring(home, trusted))
    commands: list[dict[str, Any]] = []
    for bundle in read.bundles:
        for command in apply_edits(bundle):
            if instance is not None:
                command["instance"] = instance
            commands.append(command)
    return commands
