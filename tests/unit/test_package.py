"""The .soulpkg codec: round trips, determinism, and every way a hostile or broken package must be refused."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import zstandard

from soulfra.errors import OutputError, PackageError, PackageLimitError, PackageSignatureError
from soulfra.meta.keys import KeyRing, Signer, public_key_text
from soulfra.meta.package import (
    MAX_DEPTH,
    InstanceBundle,
    Limits,
    package_info,
    read_package,
    write_collection,
    write_package,
)
from soulfra.world import DEFAULT_WORLD, Whisper, World, encode_state, input_to_json, state_hash

MIB = 1024 * 1024


def make_bundle(instance_id: str, *, seed: int = 7, ticks: int = 6) -> InstanceBundle:
    world = World.create(seed, DEFAULT_WORLD, agents=20)
    base_state, base_hash = encode_state(world.state), state_hash(world.state)
    inputs: list[dict[str, Any]] = []
    traces: list[dict[str, Any]] = []
    for step in range(ticks):
        items = [Whisper(tick=world.tick, target="*", text=f"remember the tide {step}")] if step % 2 else []
        inputs.extend({"seq": len(inputs) + 1, **input_to_json(item)} for item in items)
        events = world.step(items)
        traces.append({"tick": world.tick, "kind": "step", "data": {"events": len(events)}})
    instance = {
        "id": instance_id,
        "name": f"world {instance_id}",
        "seed": seed,
        "genesis_hash": base_hash,
        "world": {"name": "default", "agents": 20},
        "base_tick": 0,
        "base_hash": base_hash,
        "head_tick": world.tick,
        "head_hash": world.state_hash(),
        "parent_id": None,
        "fork_tick": None,
        "merge_parent_id": None,
    }
    return InstanceBundle(
        instance=instance,
        lineage=[
            {"id": instance_id, "name": instance["name"], "parent_id": None, "fork_tick": None, "merge_parent_id": None}
        ],
        base_state=base_state,
        head_state=encode_state(world.state),
        inputs=inputs,
        traces=traces,
        config={"protocol": {"max_posts": 3}, "licence": "CC-BY-4.0"},
        edits=[{"op": "rename", "name": "renamed offline"}],
    )


@pytest.fixture(scope="module")
def bundles() -> list[InstanceBundle]:
    return [make_bundle(name, seed=seed) for seed, name in enumerate(("alpha", "beta", "gamma"), 7)]


@pytest.fixture
def keyring(tmp_path: Path) -> KeyRing:
    return KeyRing(tmp_path / "home")


@pytest.fixture
def package(bundles: list[InstanceBundle], keyring: KeyRing) -> bytes:
    buffer = io.BytesIO()
    write_package(buffer, bundles[:1], keyring.signer())
    return buffer.getvalue()


def entries_of(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def build_zip(contents: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate names some tests want
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in contents.items():
                archive.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


def resign(
    contents: dict[str, bytes], signer: Signer, change: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, bytes]:
    """Recompute every listed entry's hash and size, apply ``change`` to the manifest, and sign it again."""
    manifest = json.loads(contents["manifest.json"])
    for name, entry in manifest["entries"].items():
        if name in contents:
            entry["sha256"] = hashlib.sha256(contents[name]).hexdigest()
            entry["size"] = len(contents[name])
    if change is not None:
        change(manifest)
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    signature = {
        "algorithm": "ed25519",
        "key_id": signer.key_id,
        "public_key": base64.b64encode(signer.public_key).decode(),
        "signature": base64.b64encode(signer.sign(body)).decode(),
    }
    return {**contents, "manifest.json": body, "signature.json": json.dumps(signature).encode()}


def refused(data: bytes, keyring: KeyRing, error: type[PackageError], *words: str, **limits: int) -> None:
    with pytest.raises(error) as caught:
        read_package(data, keyring, limits=Limits(**limits))
    for word in words:
        assert word in str(caught.value)


# -- round trips ------------------------------------------------------------------------------------------------


