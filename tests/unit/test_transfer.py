"""Between stores: an instance (or a fork, its parent's state materialised) exported as a bundle, signed into a
package, read back and imported into a second database, where it replays to the same hashes and goes on alike;
offline edits of a bundle and the god commands that send them back down; tampered histories and taken ids refused."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from soulfra.durable import DurabilitySettings, DurableWorld, state_at
from soulfra.errors import ConflictError, PackageError, UnknownAgentError
from soulfra.meta.commands import PuppetMasterIntervention, parse_command
from soulfra.meta.keys import KeyRing, Signer
from soulfra.meta.lineage import fork_record
from soulfra.meta.package import InstanceBundle, read_package, write_package
from soulfra.meta.transfer import (
    apply_edits,
    bundle_for,
    edit_bundle,
    import_bundle,
    import_bundles,
    replay_bundle,
)
from soulfra.store import InMemoryStore, Store
from soulfra.verification import verify
from soulfra.world import (
    DEFAULT_WORLD,
    ChangePersonality,
    Input,
    Whisper,
    World,
    decode_state,
    parse_input,
    schedule,
    state_hash,
)
from soulfra.world.model import WARMTH

SEED = 11
AGENTS = 2
SETTINGS = DurabilitySettings(snapshot_every=10)
HEAD = 25  # the root instance's head tick
FORK_TICK = 12
FORK_TICKS = 14  # ticks the fork runs past its fork tick
EDITS: list[dict[str, Any]] = [
    {"op": "personality", "agent": "arty", "traits": {"warmth": "0.9"}},
    {"op": "vibe", "condition": "echo-storm", "intensity": "0.7", "duration": 10},
    {"op": "ritual", "name": "tide rite", "participants": ["arty", "cal-riven"], "blessed": True},
]


@pytest.fixture
def source() -> Iterator[Store]:
    """'w': HEAD ticks with two whispers; 'w-fork': a fork of w at FORK_TICK with a personality change."""
    store = InMemoryStore()
    try:
        world = DurableWorld.create(store, SEED, DEFAULT_WORLD, agents=AGENTS, instance_id="w", settings=SETTINGS)
        world.submit([
            Whisper(tick=4, target="arty", text="the tide turns", tone="playful"),
            Whisper(tick=17, target="*", text="hold the line", tone="urgent"),
        ])  # fmt: skip
        for _ in range(HEAD):
            world.step()
        world.close()
        change = ChangePersonality(tick=FORK_TICK, agent="arty", traits=(("warmth", 900_000),))
        fork_record(store, store.instances.get("w"), tick=FORK_TICK, child_id="w-fork", kind="fork", inputs=[change])
        fork = DurableWorld.open(store, "w-fork", settings=SETTINGS)
        for _ in range(FORK_TICKS):
            fork.step()
        fork.close()
        yield store
    finally:
        store.close()


@pytest.fixture
def target() -> Iterator[Store]:
    store = InMemoryStore()
    try:
        yield store
    finally:
        store.close()


def head_hash(store: Store, instance_id: str) -> str:
    return state_hash(state_at(store, instance_id, store.instances.get(instance_id).head_tick))


def continued(store: Store, instance_id: str, ticks: int) -> str:
    """Open the stored instance, step it ``ticks`` times and close it; the state hash it reached."""
    world = DurableWorld.open(store, instance_id, settings=SETTINGS)
    for _ in range(ticks):
        world.step()
    world.close()
    return world.world.state_hash()


def through_package(bundle: InstanceBundle, tmp_path: Path) -> InstanceBundle:
    """Sign the bundle into a package file and read it back as a reader who trusts only that signer."""
    signer = Signer.generate()
    path = tmp_path / f"{bundle.instance['id']}.soulpkg"
    write_package(path, [bundle], signer)
    package = read_package(path, KeyRing(tmp_path / "reader", extra_trusted=[signer.public_key]))
    assert package.key_id == signer.key_id
    assert len(package.bundles) == 1
    return package.bundles[0]


def replayed(bundle: InstanceBundle, inputs: list[Input]) -> str:
    """An independent replay: the bundle's base state through ``inputs`` to its head tick."""
    world = World(decode_state(bundle.base_state))
    by_tick = schedule(inputs)
    while world.tick < int(bundle.instance["head_tick"]):
        world.step(by_tick.get(world.tick, ()))
    return world.state_hash()


