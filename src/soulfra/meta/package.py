"""The ``.soulpkg`` codec: an instance (or a collection of packages) as one signed, deterministic ZIP, and back.

Reading verifies the Ed25519 signature on ``manifest.json`` before believing anything in it, then every entry's
path, size and sha256 within ``Limits``, and returns nothing until all of it checks out. Pure library code: no
database, network or CLI; every refusal is a PackageError (or its PackageSignatureError, PackageLimitError).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import os
import re
import secrets
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO, TypeGuard

from soulfra.codec.compression import CODEC_ZSTD, CompressionEngine
from soulfra.errors import (
    CodecError,
    ConfigError,
    DecompressionLimitError,
    InputError,
    OutputError,
    PackageError,
    PackageLimitError,
    PackageSignatureError,
)
from soulfra.meta.keys import Signer, Verifier, key_id, verify
from soulfra.meta.recipe import genesis_recipe, state_from_recipe
from soulfra.world import World, decode_state, encode_state, parse_input
from soulfra.world.encoding import encoded_hash
from soulfra.world.worldfile import MAX_WORLD_NAME

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_DEPTH",
    "InstanceBundle",
    "Limits",
    "Package",
    "package_info",
    "read_package",
    "write_collection",
    "write_package",
]

FORMAT = "soulpkg"
FORMAT_VERSION = 1
MAX_DEPTH = 4  # packages inside packages: a member of a member of ... at most this many levels down

Progress = Callable[[int, int], None]
_MANIFEST, _SIGNATURE = "manifest.json", "signature.json"
_BASE, _HEAD, _CONFIG = "state/base.zst", "state/head.zst", "config.json"
_INPUTS, _TRACES = "history/inputs.jsonl.zst", "history/traces.jsonl.zst"
_INSTANCE_ENTRIES = frozenset({_BASE, _HEAD, _CONFIG, _INPUTS, _TRACES})
_INSTANCE_KEYS = (
    "id", "name", "seed", "genesis_hash", "world", "base_tick", "base_hash", "head_tick", "head_hash",
    "parent_id", "fork_tick", "merge_parent_id",
)  # fmt: skip
MAX_INSTANCE_ID = 64  # characters: the instances table's id column
_SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DRIVE = re.compile(r"^[A-Za-z]:")
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a ZIP header can hold
_CHUNK = 1 << 20
_MAX_SIGNATURE_BYTES = 4096
_MAX_MANIFEST_BYTES = 16 << 20  # read before the signature is checked: an unsigned upload may not cost more
# What zipfile raises on a damaged archive (ValueError: a negative seek from a corrupt offset, among others).
_ZIP_ERRORS = (
    zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, struct.error,
    EOFError, OSError, ValueError, NotImplementedError,
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What a reader accepts: bytes per entry and in total (decompressed, across nested packages), entry count."""

    max_entry_bytes: int = 1 << 30
    max_total_bytes: int = 4 << 30
    max_entries: int = 10_000

    def __post_init__(self) -> None:
        for name in ("max_entry_bytes", "max_total_bytes", "max_entries"):
            if getattr(self, name) < 1:
                raise ConfigError(f"package limit {name} must be positive, not {getattr(self, name)}")


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Package:
    """A verified package: its manifest, the id of the key that signed it, and its instances in order."""

    manifest: dict[str, Any]
    key_id: str
    bundles: list[InstanceBundle]


# -- writing ----------------------------------------------------------------------------------------------------


def write_package(
    target: Path | BinaryIO,
    bundles: Sequence[InstanceBundle],
    signer: Signer,
    *,
    level: int = 3,
    progress: Progress | None = None,
    compact: bool = False,
) -> dict[str, Any]:
    """Write one bundle as an instance package, several as a collection of instance packages; returns the manifest.

    The same content and key give the same bytes. A path target is written beside it and renamed at the end.
    ``compact`` leaves the head state out (the reader rebuilds it by replaying the history, checked against the
    head hash) and, for a history that starts at genesis, the base state too (rebuilt from its genesis recipe).
    """
    if not bundles:
        raise PackageError("a package needs at least one instance")
    engine = CompressionEngine(level=level)
    if len(bundles) == 1:
        return _emit(target, *_instance_parts(bundles[0], engine, compact), signer, progress)
    members = []
    for bundle in bundles:
        files, head = _instance_parts(bundle, engine, compact)
        members.append((str(bundle.instance["id"]), _package_bytes(files, head, signer)))
    return write_collection(target, members, signer, progress=progress)