def test_instance_package_round_trips(bundles: list[InstanceBundle], keyring: KeyRing, tmp_path: Path) -> None:
    target = tmp_path / "alpha.soulpkg"
    manifest = write_package(target, bundles[:1], keyring.signer())
    package = read_package(target, keyring)
    assert package.bundles == bundles[:1]
    assert package.manifest == manifest
    assert package.key_id == keyring.signer().key_id
    assert manifest["kind"] == "instance"
    assert manifest["created_by"].startswith("soulfra ")
    assert package_info(target, keyring) == manifest


def test_same_content_and_key_give_identical_bytes(
    bundles: list[InstanceBundle], keyring: KeyRing, tmp_path: Path
) -> None:
    first, second = tmp_path / "one.soulpkg", tmp_path / "two.soulpkg"
    write_package(first, bundles[:1], keyring.signer())
    write_package(second, bundles[:1], keyring.signer())
    assert first.read_bytes() == second.read_bytes()


def test_package_is_a_plain_zip(package: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        assert archive.testzip() is None
        infos = {info.filename: info for info in archive.infolist()}
    assert list(infos) == sorted(infos)
    assert set(infos) == {
        "config.json",
        "history/inputs.jsonl.zst",
        "history/traces.jsonl.zst",
        "manifest.json",
        "signature.json",
        "state/base.zst",
        "state/head.zst",
    }
    assert {info.date_time for info in infos.values()} == {(1980, 1, 1, 0, 0, 0)}
    assert infos["state/head.zst"].compress_type == zipfile.ZIP_STORED
    assert infos["manifest.json"].compress_type == zipfile.ZIP_DEFLATED


@pytest.mark.skipif(shutil.which("unzip") is None, reason="no unzip tool on this machine")
def test_unzip_reads_the_package(package: bytes, tmp_path: Path) -> None:
    target = tmp_path / "p.soulpkg"
    target.write_bytes(package)
    listing = subprocess.run(["unzip", "-l", str(target)], capture_output=True, text=True, check=True).stdout
    assert "state/head.zst" in listing
    subprocess.run(["unzip", "-tq", str(target)], capture_output=True, check=True)


def test_history_entries_are_json_lines(package: bytes, bundles: list[InstanceBundle]) -> None:
    raw = zstandard.ZstdDecompressor().decompress(entries_of(package)["history/inputs.jsonl.zst"])
    assert [json.loads(line) for line in raw.splitlines()] == bundles[0].inputs
    assert bundles[0].inputs  # the fixture really has inputs to compare


def test_collection_round_trips(bundles: list[InstanceBundle], keyring: KeyRing, tmp_path: Path) -> None:
    target = tmp_path / "all.soulpkg"
    manifest = write_package(target, bundles, keyring.signer())
    assert manifest["kind"] == "collection"
    assert manifest["instances"] == ["alpha", "beta", "gamma"]
    assert sorted(entries_of(target.read_bytes())) == [
        "instances/alpha.soulpkg",
        "instances/beta.soulpkg",
        "instances/gamma.soulpkg",
        "manifest.json",
        "signature.json",
    ]
    assert read_package(target, keyring).bundles == bundles


def test_nesting_is_limited(package: bytes, bundles: list[InstanceBundle], keyring: KeyRing) -> None:
    nested = package
    for _ in range(MAX_DEPTH):
        buffer = io.BytesIO()
        write_collection(buffer, [("alpha", nested)], keyring.signer())
        nested = buffer.getvalue()
    assert read_package(nested, keyring).bundles == bundles[:1]
    buffer = io.BytesIO()
    write_collection(buffer, [("alpha", nested)], keyring.signer())
    refused(buffer.getvalue(), keyring, PackageError, "nested", str(MAX_DEPTH))


def test_progress_reaches_the_total(bundles: list[InstanceBundle], keyring: KeyRing) -> None:
    seen: list[tuple[int, int]] = []
    write_package(io.BytesIO(), bundles[:1], keyring.signer(), progress=lambda done, total: seen.append((done, total)))
    assert seen[0][0] == 0
    assert seen[-1][0] == seen[-1][1] > 0
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_failed_write_leaves_nothing_at_the_target(
    bundles: list[InstanceBundle], keyring: KeyRing, tmp_path: Path
) -> None:
    def explode(done: int, total: int) -> None:
        if done > 0:
            raise RuntimeError("disk full, pretend")

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError, match="pretend"):
        write_package(out / "p.soulpkg", bundles[:1], keyring.signer(), progress=explode)
    assert list(out.iterdir()) == []