def inputs_of(bundle: InstanceBundle) -> list[Input]:
    return [parse_input({k: v for k, v in obj.items() if k != "seq"}) for obj in bundle.inputs]


# -- export and import -------------------------------------------------------------------------------------------


def test_an_exported_instance_imports_elsewhere_and_both_continue_alike(
    source: Store, target: Store, tmp_path: Path
) -> None:
    bundle = bundle_for(source, "w")
    assert bundle.instance["base_tick"] == 0
    assert bundle.instance["head_tick"] == HEAD
    assert bundle.instance["head_hash"] == head_hash(source, "w")
    assert len(bundle.inputs) == 2

    received = through_package(bundle, tmp_path)
    assert received == bundle
    result = import_bundle(target, received, verify_replay=True)
    assert result["replayed"] is True
    assert result["state_hash"] == head_hash(source, "w")

    record = target.instances.get("w")
    assert (record.head_tick, record.seed, record.parent_id) == (HEAD, SEED, None)
    assert head_hash(target, "w") == head_hash(source, "w")
    assert [s.input for s in target.inputs.read("w")] == [s.input for s in source.inputs.read("w")]
    assert verify(target, "w").ok

    assert continued(source, "w", 15) == continued(target, "w", 15)
    assert head_hash(source, "w") == head_hash(target, "w")


def test_an_exported_fork_carries_its_parent_state_and_replays_alone(
    source: Store, target: Store, tmp_path: Path
) -> None:
    bundle = bundle_for(source, "w-fork")
    assert bundle.instance["base_tick"] == FORK_TICK
    assert bundle.instance["base_hash"] == state_hash(state_at(source, "w", FORK_TICK))  # the parent's state there
    assert bundle.instance["parent_id"] == "w"
    assert [(p["id"], p["tick"]) for p in bundle.lineage] == [("w", FORK_TICK)]
    assert replay_bundle(bundle) == bundle.instance["head_hash"] == head_hash(source, "w-fork")

    result = import_bundle(target, through_package(bundle, tmp_path), verify_replay=True)
    assert result["head_tick"] == FORK_TICK + FORK_TICKS
    record = target.instances.get("w-fork")
    assert record.parent_id is None  # the parent is not in this database: its state came along instead
    assert record.fork_tick == FORK_TICK
    assert record.world["imported"]["lineage"] == bundle.lineage
    assert head_hash(target, "w-fork") == head_hash(source, "w-fork")
    for tick in (FORK_TICK, FORK_TICK + 1, 20, FORK_TICK + FORK_TICKS):
        assert state_hash(state_at(target, "w-fork", tick)) == state_hash(state_at(source, "w-fork", tick))
    assert verify(target, "w-fork").ok

    assert continued(source, "w-fork", 9) == continued(target, "w-fork", 9)


def test_tampered_inputs_are_refused_by_a_verified_import_and_nothing_is_written(source: Store, target: Store) -> None:
    bundle = bundle_for(source, "w")
    forged = [dict(obj) for obj in bundle.inputs]
    forged[0]["tone"] = "dark"  # another history under the same claimed head hash
    tampered = replace(bundle, inputs=forged)
    with pytest.raises(PackageError, match="replays to"):
        import_bundle(target, tampered, verify_replay=True)
    assert target.instances.list_instances() == []
    assert target.inputs.read("w") == []
    assert target.snapshots.list_snapshots("w") == []
    assert target.rituals.read("w") == []

    import_bundle(target, bundle, verify_replay=True)  # the untouched bundle still goes in
    assert [r.id for r in target.instances.list_instances()] == ["w"]


def test_importing_an_existing_id_is_a_conflict_and_another_id_imports_beside_it(source: Store, target: Store) -> None:
    bundle = bundle_for(source, "w")
    import_bundle(target, bundle)
    with pytest.raises(ConflictError, match="already exists"):
        import_bundle(target, bundle, verify_replay=True)
    assert [r.id for r in target.instances.list_instances()] == ["w"]
    assert len(target.inputs.read("w")) == 2  # the refused import appended nothing

    result = import_bundle(target, bundle, as_id="w-copy", verify_replay=True)
    assert result["id"] == "w-copy"
    assert head_hash(target, "w-copy") == head_hash(target, "w")


