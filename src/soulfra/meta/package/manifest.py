"""The ``.soulpkg`` manifest as a typed value: the entry names of the format, the bundle an instance package carries,
and every rule on what a manifest (entries, sizes, sha256, instance record, lineage, edits) and a history may hold.
Pure validation: no ZIP, no signature, no decompression; every refusal is a PackageError (or PackageLimitError).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard

from soulfra.errors import InputError, PackageError, PackageLimitError
from soulfra.meta.package.common import Limits
from soulfra.world import parse_input
from soulfra.world.worldfile import MAX_WORLD_NAME

FORMAT = "soulpkg"
FORMAT_VERSION = 1
MANIFEST, SIGNATURE = "manifest.json", "signature.json"
BASE, HEAD, CONFIG = "state/base.zst", "state/head.zst", "config.json"
INPUTS, TRACES = "history/inputs.jsonl.zst", "history/traces.jsonl.zst"
INSTANCE_ENTRIES = frozenset({BASE, HEAD, CONFIG, INPUTS, TRACES})
_INSTANCE_KEYS = (
    "id", "name", "seed", "genesis_hash", "world", "base_tick", "base_hash", "head_tick", "head_hash",
    "parent_id", "fork_tick", "merge_parent_id",
)  # fmt: skip
MAX_INSTANCE_ID = 64  # characters: the instances table's id column
_SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceBundle:
    """Everything a package carries about one instance; states are raw ``encode_state`` bytes."""

    instance: dict[str, Any]
    lineage: list[dict[str, Any]]
    base_state: bytes = field(repr=False)
    head_state: bytes = field(repr=False)
    inputs: list[dict[str, Any]]
    traces: list[dict[str, Any]]
    config: dict[str, Any]
    edits: list[dict[str, Any]]
    replayed: bool = False  # the head state was rebuilt (and checked) by replaying the history as it was read
    # The package's zstd frames of its states, by the state hash of the bytes each holds (checked as it was read):
    # an import stores them as they came instead of compressing the states again. Not part of what a bundle is.
    frames: Mapping[str, bytes] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One file of a package as the manifest lists it: its stored bytes' sha256 and size, and its unpacked size."""

    sha256: str
    size: int
    raw_size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """A checked manifest. ``instance`` is set for an instance package, ``members`` for a collection."""

    kind: Literal["instance", "collection"]
    entries: Mapping[str, Entry]
    instance: dict[str, Any] | None = None
    lineage: list[dict[str, Any]] = field(default_factory=list)
    edits: list[dict[str, Any]] = field(default_factory=list)
    compact: bool = False  # the head state (and, with a genesis recipe, the base state) is left out
    genesis: dict[str, Any] | None = None  # a compact package's recipe for its base state
    members: tuple[str, ...] = ()
    document: dict[str, Any] = field(repr=False)  # the manifest as signed

    @classmethod
    def parse(cls, document: dict[str, Any], sizes: Mapping[str, int], limits: Limits) -> Manifest:
        """Check ``document`` against the ZIP's entries (name to stored size) and ``limits``, then type it."""
        if document.get("format") != FORMAT:
            raise PackageError("manifest.json does not describe a soulpkg package")
        if document.get("format_version") != FORMAT_VERSION:
            raise PackageError(f"package format version {document.get('format_version')!r} is not {FORMAT_VERSION}")
        kind, entries = document.get("kind"), document.get("entries")
        members: tuple[str, ...] = ()
        if kind == "instance":
            check_bundle(document.get("instance"), document.get("lineage"), document.get("edits"), {}, MANIFEST)
            expected = _expected_entries(document)
        elif kind == "collection":
            ids = document.get("instances")
            if not isinstance(ids, list) or not ids or len(set(map(str, ids))) != len(ids):
                raise PackageError("manifest.json of a collection needs a list of distinct instance ids")
            members = tuple(check_id(name, MANIFEST) for name in ids)
            expected = {f"instances/{name}.soulpkg" for name in members}
        else:
            raise PackageError(f"manifest.json names an unknown package kind {kind!r}")
        if (
            not isinstance(entries, dict)
            or set(entries) != expected
            or not all(isinstance(e, dict) for e in entries.values())
        ):
            raise PackageError(f"manifest.json must list exactly the entries {', '.join(sorted(expected))}")
        present = set(sizes) - {MANIFEST, SIGNATURE}
        if present - expected:
            raise PackageError(f"entry {min(present - expected)} is in the ZIP but not in the manifest")
        if expected - present:
            raise PackageError(f"entry {min(expected - present)} is listed in the manifest but missing from the ZIP")
        typed = {name: _entry(name, entry, sizes[name], limits) for name, entry in entries.items()}
        if kind == "collection":
            return cls(kind=kind, entries=typed, members=members, document=document)
        compact = document.get("compact")
        return cls(
            kind="instance",
            entries=typed,
            instance=document["instance"],
            lineage=document["lineage"],
            edits=document["edits"],
            compact=compact is not None,
            genesis=compact["genesis"] if isinstance(compact, dict) else None,
            document=document,
        )


