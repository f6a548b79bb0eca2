"""``.soulpkg`` packages through the CLI, with no server: the documented database-to-database path on SQLite and
PostgreSQL, and every kind of bad package refused with one line and nothing written to the target database.

Each command runs in this process as a command of this module's installation (``SOULFRA_HOME``): its own key signs
and is trusted; bad packages are made by taking a good one apart and, where the point is past the signature,
re-signing it.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import zstandard

from soulfra.errors import PackageError, PackageLimitError
from soulfra.meta.keys import KeyRing, Signer
from soulfra.meta.offline import import_db
from soulfra.meta.package import Limits, read_package
from soulfra.meta.package.common import canonical
from soulfra.meta.package.writer import signature_of
from soulfra.store import SqlStore
from soulfra.store import schema as tables

from .support import one_error_line, parsed, soulfra_at, soulfra_each_at

# The module's tests share an expensive module-scoped fixture: under pytest-xdist they all run in one worker.
pytestmark = pytest.mark.xdist_group("test_packages_cli")

ENTRY_LIMIT = 1 << 30  # what the CLI accepts per entry, decompressed
MANIFEST, SIGNATURE, HEAD, BASE, INPUTS = (
    "manifest.json",
    "signature.json",
    "state/head.zst",
    "state/base.zst",
    "history/inputs.jsonl.zst",
)


def rows_in(url: str) -> dict[str, int]:
    """Rows per table of a Soulfra database; a SQLite file that does not exist holds none. The audit chain's head
    row is the schema's own (every migrated database has it), not data."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return {}
    store = SqlStore.open(url)
    try:
        with store.engine.connect() as conn:
            counts = {
                t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in tables.metadata.sorted_tables
                if t is not tables.audit_chain
            }
    finally:
        store.close()
    return {name: count for name, count in counts.items() if count}


AUDIT_TABLES = {"audit_log", "audit_chain", "audit_heads"}


def stored_in(url: str) -> dict[str, int]:
    """``rows_in`` but the audit log's tables: what a refused import must not have written."""
    return {name: count for name, count in rows_in(url).items() if name not in AUDIT_TABLES}


def refusals_in(url: str) -> list[tuple[str, str]]:
    """The refused actions the audit log of a database holds: (action, outcome)."""
    store = SqlStore.open(url)
    try:
        return [(e.action, e.outcome) for e in store.audit.read() if e.outcome != "ok"]
    finally:
        store.close()


# -- the good package ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """A database made by ``soulfra run``, exported by ``soulfra export``, and its state as ``soulfra state`` says."""

    home: Path
    db: str
    package: Path
    state: dict[str, Any]


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Origin:
    root = tmp_path_factory.mktemp("origin")
    home, db, package = root / "home", f"sqlite:///{root / 'a.db'}", root / "f.soulpkg"
    ran = soulfra_at(home, "run", "--db", db, "--ticks", "120", "--seed", "3")
    assert ran.returncode == 0, ran.stderr
    exported, state = soulfra_each_at(home, ["export", "--db", db, "-o", str(package)], ["state", "--db", db, "--json"])
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith(f"wrote {package} ("), exported.stdout
    return Origin(home=home, db=db, package=package, state=parsed(state))


def test_the_documented_path_between_two_databases(origin: Origin, db_url: str) -> None:
    imported = soulfra_at(origin.home, "import", str(origin.package), "--db", db_url)
    assert imported.returncode == 0, imported.stderr
    name = origin.state["instance"]
    assert imported.stdout == f"imported {name} at tick 120 ({origin.state['state_hash'][:19]})\n"
    there = parsed(soulfra_at(origin.home, "state", "--db", db_url, "--json"))
    assert (there["instance"], there["tick"], there["seed"]) == (name, 120, 3)
    assert there["state_hash"] == origin.state["state_hash"]


# -- bad packages --------------------------------------------------------------------------------------------------