def write_collection(
    target: Path | BinaryIO, members: Sequence[tuple[str, bytes]], signer: Signer, *, progress: Progress | None = None
) -> dict[str, Any]:
    """Write already-made packages (instance or collection), each under its id, as one collection package."""
    ids = [name for name, _ in members]
    for name in ids:
        _check_id(name, "a collection member")
    if len(set(ids)) != len(ids):
        raise PackageError("a collection cannot hold two packages under the same id")
    files = {f"instances/{name}.soulpkg": (data, len(data)) for name, data in members}
    return _emit(target, files, {"kind": "collection", "instances": ids}, signer, progress)


def _instance_parts(
    bundle: InstanceBundle, engine: CompressionEngine, compact: bool
) -> tuple[dict[str, tuple[bytes, int]], dict[str, Any]]:
    """An instance package's entries and manifest head."""
    _check_bundle(bundle.instance, bundle.lineage, bundle.edits, bundle.config, "the bundle")
    _check_history(bundle.inputs, bundle.traces, "the bundle")
    head: dict[str, Any] = {
        "kind": "instance", "instance": bundle.instance, "lineage": bundle.lineage, "edits": bundle.edits
    }  # fmt: skip

    def zst(raw: bytes) -> tuple[bytes, int]:
        return engine.compress(raw, codec=CODEC_ZSTD).data, len(raw)

    config = _canonical(bundle.config)
    files = {
        _INPUTS: zst(b"".join(_canonical(item) + b"\n" for item in bundle.inputs)),
        _TRACES: zst(b"".join(_canonical(item) + b"\n" for item in bundle.traces)),
        _CONFIG: (config, len(config)),
    }
    recipe = genesis_recipe(bundle.base_state) if compact and bundle.instance["base_tick"] == 0 else None
    if recipe is None:
        files[_BASE] = zst(bundle.base_state)
    if compact:
        head["compact"] = {"genesis": recipe}
    else:
        files[_HEAD] = zst(bundle.head_state)
    return files, head


def _expected_entries(manifest: dict[str, Any]) -> set[str]:
    """An instance package's entries: all five, or (compact) without the head and perhaps without the base."""
    compact = manifest.get("compact")
    if compact is None:
        return set(_INSTANCE_ENTRIES)
    if not isinstance(compact, dict) or not isinstance(compact.get("genesis"), dict | None):
        raise PackageError("manifest.json has a malformed compact section")
    left_out = {_HEAD} | ({_BASE} if compact["genesis"] is not None else set())
    return set(_INSTANCE_ENTRIES) - left_out


def _package_bytes(files: dict[str, tuple[bytes, int]], head: dict[str, Any], signer: Signer) -> bytes:
    buffer = io.BytesIO()
    _write_zip(buffer, _signed(files, head, signer)[1], None)
    return buffer.getvalue()


def _signed(
    files: dict[str, tuple[bytes, int]], head: dict[str, Any], signer: Signer
) -> tuple[dict[str, Any], dict[str, bytes]]:
    entries = {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "raw_size": raw_size}
        for name, (data, raw_size) in files.items()
    }
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **head, "entries": entries, "created_by": _BY}
    body = _canonical(manifest)
    signature = {
        "algorithm": "ed25519",
        "key_id": signer.key_id,
        "public_key": base64.b64encode(signer.public_key).decode("ascii"),
        "signature": base64.b64encode(signer.sign(body)).decode("ascii"),
    }
    contents = {name: data for name, (data, _) in files.items()}
    return manifest, {**contents, _MANIFEST: body, _SIGNATURE: _canonical(signature)}


