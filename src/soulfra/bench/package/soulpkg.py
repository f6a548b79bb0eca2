"""Part 1 of ``soulfra bench package``: one instance's ``.soulpkg`` (size, export and import speed, full and
``--compact``) beside the same content as gzip'd JSON, measured in the same run. It measures and returns figures;
judging them against the targets and showing them is the command's."""

from __future__ import annotations

import gzip
import json
import os
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from soulfra.bench.package.common import MB, _Laps, _ms, _Source
from soulfra.errors import HistoryIntegrityError
from soulfra.meta.keys import KeyRing, Signer
from soulfra.meta.package import InstanceBundle, read_package, write_package
from soulfra.meta.transfer import bundle_for, import_bundle
from soulfra.store import SqlStore
from soulfra.world import decode_state
from soulfra.world.encoding import state_tree
from soulfra.world.model import WorldState

GZIP_LEVEL = 6
REPEATS = 5  # package write, read and store; the median is kept
RAW_MEANS = (
    "MB = 10^6 bytes of what the package carries uncompressed: the base and head states (encode_state bytes) and the "
    "inputs and traces (JSON lines), as the manifest's raw_size of each entry; config.json and the manifest left out"
)


def _mb_s(raw_bytes: int, seconds: float) -> float:
    return round(raw_bytes / MB / seconds, 2) if seconds > 0 else 0.0


def _jsonable(value: Any) -> Any:
    """A state tree as JSON values: arrays and tuples become lists, bytes hex, mapping keys strings."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes | bytearray):
        return value.hex()
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, set | frozenset):
        return [_jsonable(item) for item in sorted(value)]
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _peer_content(bundle: InstanceBundle, base: WorldState, head: WorldState) -> dict[str, Any]:
    """The package's content as one JSON document: the same instance record, states, inputs and traces."""
    return {
        "instance": bundle.instance,
        "base_state": _jsonable(state_tree(base)),
        "head_state": _jsonable(state_tree(head)),
        "inputs": bundle.inputs,
        "traces": bundle.traces,
    }


def _durable_write(path: Path, data: bytes) -> None:
    """Written and fsynced, as ``write_package`` writes a package."""
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _gzip_write(path: Path, content: dict[str, Any]) -> None:
    text = json.dumps(content, separators=(",", ":")).encode()
    _durable_write(path, gzip.compress(text, compresslevel=GZIP_LEVEL, mtime=0))


def _gzip_read(path: Path) -> Any:
    return json.loads(gzip.decompress(path.read_bytes()))


def _package_part(source: _Source, workdir: Path, progress: Progress) -> dict[str, Any]:
    store, instance_id = source.store, source.instance_id
    signer = Signer.generate()
    keyring = KeyRing(workdir / "home", extra_trusted=[signer.public_key])
    package_path, peer_path = workdir / "source.soulpkg", workdir / "source.json.gz"
    compact_path = workdir / "compact.soulpkg"
    task = progress.add_task("package: export, import, gzip'd JSON", total=REPEATS * 3)
    laps = _Laps()

    def round_trip(prefix: str, path: Path, n: int, *, compact: bool) -> dict[str, Any]:
        """Write the package, read it and store it in a fresh database; the manifest written."""
        written = laps.measure(f"{prefix}write", partial(write_package, path, [bundle], signer, compact=compact))
        target = SqlStore.open(f"sqlite:///{workdir / f'import-{prefix}{n}.db'}")
        try:
            package = laps.measure(f"{prefix}read", partial(read_package, path, keyring))
            imported = laps.measure(f"{prefix}store", partial(import_bundle, target, package.bundles[0]))
        finally:
            target.close()
        if imported["state_hash"] != bundle.instance["head_hash"]:
            raise HistoryIntegrityError(
                f"the imported instance has state {imported['state_hash']}, not the exported one"
            )
        progress.advance(task)
        return written

    for n in range(REPEATS):
        bundle = laps.measure("bundle", partial(bundle_for, store, instance_id))
        manifest = round_trip("", package_path, n, compact=False)
    for n in range(REPEATS):  # compact: the importer rebuilds the states (genesis recipe, replay of the history)
        compact = round_trip("compact_", compact_path, n, compact=True)
    base, head = decode_state(bundle.base_state), decode_state(bundle.head_state)
    for _ in range(REPEATS):
        content = laps.measure("peer_build", partial(_peer_content, bundle, base, head))
        laps.measure("peer_write", partial(_gzip_write, peer_path, content))
        loaded = laps.measure("peer_read", partial(_gzip_read, peer_path))
        if loaded != content:
            raise HistoryIntegrityError("the gzip'd JSON peer did not read back what it wrote")
        progress.advance(task)
    progress.remove_task(task)

    entries = manifest["entries"]
    raw = {name: int(entry["raw_size"]) for name, entry in sorted(entries.items())}
    carried = sum(size for name, size in raw.items() if name.endswith(".zst"))
    package_bytes = package_path.stat().st_size
    gzip_bytes = peer_path.stat().st_size
    laps.add("import", "read", "store")
    laps.add("compact_import", "compact_read", "compact_store")
    compact_bytes = compact_path.stat().st_size
    laps.add("export", "bundle", "write")
    write, read, imports = laps.median("write"), laps.median("read"), laps.median("import")
    peer_write, peer_read = laps.median("peer_write"), laps.median("peer_read")
    return {
        "agents": head.size,
        "ticks": head.tick,
        "inputs": len(bundle.inputs),
        "traces": len(bundle.traces),
        "raw_bytes": carried,
        "raw_bytes_by_entry": raw,
        "raw_bytes_means": RAW_MEANS,
        "package_bytes": package_bytes,
        "package_entry_bytes": {name: int(entry["size"]) for name, entry in sorted(entries.items())},
        "gzip_json_bytes": gzip_bytes,
        "json_bytes": len(json.dumps(content, separators=(",", ":")).encode()),
        "size_ratio": round(package_bytes / gzip_bytes, 4),
        "bundle_ms": _ms(laps.median("bundle")),
        "write_ms": _ms(write),
        "read_ms": _ms(read),
        "store_ms": _ms(laps.median("store")),
        "import_ms": _ms(imports),
        "export_mb_s": _mb_s(carried, write),
        "export_with_bundle_mb_s": _mb_s(carried, laps.median("export")),
        "import_mb_s": _mb_s(carried, imports),
        "read_mb_s": _mb_s(carried, read),
        "peer_build_ms": _ms(laps.median("peer_build")),
        "peer_write_ms": _ms(peer_write),
        "peer_read_ms": _ms(peer_read),
        "peer_write_mb_s": _mb_s(carried, peer_write),
        "peer_read_mb_s": _mb_s(carried, peer_read),
        "write_speed_vs_peer": round(peer_write / write, 2),
        "read_speed_vs_peer": round(peer_read / read, 2),
        "import_speed_vs_peer_read": round(peer_read / imports, 2),
        "compact_entries": sorted(compact["entries"]),
        "compact_package_bytes": compact_bytes,
        "compact_size_ratio": round(compact_bytes / gzip_bytes, 4),
        "compact_write_ms": _ms(laps.median("compact_write")),
        "compact_read_ms": _ms(laps.median("compact_read")),
        "compact_import_ms": _ms(laps.median("compact_import")),
        "compact_export_mb_s": _mb_s(carried, laps.median("compact_write")),
        "compact_import_mb_s": _mb_s(carried, laps.median("compact_import")),
        "repeats": REPEATS,
        "samples_ms": {name: [_ms(s) for s in samples] for name, samples in laps.samples.items()},
    }