def entries_of(package: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        return {info.orig_filename: archive.read(info) for info in archive.infolist()}


def zipped(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


def resigned(entries: dict[str, bytes], signer: Signer, *, raw_sizes: dict[str, int] | None = None) -> bytes:
    """The package with its manifest listing exactly ``entries`` (sha256 and size as they are; raw sizes kept, or
    from ``raw_sizes``), signed by ``signer``."""
    manifest = json.loads(entries[MANIFEST])
    listed = manifest["entries"]
    manifest["entries"] = {
        name: {
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "raw_size": (raw_sizes or {}).get(name, listed.get(name, {}).get("raw_size", len(data))),
        }
        for name, data in entries.items()
        if name not in (MANIFEST, SIGNATURE)
    }
    body = canonical(manifest)
    return zipped({**entries, MANIFEST: body, SIGNATURE: canonical(signature_of(body, signer))})


@dataclass(frozen=True)
class Kit:
    """What the bad packages are made from."""

    package: bytes
    own: Signer
    stranger: Signer
    bomb: bytes  # a zstd frame that declares (and holds) one byte more than the per-entry limit

    @property
    def entries(self) -> dict[str, bytes]:
        return entries_of(self.package)


def flipped_in_place(kit: Kit) -> bytes:
    """One byte of the head state flipped in the ZIP file itself (its CRC no longer matches)."""
    with zipfile.ZipFile(io.BytesIO(kit.package)) as archive:
        info = archive.getinfo(HEAD)
    data = bytearray(kit.package)
    start = info.header_offset + 30 + len(info.orig_filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0x01
    return bytes(data)


def flipped_and_rezipped(kit: Kit) -> bytes:
    """One byte of the head state flipped, in a well-formed ZIP with the original manifest and signature."""
    entries = kit.entries
    head = bytearray(entries[HEAD])
    head[len(head) // 2] ^= 0x01
    return zipped({**entries, HEAD: bytes(head)})


def swapped(kit: Kit) -> bytes:
    entries = kit.entries
    return zipped({**entries, BASE: entries[HEAD], HEAD: entries[BASE]})


def unsigned(kit: Kit) -> bytes:
    return zipped({name: data for name, data in kit.entries.items() if name != SIGNATURE})


def manifest_altered(kit: Kit) -> bytes:
    entries = kit.entries
    manifest = json.loads(entries[MANIFEST])
    manifest["instance"]["name"] = "someone else's"
    return zipped({**entries, MANIFEST: canonical(manifest)})


def signed_by_a_stranger(kit: Kit) -> bytes:
    return resigned(kit.entries, kit.stranger)


def unlisted_path_outside(kit: Kit) -> bytes:
    return zipped({**kit.entries, "../evil": b"#!/bin/sh\n"})


def listed_path_outside(kit: Kit) -> bytes:
    return resigned({**kit.entries, "../evil": b"#!/bin/sh\n"}, kit.own)


def zstd_bomb(kit: Kit) -> bytes:
    """The head state replaced by a frame that unpacks past the limit; the manifest keeps the true raw size."""
    return resigned({**kit.entries, HEAD: kit.bomb}, kit.own)


def declared_oversize(kit: Kit) -> bytes:
    return resigned(kit.entries, kit.own, raw_sizes={HEAD: ENTRY_LIMIT + 1})


def history_that_does_not_replay(kit: Kit) -> bytes:
    """A whisper added to the signed history: every entry checks out, but the history no longer gives the head."""
    entries = kit.entries
    lines = zstandard.ZstdDecompressor().decompress(entries[INPUTS])
    whisper = {"seq": 1, "tick": 50, "type": "whisper", "target": "*", "text": "I was never here", "tone": "dark"}
    raw = lines + canonical(whisper) + b"\n"
    compressed = zstandard.ZstdCompressor(write_checksum=True, write_content_size=True).compress(raw)
    return resigned({**entries, INPUTS: compressed}, kit.own, raw_sizes={INPUTS: len(raw)})


REFUSALS: dict[str, tuple[Callable[[Kit], bytes], str]] = {
    "byte-flipped-in-place": (flipped_in_place, "entry state/head.zst is corrupt"),
    "byte-flipped-rezipped": (flipped_and_rezipped, "entry state/head.zst does not match its sha256"),
    "entries-swapped": (swapped, "entry state/base.zst holds"),
    "signature-removed": (unsigned, "missing signature"),
    "manifest-altered": (manifest_altered, "signature on manifest.json does not verify"),
    "untrusted-signer": (signed_by_a_stranger, "which this installation does not trust"),
    "path-outside-unlisted": (unlisted_path_outside, "entry path outside the package: '../evil'"),
    "path-outside-listed": (listed_path_outside, "entry path outside the package: '../evil'"),
    "zstd-bomb": (zstd_bomb, "entry state/head.zst unpacks beyond the per-entry limit"),
    "declared-oversize": (declared_oversize, f"entry state/head.zst unpacks to {ENTRY_LIMIT + 1} bytes, over the"),
    "history-does-not-replay": (history_that_does_not_replay, "not the head hash"),
}


def bomb_frame(size: int, *, declared: bool) -> bytes:
    """A zstd frame of ``size`` zero bytes, with or without the content size in its header."""
    compressor = zstandard.ZstdCompressor(level=1, write_content_size=declared).compressobj(size=size)
    zeros, left, parts = bytes(1 << 20), size, []
    while left:
        parts.append(compressor.compress(zeros[: min(left, len(zeros))]))
        left -= min(left, len(zeros))
    parts.append(compressor.flush())
    return b"".join(parts)


@pytest.fixture(scope="module")
def kit(origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return Kit(
        package=origin.package.read_bytes(),
        own=KeyRing(origin.home).signer(),
        stranger=KeyRing(tmp_path_factory.mktemp("stranger")).signer(),
        bomb=bomb_frame(ENTRY_LIMIT + 1, declared=True),
    )


def test_taking_a_package_apart_alone_breaks_nothing(origin: Origin, kit: Kit) -> None:
    # The refusals below come from what each case changes, not from the way the packages are put back together.
    keyring = KeyRing(origin.home)
    for package in (zipped(kit.entries), resigned(kit.entries, kit.own)):
        [bundle] = read_package(package, keyring).bundles
        assert bundle.instance["head_hash"] == origin.state["state_hash"]
    assert read_package(resigned(kit.entries, kit.own), keyring).key_id == kit.own.key_id


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_bad_package_is_refused_and_nothing_is_written(origin: Origin, kit: Kit, case: str, tmp_path: Path) -> None:
    make, problem = REFUSALS[case]
    bad, target = tmp_path / "bad.soulpkg", f"sqlite:///{tmp_path / 'target.db'}"
    bad.write_bytes(make(kit))
    line = one_error_line(soulfra_at(origin.home, "import", str(bad), "--db", target, "--verify-replay"), 65)
    assert problem in line
    if case == "untrusted-signer":
        assert kit.stranger.key_id in line
        assert "soulfra keys trust" in line
    assert stored_in(target) == {}
    assert [action for action, _ in refusals_in(target)] == ["package.import"]  # the refusal alone is recorded


@pytest.fixture
def installation(origin: Origin) -> Path:
    """The module's installation, whose home the library calls here are given."""
    return origin.home


def test_a_bomb_without_a_declared_size_is_stopped_at_the_limit(kit: Kit, installation: Path, tmp_path: Path) -> None:
    # Its frame does not say how large it unpacks: only counting the output stops it. The CLI's limit is 1 GiB, so
    # the reader is given a small one here; import_db (with the CLI's limits) refuses it too, writing nothing.
    package = resigned({**kit.entries, HEAD: bomb_frame(8 << 20, declared=False)}, kit.own)
    with pytest.raises(PackageLimitError, match=r"entry state/head\.zst unpacks beyond the per-entry limit"):
        read_package(package, KeyRing(installation), limits=Limits(max_entry_bytes=1 << 20))
    path, target = tmp_path / "bomb.soulpkg", f"sqlite:///{tmp_path / 'target.db'}"
    path.write_bytes(package)
    with pytest.raises(PackageError, match=r"entry state/head\.zst"):
        import_db(target, path, home=installation, verify_replay=True)
    assert stored_in(target) == {}
    assert refusals_in(target) == [("package.import", "package_invalid")]


def test_an_instance_already_there_is_refused_and_nothing_is_added(origin: Origin) -> None:
    before = stored_in(origin.db)
    line = one_error_line(soulfra_at(origin.home, "import", str(origin.package), "--db", origin.db), 65)
    assert f"instance '{origin.state['instance']}' already exists here" in line
    assert "--as" in line
    assert stored_in(origin.db) == before
    assert refusals_in(origin.db)[-1] == ("package.import", "conflict")


def test_a_compact_export_is_smaller_and_imports_to_the_same_state(origin: Origin, tmp_path: Path) -> None:
    compact, db = tmp_path / "compact.soulpkg", f"sqlite:///{tmp_path / 'c.db'}"
    exported = soulfra_at(origin.home, "export", "--db", origin.db, "-o", str(compact), "--compact")
    assert exported.returncode == 0, exported.stderr
    assert compact.stat().st_size < origin.package.stat().st_size
    with zipfile.ZipFile(compact) as archive:
        assert not {"state/base.zst", "state/head.zst"} & set(archive.namelist())  # genesis recipe, then replay
    imported = soulfra_at(origin.home, "import", str(compact), "--db", db)
    assert imported.returncode == 0, imported.stderr
    assert "replay verified" in imported.stdout  # the head was rebuilt by replay, checked against its signed hash
    assert parsed(soulfra_at(origin.home, "state", "--db", db, "--json"))["state_hash"] == origin.state["state_hash"]