# -- offline edits -----------------------------------------------------------------------------------------------


def test_edits_become_inputs_at_the_head_and_apply_edits_returns_matching_commands(source: Store) -> None:
    bundle = bundle_for(source, "w")
    edited = edit_bundle(bundle, EDITS)

    assert [e["op"] for e in edited.edits] == ["personality", "vibe", "ritual"]
    assert bundle.edits == []  # the original bundle is left as it was
    added = inputs_of(edited)[len(bundle.inputs) :]
    assert [item.tick for item in added] == [HEAD] * 3  # they act from the next tick
    assert [parse_input({**e["input"], "tick": HEAD}) for e in edited.edits] == added
    seqs = [int(obj["seq"]) for obj in edited.inputs]
    assert len(set(seqs)) == len(seqs)
    # no edit of the head's own state: the head hash stands and the history still replays to it
    assert edited.instance["head_hash"] == bundle.instance["head_hash"]
    assert replay_bundle(edited) == edited.instance["head_hash"]

    commands = [parse_command(obj) for obj in apply_edits(edited)]
    assert [c.type for c in commands] == ["PUPPET_MASTER_INTERVENTION"] * 3
    for command, edit, item in zip(commands, edited.edits, added, strict=True):
        assert isinstance(command, PuppetMasterIntervention)
        assert command.instance == "w"
        assert command.kind == edit["op"]
        assert parse_input({**command.as_input(), "tick": HEAD}) == item


def test_a_rewrite_edit_replays_the_edited_history_to_a_new_head(source: Store, target: Store) -> None:
    bundle = bundle_for(source, "w")
    late = next(obj for obj in bundle.inputs if obj["tick"] == 17)
    added = {"type": "whisper", "target": "agent-zero", "text": "a new memory", "tone": "solemn", "tick": 9}
    rewrite = {"op": "rewrite", "from_tick": 8, "drop": [late["seq"]], "add": [added]}
    edited = edit_bundle(bundle, [rewrite])

    kept = [item for obj, item in zip(bundle.inputs, inputs_of(bundle), strict=True) if obj["seq"] != late["seq"]]
    expected = replayed(bundle, [*kept, parse_input(added)])
    assert edited.instance["head_hash"] == expected != bundle.instance["head_hash"]
    assert state_hash(decode_state(edited.head_state)) == expected
    assert edited.edits == [rewrite]
    assert sorted((obj["tick"], obj["text"]) for obj in edited.inputs) == [(4, "the tide turns"), (9, "a new memory")]

    (command,) = [parse_command(obj) for obj in apply_edits(edited)]
    assert isinstance(command, PuppetMasterIntervention)
    assert (command.kind, command.from_tick, command.drop, command.add) == ("rewrite", 8, [late["seq"]], [added])

    import_bundle(target, edited, verify_replay=True)
    assert head_hash(target, "w") == expected
    assert verify(target, "w").ok


def test_an_imported_edited_bundle_applies_its_edits_from_the_next_tick(source: Store, target: Store) -> None:
    edited = edit_bundle(bundle_for(source, "w"), EDITS[:2])
    import_bundle(target, edited, verify_replay=True)
    arty = decode_state(edited.head_state).index["arty"]
    assert int(state_at(target, "w", HEAD).traits[arty, WARMTH]) != 900_000

    continued(target, "w", 1)
    after = state_at(target, "w", HEAD + 1)
    assert int(after.traits[arty, WARMTH]) == 900_000
    assert after.vibe_override is not None
    assert (after.vibe_override.condition, after.vibe_override.intensity) == ("echo-storm", 700_000)
    assert after.vibe_override.until == HEAD + 10


def test_an_input_added_before_kept_later_ones_imports_in_seq_order(source: Store, target: Store) -> None:
    bundle = bundle_for(source, "w")
    added = {"type": "whisper", "target": "arty", "text": "begin again", "tone": "gentle"}
    edited = edit_bundle(bundle, [{"op": "rewrite", "from_tick": 8, "add": [added]}])

    seqs = [obj["seq"] for obj in edited.inputs]
    assert seqs == sorted(seqs) and [obj["tick"] for obj in edited.inputs] == [4, 17, 8]  # the kept tick-17 one too
    expected = replayed(bundle, [*inputs_of(bundle), parse_input({"tick": 8, **added})])
    assert edited.instance["head_hash"] == expected
    import_bundle(target, edited, verify_replay=True)
    assert head_hash(target, "w") == expected


