"""The typed manifest: a checked manifest.json becomes a Manifest with typed entries, members and recipe."""

from __future__ import annotations

from typing import Any

import pytest

from soulfra.errors import PackageError, PackageLimitError
from soulfra.meta.package import Limits
from soulfra.meta.package.manifest import Entry, Manifest

DIGEST = "ab" * 32
INSTANCE = {
    "id": "alpha", "name": "world alpha", "seed": 7, "genesis_hash": "g", "world": {"name": "default"},
    "base_tick": 0, "base_hash": "b", "head_tick": 6, "head_hash": "h",
    "parent_id": None, "fork_tick": None, "merge_parent_id": None,
}  # fmt: skip


def document(kind: str, entries: dict[str, int], **head: Any) -> dict[str, Any]:
    listed = {name: {"sha256": DIGEST, "size": size, "raw_size": size} for name, size in entries.items()}
    return {"format": "soulpkg", "format_version": 1, "kind": kind, **head, "entries": listed}


def sizes(entries: dict[str, int]) -> dict[str, int]:
    return {**entries, "manifest.json": 100, "signature.json": 50}


def test_a_collection_manifest_is_typed() -> None:
    entries = {"instances/alpha.soulpkg": 10, "instances/beta.soulpkg": 20}
    raw = document("collection", entries, instances=["alpha", "beta"])
    manifest = Manifest.parse(raw, sizes(entries), Limits())
    assert manifest.kind == "collection"
    assert manifest.members == ("alpha", "beta")
    assert manifest.instance is None
    assert manifest.entries["instances/beta.soulpkg"] == Entry(sha256=DIGEST, size=20, raw_size=20)
    assert manifest.document is raw


def test_a_compact_instance_manifest_is_typed() -> None:
    entries = {"config.json": 2, "history/inputs.jsonl.zst": 3, "history/traces.jsonl.zst": 4}
    recipe = {"seed": 7}
    lineage = [{"id": "alpha"}]
    raw = document("instance", entries, instance=INSTANCE, lineage=lineage, edits=[], compact={"genesis": recipe})
    manifest = Manifest.parse(raw, sizes(entries), Limits())
    assert (manifest.kind, manifest.compact, manifest.genesis, manifest.members) == ("instance", True, recipe, ())
    assert manifest.instance is INSTANCE
    assert manifest.lineage is lineage
    assert sorted(manifest.entries) == sorted(entries)


def test_a_manifest_is_checked_against_the_zip_and_the_limits() -> None:
    entries = {"instances/alpha.soulpkg": 10}
    raw = document("collection", entries, instances=["alpha"])
    with pytest.raises(PackageError, match="holds 11 bytes, not the size in the manifest"):
        Manifest.parse(raw, sizes({"instances/alpha.soulpkg": 11}), Limits())
    with pytest.raises(PackageLimitError, match="over the per-entry limit"):
        Manifest.parse(raw, sizes(entries), Limits(max_entry_bytes=5))