def test_unwritable_target_is_an_output_error(bundles: list[InstanceBundle], keyring: KeyRing, tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="missing"):
        write_package(tmp_path / "missing" / "p.soulpkg", bundles[:1], keyring.signer())


# -- refusals ---------------------------------------------------------------------------------------------------


def test_flipped_byte_in_an_entry_is_refused(package: bytes, keyring: KeyRing) -> None:
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        info = archive.getinfo("state/head.zst")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data = bytearray(package)
    data[start + info.compress_size // 2] ^= 0x01
    refused(bytes(data), keyring, PackageError, "state/head.zst")


def test_swapped_entries_are_refused(package: bytes, keyring: KeyRing) -> None:
    contents = entries_of(package)
    contents["state/base.zst"], contents["state/head.zst"] = contents["state/head.zst"], contents["state/base.zst"]
    refused(build_zip(contents), keyring, PackageError, "state/base.zst")


def test_altered_entry_with_a_valid_zip_checksum_is_refused(package: bytes, keyring: KeyRing) -> None:
    # The ZIP is rebuilt, so its CRC-32 fits the altered bytes: only the signed sha256 can catch this.
    contents = entries_of(package)
    blob = bytearray(contents["state/head.zst"])
    blob[len(blob) // 2] ^= 0x01
    contents["state/head.zst"] = bytes(blob)
    refused(build_zip(contents), keyring, PackageError, "state/head.zst", "sha256")


def test_missing_signature_is_refused(package: bytes, keyring: KeyRing) -> None:
    contents = entries_of(package)
    del contents["signature.json"]
    refused(build_zip(contents), keyring, PackageSignatureError, "missing signature")


def test_missing_manifest_is_refused(package: bytes, keyring: KeyRing) -> None:
    contents = entries_of(package)
    del contents["manifest.json"]
    refused(build_zip(contents), keyring, PackageError, "manifest.json")


def test_untrusted_key_is_refused_until_trusted(
    bundles: list[InstanceBundle], keyring: KeyRing, tmp_path: Path
) -> None:
    stranger = Signer.generate()
    buffer = io.BytesIO()
    write_package(buffer, bundles[:1], stranger)
    refused(buffer.getvalue(), keyring, PackageSignatureError, stranger.key_id, "soulfra keys trust FILE")
    key_file = tmp_path / "stranger.pub"
    key_file.write_text(public_key_text(stranger.public_key))
    assert keyring.trust(key_file) == stranger.key_id
    assert read_package(buffer.getvalue(), keyring).key_id == stranger.key_id


def test_altered_signature_is_refused(package: bytes, keyring: KeyRing) -> None:
    contents = entries_of(package)
    signature = json.loads(contents["signature.json"])
    raw = bytearray(base64.b64decode(signature["signature"]))
    raw[10] ^= 0x40
    signature["signature"] = base64.b64encode(bytes(raw)).decode()
    contents["signature.json"] = json.dumps(signature).encode()
    refused(build_zip(contents), keyring, PackageSignatureError, "does not verify", signature["key_id"])


def test_altered_manifest_is_refused(package: bytes, keyring: KeyRing) -> None:
    contents = entries_of(package)
    contents["manifest.json"] = contents["manifest.json"].replace(b'"world alpha"', b'"world omega"')
    refused(build_zip(contents), keyring, PackageSignatureError, "does not verify")


@pytest.mark.parametrize("name", ["../evil", "/abs", "state/../../evil", "C:evil", "state\\evil", "nul@@here"])
def test_entry_outside_the_package_is_refused(package: bytes, keyring: KeyRing, name: str) -> None:
    evil = b"#!/bin/sh\necho owned\n"
    contents = {**entries_of(package), name: evil}

    def list_it(manifest: dict[str, Any]) -> None:
        manifest["entries"][name] = {"sha256": hashlib.sha256(evil).hexdigest(), "size": len(evil), "raw_size": 21}

    data = build_zip(resign(contents, keyring.signer(), list_it))
    data = data.replace(b"nul@@here", b"nul@\0here")  # zipfile cannot write a NUL in a name; patch it in after
    refused(data, keyring, PackageError, "entry path outside the package")


def test_duplicate_entry_is_refused(package: bytes, keyring: KeyRing) -> None:
    contents = entries_of(package)
    pairs = [*contents.items(), ("state/head.zst", contents["state/head.zst"])]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, blob in pairs:
                archive.writestr(name, blob)
    refused(buffer.getvalue(), keyring, PackageError, "entry path outside the package", "twice")


def test_entry_not_in_the_manifest_is_refused(package: bytes, keyring: KeyRing) -> None:
    contents = {**entries_of(package), "extra.txt": b"hello"}
    refused(build_zip(contents), keyring, PackageError, "extra.txt", "not in the manifest")


def test_listed_entry_missing_from_the_zip_is_refused(package: bytes, keyring: KeyRing) -> None:
    contents = entries_of(package)
    del contents["config.json"]
    refused(build_zip(contents), keyring, PackageError, "config.json", "missing")


def test_zstd_bomb_is_refused_within_the_limit(package: bytes, keyring: KeyRing) -> None:
    # 100 MiB of zeros whose frame does not declare its size, so only a bounded decompressor can stop it.
    compressor = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    zeros = bytes(MIB)
    bomb = b"".join(compressor.compress(zeros) for _ in range(100)) + compressor.flush()
    assert len(bomb) < MIB // 10
    contents = entries_of(package)
    contents["state/head.zst"] = bomb
    data = build_zip(resign(contents, keyring.signer()))
    tracemalloc.start()
    try:
        refused(data, keyring, PackageLimitError, "state/head.zst", max_entry_bytes=MIB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MIB


def test_zstd_frame_declaring_too_much_is_refused(package: bytes, keyring: KeyRing) -> None:
    contents = entries_of(package)
    contents["state/head.zst"] = zstandard.ZstdCompressor().compress(bytes(2 * MIB))
    refused(
        build_zip(resign(contents, keyring.signer())), keyring, PackageLimitError, "state/head.zst", max_entry_bytes=MIB
    )


def test_declared_raw_size_over_the_limit_is_refused(package: bytes, keyring: KeyRing) -> None:
    def inflate(manifest: dict[str, Any]) -> None:
        manifest["entries"]["state/base.zst"]["raw_size"] = 5 * MIB

    data = build_zip(resign(entries_of(package), keyring.signer(), inflate))
    refused(data, keyring, PackageLimitError, "state/base.zst", max_entry_bytes=MIB)


def test_declared_file_size_over_the_limit_is_refused(package: bytes, keyring: KeyRing) -> None:
    contents = entries_of(package)
    contents["state/base.zst"] = bytes(2 * MIB)
    refused(
        build_zip(resign(contents, keyring.signer())), keyring, PackageLimitError, "state/base.zst", max_entry_bytes=MIB
    )


def test_total_size_over_the_limit_is_refused(package: bytes, keyring: KeyRing) -> None:
    unpacked = sum(entry["raw_size"] for entry in package_info(package, keyring)["entries"].values())
    assert read_package(package, keyring, limits=Limits(max_total_bytes=unpacked)).bundles
    refused(package, keyring, PackageLimitError, "total", max_total_bytes=unpacked - 1)


def test_too_many_entries_are_refused(package: bytes, keyring: KeyRing) -> None:
    refused(package, keyring, PackageLimitError, "entries", max_entries=3)


def test_state_that_does_not_match_its_hash_is_refused(bundles: list[InstanceBundle], keyring: KeyRing) -> None:
    instance = {**bundles[0].instance, "head_hash": bundles[0].instance["base_hash"]}
    buffer = io.BytesIO()
    write_package(buffer, [replace(bundles[0], instance=instance)], keyring.signer())
    refused(buffer.getvalue(), keyring, PackageError, "state/head.zst", "head state")


def test_state_bytes_other_than_the_signed_ones_are_refused(bundles: list[InstanceBundle], keyring: KeyRing) -> None:
    buffer = io.BytesIO()
    write_package(buffer, [replace(bundles[0], base_state=b"not a world")], keyring.signer())
    with pytest.raises(PackageError, match=r"state/base\.zst is not the base state the manifest names"):
        read_package(buffer.getvalue(), keyring)


def test_a_compact_package_leaves_both_states_out_and_rebuilds_them(
    bundles: list[InstanceBundle], keyring: KeyRing
) -> None:
    bundle = bundles[0]
    assert bundle.instance["base_tick"] == 0
    full, compact = io.BytesIO(), io.BytesIO()
    write_package(full, [bundle], keyring.signer())
    manifest = write_package(compact, [bundle], keyring.signer(), compact=True)
    assert manifest["compact"]["genesis"]["seed"] == bundle.instance["seed"]
    with zipfile.ZipFile(compact) as archive:
        assert not {"state/base.zst", "state/head.zst"} & set(archive.namelist())
    assert len(compact.getvalue()) < len(full.getvalue())
    read = read_package(compact.getvalue(), keyring).bundles[0]
    assert (read.base_state, read.head_state) == (bundle.base_state, bundle.head_state)


def test_a_compact_package_whose_history_does_not_replay_is_refused(
    bundles: list[InstanceBundle], keyring: KeyRing
) -> None:
    bundle = bundles[0]
    assert bundle.inputs
    buffer = io.BytesIO()
    write_package(buffer, [replace(bundle, inputs=bundle.inputs[:-1])], keyring.signer(), compact=True)
    refused(buffer.getvalue(), keyring, PackageError, "the history (replayed)", "head state")


@pytest.mark.parametrize("data", [b"", b"hello, not a zip", b"PK\x03\x04" + bytes(40)])
def test_non_zip_is_refused(data: bytes, keyring: KeyRing) -> None:
    refused(data, keyring, PackageError, "not a readable ZIP")


def test_truncated_zip_is_refused(package: bytes, keyring: KeyRing) -> None:
    for cut in (len(package) // 3, len(package) - 10):
        refused(package[:cut], keyring, PackageError)


def test_corrupt_bytes_are_refused_or_harmless(package: bytes, bundles: list[InstanceBundle], keyring: KeyRing) -> None:
    # A flip in a header's timestamp or attributes changes nothing read; any other flip must be a PackageError.
    refusals = 0
    for position in range(0, len(package), max(1, len(package) // 400)):
        data = bytearray(package)
        data[position] ^= 0xFF
        try:
            assert read_package(bytes(data), keyring).bundles == bundles[:1]
        except PackageError:
            refusals += 1
    assert refusals > 300


def test_missing_file_is_a_package_error(keyring: KeyRing, tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="nothing-here"):
        read_package(tmp_path / "nothing-here.soulpkg", keyring)


def test_bundle_with_an_unsafe_id_is_not_written(bundles: list[InstanceBundle], keyring: KeyRing) -> None:
    bad = replace(bundles[0], instance={**bundles[0].instance, "id": "../up"})
    with pytest.raises(PackageError, match="instance id"):
        write_package(io.BytesIO(), [bad, bundles[1]], keyring.signer())


def test_an_unsigned_manifest_is_read_only_up_to_a_small_cap(keyring: KeyRing) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", b" " * (17 << 20))  # 17 MiB of spaces: a few KiB deflated
        archive.writestr("signature.json", b"{}")
    with pytest.raises(PackageLimitError, match=r"manifest\.json holds more than"):
        read_package(buffer.getvalue(), keyring)


@pytest.mark.parametrize(("field", "value"), [("id", "w" * 65), ("name", "n" * 201)])
def test_an_instance_id_or_name_longer_than_storage_keeps_is_refused(
    bundles: list[InstanceBundle], keyring: KeyRing, field: str, value: str
) -> None:
    manifest_only = replace(bundles[0], instance={**bundles[0].instance, field: value})
    with pytest.raises(PackageError, match="64 characters" if field == "id" else "over the limit of 200"):
        write_package(io.BytesIO(), [manifest_only], keyring.signer())