def _emit(
    target: Path | BinaryIO,
    files: dict[str, tuple[bytes, int]],
    head: dict[str, Any],
    signer: Signer,
    progress: Progress | None,
) -> dict[str, Any]:
    manifest, contents = _signed(files, head, signer)
    if isinstance(target, str | os.PathLike):
        target = Path(target)
    if not isinstance(target, Path):
        _write_zip(target, contents, progress)
        return manifest
    temp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    try:
        # os.open leaves the umask to set the mode, as a plain open() of the target would.
        with os.fdopen(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as handle:
            _write_zip(handle, contents, progress)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except OSError as exc:
        raise OutputError(f"cannot write package {target}: {exc.strerror or exc}") from exc
    finally:
        with suppress(OSError):
            temp.unlink()
    return manifest


def _write_zip(handle: BinaryIO, contents: dict[str, bytes], progress: Progress | None) -> None:
    total, done = sum(len(data) for data in contents.values()), 0
    if progress is not None:
        progress(0, total)
    with zipfile.ZipFile(handle, "w") as archive:
        for name in sorted(contents):
            data = contents[name]
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.create_system = 3  # Unix, whatever the writing platform, so that the bytes do not depend on it
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED if name.endswith(".json") else zipfile.ZIP_STORED
            info.file_size = len(data)
            with archive.open(info, "w") as entry:
                for start in range(0, len(data), _CHUNK):
                    entry.write(data[start : start + _CHUNK])
                    done += len(data[start : start + _CHUNK])
                    if progress is not None:
                        progress(done, total)


# -- reading ----------------------------------------------------------------------------------------------------


def read_package(
    source: Path | bytes | BinaryIO, keyring: Verifier, *, limits: Limits = Limits(), progress: Progress | None = None
) -> Package:
    """Read and verify a package (signature, paths, sizes, hashes, states); refuse it whole on any problem."""
    return _read(source, keyring, limits, [limits.max_total_bytes], 0, progress)


def package_info(source: Path | bytes | BinaryIO, keyring: Verifier, limits: Limits = Limits()) -> dict[str, Any]:
    """The verified manifest (signature, entry paths and sizes checked) without reading the entries themselves."""
    with _opened(source, limits) as archive:
        return _verified(archive, keyring, limits)[0]


def _read(
    source: Path | bytes | BinaryIO,
    keyring: Verifier,
    limits: Limits,
    budget: list[int],
    depth: int,
    progress: Progress | None,
) -> Package:
    if depth > MAX_DEPTH:
        raise PackageError(f"packages are nested more than {MAX_DEPTH} levels deep")
    with _opened(source, limits) as archive:
        manifest, signer_id, infos = _verified(archive, keyring, limits)
        entries: dict[str, dict[str, Any]] = manifest["entries"]
        if manifest["kind"] == "instance":
            budget[0] -= sum(entry["raw_size"] for entry in entries.values())
            if budget[0] < 0:
                raise PackageLimitError(f"the package unpacks beyond the {limits.max_total_bytes}-byte total limit")
        total, done, blobs = sum(entry["size"] for entry in entries.values()), 0, {}
        for name in sorted(entries):
            blobs[name] = _read_entry(archive, infos[name], entries[name]["size"])
            if hashlib.sha256(blobs[name]).hexdigest() != entries[name]["sha256"]:
                raise PackageError(f"entry {name} does not match its sha256 in the manifest (altered or swapped)")
            done += len(blobs[name])
            if progress is not None:
                progress(done, total)
    if manifest["kind"] == "instance":
        bundles = [_bundle(manifest, blobs, limits)]
    else:
        bundles = []
        for member in manifest["instances"]:
            inner = _read(blobs.pop(f"instances/{member}.soulpkg"), keyring, limits, budget, depth + 1, None)
            if inner.manifest["kind"] == "instance" and inner.bundles[0].instance["id"] != member:
                raise PackageError(f"collection member {member} holds instance {inner.bundles[0].instance['id']}")
            bundles.extend(inner.bundles)
    return Package(manifest=manifest, key_id=signer_id, bundles=bundles)


@contextmanager
def _opened(source: Path | bytes | BinaryIO, limits: Limits) -> Iterator[zipfile.ZipFile]:
    label = str(source) if isinstance(source, Path) else "the package"
    with _source_file(source, limits, label) as handle:
        try:
            archive = zipfile.ZipFile(handle)
        except _ZIP_ERRORS as exc:
            raise PackageError(f"{label} is not a readable ZIP package: {exc}") from exc
        with archive:
            yield archive


@contextmanager
def _source_file(source: Path | bytes | BinaryIO, limits: Limits, label: str) -> Iterator[BinaryIO]:
    if isinstance(source, str | os.PathLike):
        source = Path(source)
    if isinstance(source, Path):
        try:
            handle = source.open("rb")
        except OSError as exc:
            raise PackageError(f"cannot read package {label}: {exc.strerror or exc}") from exc
        with handle:
            yield handle
    elif isinstance(source, bytes | bytearray | memoryview):
        yield io.BytesIO(source)
    elif source.seekable():
        yield source
    else:  # zipfile seeks: a pipe is read into memory, within the total limit
        data = source.read(limits.max_total_bytes + 1)
        if len(data) > limits.max_total_bytes:
            raise PackageLimitError(f"the package is over the {limits.max_total_bytes}-byte total limit")
        yield io.BytesIO(data)


def _verified(
    archive: zipfile.ZipFile, keyring: Verifier, limits: Limits
) -> tuple[dict[str, Any], str, dict[str, zipfile.ZipInfo]]:
    """Check the ZIP's entries and signature, then the manifest's shape against them; nothing is decompressed."""
    listed = archive.infolist()
    if len(listed) > limits.max_entries:
        raise PackageLimitError(f"the package has {len(listed)} entries, over the limit of {limits.max_entries}")
    infos: dict[str, zipfile.ZipInfo] = {}
    for info in listed:
        name = info.orig_filename  # before zipfile cuts a name at a NUL or turns backslashes around
        if not name or name.startswith("/") or ".." in name or "\\" in name or "\0" in name or _DRIVE.match(name):
            raise PackageError(f"entry path outside the package: {name!r}")
        if name in infos:
            raise PackageError(f"entry path outside the package: {name!r} appears twice")
        if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise PackageError(f"entry {name} is encrypted or compressed with an unsupported method")
        if info.file_size > limits.max_entry_bytes:
            raise PackageLimitError(f"entry {name} declares {info.file_size} bytes, over the per-entry limit")
        infos[name] = info
    if sum(info.file_size for info in listed) > limits.max_total_bytes:
        raise PackageLimitError(f"the package's entries add up to more than the {limits.max_total_bytes}-byte limit")
    if _MANIFEST not in infos:
        raise PackageError("not a Soulfra package: manifest.json is missing")
    if _SIGNATURE not in infos:
        raise PackageSignatureError("missing signature: the package has no signature.json")
    signature = _read_entry(archive, infos[_SIGNATURE], _MAX_SIGNATURE_BYTES)
    body = _read_entry(archive, infos[_MANIFEST], min(limits.max_entry_bytes, _MAX_MANIFEST_BYTES))
    signer_id = _check_signature(signature, body, keyring)
    manifest = _json(body, _MANIFEST)
    _check_manifest(manifest, infos, limits)
    return manifest, signer_id, infos


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """The entry's bytes, reading at most one byte past ``limit`` whatever its header claims."""
    try:
        with archive.open(info) as entry:
            data = entry.read(limit + 1)
    except _ZIP_ERRORS as exc:
        raise PackageError(f"entry {info.orig_filename} is corrupt: {exc}") from exc
    if len(data) > limit:
        raise PackageLimitError(f"entry {info.orig_filename} holds more than {limit} bytes")
    return data


def _check_signature(raw: bytes, body: bytes, keyring: Verifier) -> str:
    try:
        sig = json.loads(raw)
        algorithm, signer_id = sig["algorithm"], sig["key_id"]
        public = base64.b64decode(sig["public_key"], validate=True)
        signature = base64.b64decode(sig["signature"], validate=True)
    except (ValueError, TypeError, KeyError, binascii.Error) as exc:
        raise PackageSignatureError(f"signature.json is malformed: {exc}") from exc
    if algorithm != "ed25519" or not isinstance(signer_id, str) or key_id(public) != signer_id:
        raise PackageSignatureError("signature.json is malformed: not an ed25519 signature with a matching key id")
    trusted = keyring.trusted_key(signer_id)
    if trusted is None:
        raise PackageSignatureError(
            f"the package is signed by key {signer_id}, which this installation does not trust; "
            "to trust it, get the signer's public key file and run `soulfra keys trust FILE`"
        )
    if not verify(trusted, signature, body):
        raise PackageSignatureError(f"the signature on manifest.json does not verify with key {signer_id}")
    return signer_id


def _check_manifest(manifest: dict[str, Any], infos: dict[str, zipfile.ZipInfo], limits: Limits) -> None:
    if manifest.get("format") != FORMAT:
        raise PackageError("manifest.json does not describe a soulpkg package")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise PackageError(f"package format version {manifest.get('format_version')!r} is not {FORMAT_VERSION}")
    kind, entries = manifest.get("kind"), manifest.get("entries")
    if kind == "instance":
        _check_bundle(manifest.get("instance"), manifest.get("lineage"), manifest.get("edits"), {}, _MANIFEST)
        expected = _expected_entries(manifest)
    elif kind == "collection":
        ids = manifest.get("instances")
        if not isinstance(ids, list) or not ids or len(set(map(str, ids))) != len(ids):
            raise PackageError("manifest.json of a collection needs a list of distinct instance ids")
        expected = {f"instances/{_check_id(name, _MANIFEST)}.soulpkg" for name in ids}
    else:
        raise PackageError(f"manifest.json names an unknown package kind {kind!r}")
    if (
        not isinstance(entries, dict)
        or set(entries) != expected
        or not all(isinstance(e, dict) for e in entries.values())
    ):
        raise PackageError(f"manifest.json must list exactly the entries {', '.join(sorted(expected))}")
    present = set(infos) - {_MANIFEST, _SIGNATURE}
    if present - expected:
        raise PackageError(f"entry {min(present - expected)} is in the ZIP but not in the manifest")
    if expected - present:
        raise PackageError(f"entry {min(expected - present)} is listed in the manifest but missing from the ZIP")
    for name, entry in entries.items():
        size, raw_size, digest = (entry.get(key) for key in ("size", "raw_size", "sha256"))
        if not (_is_int(size) and _is_int(raw_size) and min(size, raw_size) >= 0 and _is_digest(digest)):
            raise PackageError(f"manifest.json has no valid sha256, size and raw_size for entry {name}")
        if size != infos[name].file_size or (not name.endswith(".zst") and raw_size != size):
            raise PackageError(f"entry {name} holds {infos[name].file_size} bytes, not the size in the manifest")
        if raw_size > limits.max_entry_bytes:
            raise PackageLimitError(f"entry {name} unpacks to {raw_size} bytes, over the per-entry limit")


def _bundle(manifest: dict[str, Any], blobs: dict[str, bytes], limits: Limits) -> InstanceBundle:
    engine = CompressionEngine(max_output=limits.max_entry_bytes)
    raw: dict[str, bytes] = {}
    for name, blob in blobs.items():
        if not name.endswith(".zst"):
            raw[name] = blob
            continue
        try:
            raw[name] = engine.decompress(CODEC_ZSTD, blob, raw_size=manifest["entries"][name]["raw_size"])
        except DecompressionLimitError as exc:
            raise PackageLimitError(f"entry {name} unpacks beyond the per-entry limit: {exc.detail}") from exc
        except CodecError as exc:
            raise PackageError(f"entry {name} is not valid zstd data: {exc.detail}") from exc
    instance = manifest["instance"]
    inputs, traces = _json_lines(raw[_INPUTS], _INPUTS), _json_lines(raw[_TRACES], _TRACES)
    _check_history(inputs, traces, "the package")
    compact = manifest.get("compact")
    if _BASE not in raw:
        raw[_BASE] = state_from_recipe(compact["genesis"] if isinstance(compact, dict) else None)
    # The signed manifest names each state by the hash of its exact bytes: equal hashes mean these are the bytes
    # that were signed, with no need to decode them here.
    if encoded_hash(raw[_BASE]) != instance["base_hash"]:
        raise PackageError(f"entry {_BASE} is not the base state the manifest names (its hash differs)")
    replayed = _HEAD not in raw
    if replayed:
        raw[_HEAD] = _replayed(raw[_BASE], inputs, int(instance["head_tick"]))
    if encoded_hash(raw[_HEAD]) != instance["head_hash"]:
        what = "entry " + _HEAD if compact is None else "the history (replayed)"
        raise PackageError(f"{what} does not give the head state the manifest names (its hash differs)")
    config = _json(raw[_CONFIG], _CONFIG)
    return InstanceBundle(
        instance=instance,
        lineage=manifest["lineage"],
        base_state=raw[_BASE],
        head_state=raw[_HEAD],
        inputs=inputs,
        traces=traces,
        config=config,
        edits=manifest["edits"],
        replayed=replayed,
    )


# -- shapes -----------------------------------------------------------------------------------------------------


def _replayed(base: bytes, inputs: list[dict[str, Any]], head_tick: int) -> bytes:
    """The head state a compact package's history replays to."""
    try:
        world = World(decode_state(base))
    except CodecError as exc:
        raise PackageError(f"the base state is not a valid world state: {exc.detail}") from exc
    if head_tick < world.tick:
        raise PackageError(f"the head tick {head_tick} comes before the base tick {world.tick}")
    try:
        world.run_to(head_tick, (parse_input({k: v for k, v in item.items() if k != "seq"}) for item in inputs))
    except InputError as exc:
        raise PackageError(f"the history does not replay from the base state: {exc.detail}") from None
    return encode_state(world.state)


def _check_bundle(instance: object, lineage: object, edits: object, config: object, where: str) -> None:
    """The instance record, lineage, edits and config must have the shape the format promises."""
    if not isinstance(instance, dict):
        raise PackageError(f"{where} has no instance record")
    missing = [key for key in _INSTANCE_KEYS if key not in instance]
    if missing:
        raise PackageError(f"the instance record in {where} lacks {', '.join(missing)}")
    _check_id(instance["id"], where)
    if len(instance["id"]) > MAX_INSTANCE_ID or not isinstance(instance["name"], str):
        raise PackageError(
            f"the instance record in {where} needs an id of at most {MAX_INSTANCE_ID} characters and a name"
        )
    if len(instance["name"]) > MAX_WORLD_NAME:
        raise PackageError(
            f"the instance name in {where} is {len(instance['name'])} characters, over the limit of {MAX_WORLD_NAME}"
        )
    if not all(_is_int(instance[key]) for key in ("seed", "base_tick", "head_tick")):
        raise PackageError(f"the instance record in {where} needs integer seed, base_tick and head_tick")
    if not all(isinstance(instance[key], str) for key in ("base_hash", "head_hash")):
        raise PackageError(f"the instance record in {where} needs base_hash and head_hash strings")
    if not isinstance(lineage, list) or not all(isinstance(item, dict) for item in lineage):
        raise PackageError(f"the lineage in {where} is not a list of records")
    if not isinstance(edits, list) or not all(isinstance(item, dict) and "op" in item for item in edits):
        raise PackageError(f"the edits in {where} are not a list of records with an op")
    if not isinstance(config, dict):
        raise PackageError(f"the config in {where} is not a JSON object")


def _check_history(inputs: list[dict[str, Any]], traces: list[dict[str, Any]], where: str) -> None:
    last = -1
    for line, item in enumerate(inputs, 1):
        seq = item.get("seq")
        if not _is_int(seq) or seq <= last:
            raise PackageError(f"input {line} in {where} has no seq above the one before it")
        last = seq
        try:
            parse_input({key: value for key, value in item.items() if key != "seq"})
        except InputError as exc:
            raise PackageError(f"input {line} in {where} is not a valid input: {exc.detail}") from exc
    for line, item in enumerate(traces, 1):
        if not (_is_int(item.get("tick")) and isinstance(item.get("kind"), str) and isinstance(item.get("data"), dict)):
            raise PackageError(f"trace {line} in {where} needs an integer tick, a kind and a data object")


def _check_id(value: object, where: str) -> str:
    if not isinstance(value, str) or not _SAFE_ID.fullmatch(value) or ".." in value:
        raise PackageError(f"{where} names an instance id unfit for a file name: {value!r}")
    return value


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_digest(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) is not None


def _canonical(value: object) -> bytes:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise PackageError(f"a package holds only JSON values: {exc}") from exc


def _json(data: bytes, name: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise PackageError(f"entry {name} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise PackageError(f"entry {name} is not a JSON object")
    return value


def _json_lines(data: bytes, name: str) -> list[dict[str, Any]]:
    return [_json(line, f"{name} line {number}") for number, line in enumerate(data.splitlines(), 1)]


def _version() -> str:
    try:
        return metadata.version("soulfra")
    except metadata.PackageNotFoundError:
        return "dev"


_BY = f"soulfra {_version()}"