@pytest.mark.parametrize(
    ("edit", "error", "words"),
    [
        ({"op": "erase"}, PackageError, "unknown op"),
        ({"op": "personality", "agent": "nobody", "traits": {"warmth": "0.5"}}, UnknownAgentError, "nobody"),
        ({"op": "rewrite", "from_tick": HEAD + 1}, PackageError, "from_tick"),
        ({"op": "rewrite", "from_tick": 10, "drop": [999]}, PackageError, "999"),
        ({"op": "rewrite", "from_tick": 10, "add": [{"type": "whisper", "target": "*", "text": "x", "tick": 3}]},
         PackageError, "before the rewrite"),
        ({"op": "rewrite", "from_tick": 10, "add": ["hello"]}, PackageError, "JSON object"),
        ({"op": "rewrite", "from_tick": 10, "add": [{"type": "whisper", "target": "nobody", "text": "x"}]},
         PackageError, "nobody"),
    ],
)  # fmt: skip
def test_bad_edits_are_refused(source: Store, edit: dict[str, Any], error: type[Exception], words: str) -> None:
    bundle = bundle_for(source, "w")
    with pytest.raises(error, match=words):
        edit_bundle(bundle, [edit])


def test_exporting_the_same_instance_twice_gives_the_same_package_bytes(source: Store) -> None:
    signer = Signer.generate()
    first, second = io.BytesIO(), io.BytesIO()
    write_package(first, [bundle_for(source, "w-fork")], signer)
    write_package(second, [bundle_for(source, "w-fork")], signer)
    assert first.getvalue() == second.getvalue()


def test_an_import_of_several_writes_none_when_one_is_refused(source: Store, target: Store) -> None:
    bundles = [bundle_for(source, "w"), bundle_for(source, "w-fork")]
    import_bundle(target, bundles[1])  # w-fork is there already
    before = [r.id for r in target.instances.list_instances()]
    with pytest.raises(ConflictError, match="w-fork"):
        import_bundles(target, bundles)
    assert [r.id for r in target.instances.list_instances()] == before
    assert import_bundles(target, bundles[:1])[0]["id"] == "w"


def test_a_large_world_imports_the_package_frames_as_they_came_and_an_edited_head_anew(tmp_path: Path) -> None:
    """States past the dictionary size are stored as the package's zstd frames, not compressed again; a head that an
    edit changed has no frame in the package and is compressed as a new snapshot."""
    source, target, again = InMemoryStore(), InMemoryStore(), InMemoryStore()
    world = DurableWorld.create(source, SEED, DEFAULT_WORLD, agents=997, instance_id="big", settings=SETTINGS)
    world.submit([Whisper(tick=1, target="arty", text="the tide turns", tone="playful")])
    for _ in range(3):
        world.step()
    world.close()
    read = through_package(bundle_for(source, "big"), tmp_path)
    meta = read.instance
    assert set(read.frames) == {meta["base_hash"], meta["head_hash"]}

    import_bundle(target, read)
    base, head = target.snapshots.list_snapshots("big")
    assert [(info.tick, info.state_hash, info.base_id) for info in (base, head)] == [
        (0, meta["base_hash"], None), (3, meta["head_hash"], None),
    ]  # fmt: skip
    assert (base.stored_size, head.stored_size) == (
        len(read.frames[base.state_hash]),
        len(read.frames[head.state_hash]),
    )
    assert head_hash(target, "big") == meta["head_hash"]
    assert verify(target, "big").ok

    rewritten = edit_bundle(read, [{"op": "rewrite", "from_tick": 1, "drop": [read.inputs[0]["seq"]]}])
    assert rewritten.instance["head_hash"] != meta["head_hash"]
    import_bundle(again, rewritten, verify_replay=True)
    *_, new_head = again.snapshots.list_snapshots("big")
    assert new_head.state_hash == rewritten.instance["head_hash"] == head_hash(again, "big")
    assert new_head.stored_size != len(read.frames[meta["head_hash"]])
    assert verify(again, "big").ok