def _entry(name: str, entry: dict[str, Any], stored: int, limits: Limits) -> Entry:
    size, raw_size, digest = (entry.get(key) for key in ("size", "raw_size", "sha256"))
    if not (is_int(size) and is_int(raw_size) and min(size, raw_size) >= 0 and _is_digest(digest)):
        raise PackageError(f"manifest.json has no valid sha256, size and raw_size for entry {name}")
    if size != stored or (not name.endswith(".zst") and raw_size != size):
        raise PackageError(f"entry {name} holds {stored} bytes, not the size in the manifest")
    if raw_size > limits.max_entry_bytes:
        raise PackageLimitError(f"entry {name} unpacks to {raw_size} bytes, over the per-entry limit")
    return Entry(sha256=digest, size=size, raw_size=raw_size)


def _expected_entries(manifest: dict[str, Any]) -> set[str]:
    """An instance package's entries: all five, or (compact) without the head and perhaps without the base."""
    compact = manifest.get("compact")
    if compact is None:
        return set(INSTANCE_ENTRIES)
    if not isinstance(compact, dict) or not isinstance(compact.get("genesis"), dict | None):
        raise PackageError("manifest.json has a malformed compact section")
    left_out = {HEAD} | ({BASE} if compact["genesis"] is not None else set())
    return set(INSTANCE_ENTRIES) - left_out


def check_bundle(instance: object, lineage: object, edits: object, config: object, where: str) -> None:
    """The instance record, lineage, edits and config must have the shape the format promises."""
    if not isinstance(instance, dict):
        raise PackageError(f"{where} has no instance record")
    missing = [key for key in _INSTANCE_KEYS if key not in instance]
    if missing:
        raise PackageError(f"the instance record in {where} lacks {', '.join(missing)}")
    check_id(instance["id"], where)
    if len(instance["id"]) > MAX_INSTANCE_ID or not isinstance(instance["name"], str):
        raise PackageError(
            f"the instance record in {where} needs an id of at most {MAX_INSTANCE_ID} characters and a name"
        )
    if len(instance["name"]) > MAX_WORLD_NAME:
        raise PackageError(
            f"the instance name in {where} is {len(instance['name'])} characters, over the limit of {MAX_WORLD_NAME}"
        )
    if not all(is_int(instance[key]) for key in ("seed", "base_tick", "head_tick")):
        raise PackageError(f"the instance record in {where} needs integer seed, base_tick and head_tick")
    if not all(isinstance(instance[key], str) for key in ("base_hash", "head_hash")):
        raise PackageError(f"the instance record in {where} needs base_hash and head_hash strings")
    if not isinstance(lineage, list) or not all(isinstance(item, dict) for item in lineage):
        raise PackageError(f"the lineage in {where} is not a list of records")
    if not isinstance(edits, list) or not all(isinstance(item, dict) and "op" in item for item in edits):
        raise PackageError(f"the edits in {where} are not a list of records with an op")
    if not isinstance(config, dict):
        raise PackageError(f"the config in {where} is not a JSON object")


def check_history(inputs: list[dict[str, Any]], traces: list[dict[str, Any]], where: str) -> None:
    """Inputs in rising ``seq`` order, each a valid input; traces each with a tick, a kind and a data object."""
    last = -1
    for line, item in enumerate(inputs, 1):
        seq = item.get("seq")
        if not is_int(seq) or seq <= last:
            raise PackageError(f"input {line} in {where} has no seq above the one before it")
        last = seq
        try:
            parse_input({key: value for key, value in item.items() if key != "seq"})
        except InputError as exc:
            raise PackageError(f"input {line} in {where} is not a valid input: {exc.detail}") from exc
    for line, item in enumerate(traces, 1):
        if not (is_int(item.get("tick")) and isinstance(item.get("kind"), str) and isinstance(item.get("data"), dict)):
            raise PackageError(f"trace {line} in {where} needs an integer tick, a kind and a data object")


def check_id(value: object, where: str) -> str:
    """An instance id fit to be a file name inside a collection."""
    if not isinstance(value, str) or not _SAFE_ID.fullmatch(value) or ".." in value:
        raise PackageError(f"{where} names an instance id unfit for a file name: {value!r}")
    return value


def is_int(value: object) -> TypeGuard[int]:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_digest(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) is not None
