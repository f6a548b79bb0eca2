"""Reading ``.soulpkg`` files: the Ed25519 signature on ``manifest.json`` is verified before anything in it is
believed, then every entry's path, size and sha256 within ``Limits``, and compact states are rebuilt and checked.
Nothing is returned until all of it checks out. Reads only; the manifest's rules live in ``manifest``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from soulfra.codec.compression import CODEC_ZSTD, CompressionEngine
from soulfra.errors import (
    CodecError,
    DecompressionLimitError,
    InputError,
    PackageError,
    PackageLimitError,
    PackageSignatureError,
)
from soulfra.meta.keys import Verifier, key_id, verify
from soulfra.meta.package.common import Limits, Progress, json_lines, json_object
from soulfra.meta.package.manifest import (
    BASE,
    CONFIG,
    HEAD,
    INPUTS,
    MANIFEST,
    SIGNATURE,
    TRACES,
    InstanceBundle,
    Manifest,
    check_history,
)
from soulfra.meta.recipe import state_from_recipe
from soulfra.world import World, decode_state, encode_state, parse_input
from soulfra.world.encoding import encoded_hash

MAX_DEPTH = 4  # packages inside packages: a member of a member of ... at most this many levels down
_DRIVE = re.compile(r"^[A-Za-z]:")
_MAX_SIGNATURE_BYTES = 4096
_MAX_MANIFEST_BYTES = 16 << 20  # read before the signature is checked: an unsigned upload may not cost more
# What zipfile raises on a damaged archive (ValueError: a negative seek from a corrupt offset, among others).
_ZIP_ERRORS = (
    zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, struct.error,
    EOFError, OSError, ValueError, NotImplementedError,
)  # fmt: skip
_DEFAULT_LIMITS = Limits()  # frozen: one instance serves every call


@dataclass(frozen=True, slots=True, kw_only=True)
class Package:
    """A verified package: its manifest, the id of the key that signed it, and its instances in order."""

    manifest: dict[str, Any]
    key_id: str
    bundles: list[InstanceBundle]


def read_package(
    source: Path | bytes | BinaryIO,
    keyring: Verifier,
    *,
    limits: Limits = _DEFAULT_LIMITS,
    progress: Progress | None = None,
    on_tick: Progress | None = None,
) -> Package:
    """Read and verify a package (signature, paths, sizes, hashes, states); refuse it whole on any problem.
    ``progress`` hears of the bytes read, ``on_tick`` of the ticks a compact package's history is replayed, each
    as ``(done, total)``."""
    return _read(source, keyring, limits, [limits.max_total_bytes], 0, progress, on_tick)


def package_info(
    source: Path | bytes | BinaryIO, keyring: Verifier, limits: Limits = _DEFAULT_LIMITS
) -> dict[str, Any]:
    """The verified manifest (signature, entry paths and sizes checked) without reading the entries themselves."""
    with _opened(source, limits) as archive:
        return _verified(archive, keyring, limits)[0].document


def _read(
    source: Path | bytes | BinaryIO,
    keyring: Verifier,
    limits: Limits,
    budget: list[int],
    depth: int,
    progress: Progress | None,
    on_tick: Progress | None = None,
) -> Package:
    if depth > MAX_DEPTH:
        raise PackageError(f"packages are nested more than {MAX_DEPTH} levels deep")
    with _opened(source, limits) as archive:
        manifest, signer_id, infos = _verified(archive, keyring, limits)
        entries = manifest.entries
        if manifest.kind == "instance":
            budget[0] -= sum(entry.raw_size for entry in entries.values())
            if budget[0] < 0:
                raise PackageLimitError(f"the package unpacks beyond the {limits.max_total_bytes}-byte total limit")
        total, done, blobs = sum(entry.size for entry in entries.values()), 0, {}
        for name in sorted(entries):
            blobs[name] = _read_entry(archive, infos[name], entries[name].size)
            if hashlib.sha256(blobs[name]).hexdigest() != entries[name].sha256:
                raise PackageError(f"entry {name} does not match its sha256 in the manifest (altered or swapped)")
            done += len(blobs[name])
            if progress is not None:
                progress(done, total)
    if manifest.instance is not None:
        bundles = [_bundle(manifest, manifest.instance, blobs, limits, on_tick)]
    else:
        bundles = []
        for member in manifest.members:
            inner = _read(blobs.pop(f"instances/{member}.soulpkg"), keyring, limits, budget, depth + 1, None, on_tick)
            if inner.manifest["kind"] == "instance" and inner.bundles[0].instance["id"] != member:
                raise PackageError(f"collection member {member} holds instance {inner.bundles[0].instance['id']}")
            bundles.extend(inner.bundles)
    return Package(manifest=manifest.document, key_id=signer_id, bundles=bundles)


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
) -> tuple[Manifest, str, dict[str, zipfile.ZipInfo]]:
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
    if MANIFEST not in infos:
        raise PackageError("not a Soulfra package: manifest.json is missing")
    if SIGNATURE not in infos:
        raise PackageSignatureError("missing signature: the package has no signature.json")
    signature = _read_entry(archive, infos[SIGNATURE], _MAX_SIGNATURE_BYTES)
    body = _read_entry(archive, infos[MANIFEST], min(limits.max_entry_bytes, _MAX_MANIFEST_BYTES))
    signer_id = _check_signature(signature, body, keyring)
    sizes = {name: info.file_size for name, info in infos.items()}
    return Manifest.parse(json_object(body, MANIFEST), sizes, limits), signer_id, infos


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


def _bundle(
    manifest: Manifest,
    instance: dict[str, Any],
    blobs: dict[str, bytes],
    limits: Limits,
    on_tick: Progress | None = None,
) -> InstanceBundle:
    engine = CompressionEngine(max_output=limits.max_entry_bytes)
    raw: dict[str, bytes] = {}
    for name, blob in blobs.items():
        if not name.endswith(".zst"):
            raw[name] = blob
            continue
        try:
            raw[name] = engine.decompress(CODEC_ZSTD, blob, raw_size=manifest.entries[name].raw_size)
        except DecompressionLimitError as exc:
            raise PackageLimitError(f"entry {name} unpacks beyond the per-entry limit: {exc.detail}") from exc
        except CodecError as exc:
            raise PackageError(f"entry {name} is not valid zstd data: {exc.detail}") from exc
    inputs, traces = json_lines(raw[INPUTS], INPUTS), json_lines(raw[TRACES], TRACES)
    check_history(inputs, traces, "the package")
    if BASE not in raw:
        raw[BASE] = state_from_recipe(manifest.genesis)
    # The signed manifest names each state by the hash of its exact bytes: equal hashes mean these are the bytes
    # that were signed, with no need to decode them here.
    if encoded_hash(raw[BASE]) != instance["base_hash"]:
        raise PackageError(f"entry {BASE} is not the base state the manifest names (its hash differs)")
    replayed = HEAD not in raw
    if replayed:
        raw[HEAD] = _replayed(raw[BASE], inputs, int(instance["head_tick"]), on_tick)
    if encoded_hash(raw[HEAD]) != instance["head_hash"]:
        what = "the history (replayed)" if manifest.compact else "entry " + HEAD
        raise PackageError(f"{what} does not give the head state the manifest names (its hash differs)")
    frames = {instance[f"{end}_hash"]: blobs[name] for end, name in (("base", BASE), ("head", HEAD)) if name in blobs}
    config = json_object(raw[CONFIG], CONFIG)
    return InstanceBundle(
        instance=instance,
        lineage=manifest.lineage,
        base_state=raw[BASE],
        head_state=raw[HEAD],
        inputs=inputs,
        traces=traces,
        config=config,
        edits=manifest.edits,
        replayed=replayed,
        frames=frames,
    )


def _replayed(base: bytes, inputs: list[dict[str, Any]], head_tick: int, on_tick: Progress | None) -> bytes:
    """The head state a compact package's history replays to; ``on_tick`` hears ``(ticks replayed, of total)``."""
    try:
        world = World(decode_state(base))
    except CodecError as exc:
        raise PackageError(f"the base state is not a valid world state: {exc.detail}") from exc
    if head_tick < world.tick:
        raise PackageError(f"the head tick {head_tick} comes before the base tick {world.tick}")
    try:
        start = world.tick
        ticked = None if on_tick is None else lambda tick: on_tick(tick - start, head_tick - start)
        world.run_to(
            head_tick, (parse_input({k: v for k, v in item.items() if k != "seq"}) for item in inputs), on_tick=ticked
        )
    except InputError as exc:
        raise PackageError(f"the history does not replay from the base state: {exc.detail}") from None
    return encode_state(world.state)
