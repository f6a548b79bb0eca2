"""Writing ``.soulpkg`` files: an instance (or a collection of packages) as one signed, deterministic ZIP.

The same content and key give the same bytes, on any platform. Writes only; what a package may hold is checked by
``manifest``, and nothing here reads a package back.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import secrets
import zipfile
from collections.abc import Sequence
from contextlib import suppress
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

from soulfra.codec.compression import CODEC_ZSTD, CompressionEngine
from soulfra.errors import OutputError, PackageError
from soulfra.meta.keys import Signer
from soulfra.meta.package.common import Progress, canonical
from soulfra.meta.package.manifest import (
    BASE,
    CONFIG,
    FORMAT,
    FORMAT_VERSION,
    HEAD,
    INPUTS,
    MANIFEST,
    SIGNATURE,
    TRACES,
    InstanceBundle,
    check_bundle,
    check_history,
    check_id,
)
from soulfra.meta.recipe import genesis_recipe

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a ZIP header can hold
_CHUNK = 1 << 20


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
        check_id(name, "a collection member")
    if len(set(ids)) != len(ids):
        raise PackageError("a collection cannot hold two packages under the same id")
    files = {f"instances/{name}.soulpkg": (data, len(data)) for name, data in members}
    return _emit(target, files, {"kind": "collection", "instances": ids}, signer, progress)


def _instance_parts(
    bundle: InstanceBundle, engine: CompressionEngine, compact: bool
) -> tuple[dict[str, tuple[bytes, int]], dict[str, Any]]:
    """An instance package's entries and manifest head."""
    check_bundle(bundle.instance, bundle.lineage, bundle.edits, bundle.config, "the bundle")
    check_history(bundle.inputs, bundle.traces, "the bundle")
    head: dict[str, Any] = {
        "kind": "instance", "instance": bundle.instance, "lineage": bundle.lineage, "edits": bundle.edits
    }  # fmt: skip

    def zst(raw: bytes) -> tuple[bytes, int]:
        return engine.compress(raw, codec=CODEC_ZSTD).data, len(raw)

    config = canonical(bundle.config)
    files = {
        INPUTS: zst(b"".join(canonical(item) + b"\n" for item in bundle.inputs)),
        TRACES: zst(b"".join(canonical(item) + b"\n" for item in bundle.traces)),
        CONFIG: (config, len(config)),
    }
    recipe = genesis_recipe(bundle.base_state) if compact and bundle.instance["base_tick"] == 0 else None
    if recipe is None:
        files[BASE] = zst(bundle.base_state)
    if compact:
        head["compact"] = {"genesis": recipe}
    else:
        files[HEAD] = zst(bundle.head_state)
    return files, head


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
    body = canonical(manifest)
    signature = signature_of(body, signer)
    contents = {name: data for name, (data, _) in files.items()}
    return manifest, {**contents, MANIFEST: body, SIGNATURE: canonical(signature)}


def signature_of(body: bytes, signer: Signer) -> dict[str, str]:
    """signature.json of a package whose manifest is ``body``: Ed25519 over those exact bytes, with the key."""
    return {
        "algorithm": "ed25519",
        "key_id": signer.key_id,
        "public_key": base64.b64encode(signer.public_key).decode("ascii"),
        "signature": base64.b64encode(signer.sign(body)).decode("ascii"),
    }


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


def _version() -> str:
    try:
        return metadata.version("soulfra")
    except metadata.PackageNotFoundError:
        return "dev"


_BY = f"soulfra {_version()}"
