"""The ``SnapshotStorage`` contract on every backend: exact round trips, idempotent saves, conflicts, lookups, and
compression every adapter shares (keyframes and deltas for large states, a trained dictionary for small ones) reading
back exactly, also in a fresh process. A tampered blob is an error, never a wrong state.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import zstandard

from soulfra.codec import CompressionEngine
from soulfra.errors import CodecError, ConflictError, HistoryIntegrityError, NotFoundError
from soulfra.store import InstanceRecord, SnapshotInfo, StateFrame, Store
from soulfra.store.snapshot_policy import DICTIONARY_MAX_RAW, DICTIONARY_SAMPLES
from soulfra.world import FORMAT_VERSION, World, WorldState, decode_state, encode_state, state_hash

from .conftest import Backend


def make_record(instance_id: str, world: World) -> InstanceRecord:
    return InstanceRecord(id=instance_id, name="default", seed=1, genesis_hash=world.state_hash())


def detached(state: WorldState) -> WorldState:
    """A detached copy: ``World.step`` owns (and may change) its state between steps."""
    return decode_state(encode_state(state))


def states(seed: int, count: int, *, agents: int = 0, every: int = 1) -> list[WorldState]:
    """``count`` states of one world, ``every`` ticks apart, starting at genesis."""
    world = World.create(seed, agents=agents)
    out = []
    for _ in range(count):
        out.append(detached(world.state))
        for _ in range(every):
            world.step()
    return out


def assert_loads_exactly(store: Store, info: SnapshotInfo, expected: WorldState) -> None:
    loaded, state = store.snapshots.load(info.id)
    assert loaded == info
    assert state_hash(state) == info.state_hash == state_hash(expected)
    assert encode_state(state) == encode_state(expected)


def test_save_and_load_round_trip(store: Store, reopen: Callable[[], Store]) -> None:
    world = World.create(5)
    store.instances.create(make_record("w", world))
    for _ in range(7):
        world.step()
    info = store.snapshots.save("w", world.state, "periodic")
    raw = encode_state(world.state)
    assert (info.instance_id, info.type, info.tick, info.state_hash) == ("w", "periodic", 7, world.state_hash())
    assert (info.format_version, info.raw_size, info.base_id) == (FORMAT_VERSION, len(raw), None)
    assert info.stored_size > 0
    assert info.timestamp.utcoffset() is not None
    assert_loads_exactly(store, info, world.state)
    assert_loads_exactly(reopen(), info, world.state)


def test_saving_the_same_state_at_a_stored_tick_returns_the_stored_snapshot(store: Store) -> None:
    world = World.create(5)
    store.instances.create(make_record("w", world))
    first = store.snapshots.save("w", world.state, "genesis")
    again = store.snapshots.save("w", detached(world.state), "manual")
    assert again == first
    assert [s.id for s in store.snapshots.list_snapshots("w")] == [first.id]


def test_another_state_at_a_stored_tick_is_a_conflict(store: Store) -> None:
    world = World.create(5)
    store.instances.create(make_record("w", world))
    first = store.snapshots.save("w", world.state, "genesis")
    other = World.create(6).state
    assert other.tick == first.tick
    with pytest.raises(ConflictError, match="tick 0"):
        store.snapshots.save("w", other, "genesis")
    assert store.snapshots.list_snapshots("w") == [first]
    assert_loads_exactly(store, first, world.state)


def test_snapshots_of_two_instances_are_independent(store: Store) -> None:
    a, b = World.create(5), World.create(6)
    store.instances.create(make_record("a", a))
    store.instances.create(make_record("b", b))
    info_a = store.snapshots.save("a", a.state, "genesis")
    info_b = store.snapshots.save("b", b.state, "genesis")  # the same tick, another instance: no conflict
    assert [s.id for s in store.snapshots.list_snapshots("a")] == [info_a.id]
    assert [s.id for s in store.snapshots.list_snapshots("b")] == [info_b.id]
    with pytest.raises(NotFoundError):
        store.snapshots.by_hash("a", info_b.state_hash)
    assert_loads_exactly(store, info_b, b.state)


def test_list_snapshots_is_by_tick_whatever_the_save_order(store: Store) -> None:
    history = states(5, 6, every=2)
    store.instances.create(InstanceRecord(id="w", name="default", seed=5, genesis_hash=state_hash(history[0])))
    for i in (3, 0, 5, 1, 4, 2):
        store.snapshots.save("w", history[i], "periodic")
    listed = store.snapshots.list_snapshots("w")
    assert [s.tick for s in listed] == [0, 2, 4, 6, 8, 10]
    for info, state in zip(listed, history, strict=True):
        assert_loads_exactly(store, info, state)
    assert store.snapshots.list_snapshots("nobody") == []


def test_nearest_is_the_latest_snapshot_at_or_before_a_tick(store: Store) -> None:
    history = states(5, 11)
    store.instances.create(InstanceRecord(id="w", name="default", seed=5, genesis_hash=state_hash(history[0])))
    saved = {tick: store.snapshots.save("w", history[tick], "periodic") for tick in (2, 5, 10)}

    def nearest(tick: int) -> int | None:
        info = store.snapshots.nearest("w", tick)
        return None if info is None else info.tick

    assert [nearest(t) for t in (0, 1, 2, 4, 5, 9, 10, 1000)] == [None, None, 2, 2, 5, 5, 10, 10]
    assert store.snapshots.nearest("w", 7) == saved[5]
    assert store.snapshots.nearest("nobody", 7) is None


def test_by_hash_finds_a_snapshot_or_raises_not_found(store: Store) -> None:
    history = states(5, 4)
    store.instances.create(InstanceRecord(id="w", name="default", seed=5, genesis_hash=state_hash(history[0])))
    infos = [store.snapshots.save("w", state, "periodic") for state in history]
    for info, state in zip(infos, history, strict=True):
        assert store.snapshots.by_hash("w", state_hash(state)) == info
    with pytest.raises(NotFoundError, match="b2:00"):
        store.snapshots.by_hash("w", "b2:" + "00" * 32)


def test_loading_a_missing_snapshot_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match="12345"):
        store.snapshots.load(12345)


def test_large_states_are_stored_as_keyframes_and_deltas_that_load_back_exactly(
    store: Store, reopen: Callable[[], Store]
) -> None:
    history = states(1, 23, agents=997)
    assert len(encode_state(history[0])) > DICTIONARY_MAX_RAW
    store.instances.create(InstanceRecord(id="w", name="default", seed=1, genesis_hash=state_hash(history[0])))
    infos = [store.snapshots.save("w", state, "periodic") for state in history]

    keyframes = {info.id: info for info in infos if info.base_id is None}
    deltas = [info for info in infos if info.base_id is not None]
    assert infos[0].base_id is None
    assert deltas
    assert len(keyframes) >= 2  # delta chains are bounded: later snapshots get new keyframes
    for delta in deltas:
        assert delta.base_id is not None
        base = keyframes[delta.base_id]  # a delta is made against a keyframe, never against another delta
        assert base.tick < delta.tick
        assert delta.stored_size < base.stored_size
    assert store.snapshots.list_snapshots("w") == infos
    for reader in (store, reopen()):
        for info, state in zip(infos, history, strict=True):
            assert_loads_exactly(reader, info, state)
    fresh = reopen()  # a delta read first, with nothing cached
    assert_loads_exactly(fresh, deltas[-1], history[infos.index(deltas[-1])])


def test_small_states_get_a_trained_dictionary_that_loads_back_in_a_fresh_process(
    store: Store, reopen: Callable[[], Store], backend: Backend
) -> None:
    history = states(1, DICTIONARY_SAMPLES + 8, every=3)
    assert all(len(encode_state(state)) <= DICTIONARY_MAX_RAW for state in history)
    store.instances.create(InstanceRecord(id="w", name="default", seed=1, genesis_hash=state_hash(history[0])))
    infos = [store.snapshots.save("w", state, "periodic") for state in history]

    assert len({info.tick for info in infos}) == len(infos)
    assert all(info.dictionary_id is None for info in infos[:DICTIONARY_SAMPLES])
    assert all(info.base_id is None for info in infos)
    # a 3-agent world's snapshots share most of their bytes: the dictionary pays, and is used from then on
    trained = {info.dictionary_id for info in infos[DICTIONARY_SAMPLES:]}
    assert len(trained) == 1
    assert None not in trained
    assert backend.dictionary_ids() == list(trained)
    for reader in (store, reopen()):
        for info, state in zip(infos, history, strict=True):
            assert_loads_exactly(reader, info, state)
    fresh = reopen()  # the newest snapshot first: the dictionary comes from the database
    assert_loads_exactly(fresh, infos[-1], history[-1])


def test_a_dictionary_trained_in_a_rolled_back_transaction_is_not_used(
    store: Store, reopen: Callable[[], Store]
) -> None:
    history = states(1, DICTIONARY_SAMPLES + 4, every=3)
    store.instances.create(InstanceRecord(id="w", name="default", seed=1, genesis_hash=state_hash(history[0])))
    for state in history[:DICTIONARY_SAMPLES]:
        store.snapshots.save("w", state, "periodic")

    def train_then_roll_back() -> None:
        with store.transaction():
            assert store.snapshots.save("w", history[DICTIONARY_SAMPLES], "periodic").dictionary_id is not None
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError, match="roll back"):
        train_then_roll_back()
    later = [store.snapshots.save("w", state, "periodic") for state in history[DICTIONARY_SAMPLES:]]
    fresh = reopen()
    for info, state in zip(later, history[DICTIONARY_SAMPLES:], strict=True):
        assert_loads_exactly(fresh, info, state)


def _other_bytes_of_the_same_size(raw: bytes) -> bytes:
    """A valid zstd frame of the state's bytes with one byte changed: only the state hash can tell."""
    changed = bytearray(raw)
    changed[len(changed) // 2] ^= 0xFF
    return zstandard.ZstdCompressor(write_checksum=True, write_content_size=True).compress(bytes(changed))


TAMPERINGS: dict[str, Callable[[bytes, bytes], bytes]] = {
    "garbage": lambda blob, raw: b"\x00not a blob at all\xff" * 8,
    "empty": lambda blob, raw: b"",
    "truncated": lambda blob, raw: blob[: len(blob) // 2],
    "bit-flip": lambda blob, raw: blob[:-5] + bytes([blob[-5] ^ 0x01]) + blob[-4:],
    "another-state": lambda blob, raw: _other_bytes_of_the_same_size(raw),
}


@pytest.mark.parametrize("how", sorted(TAMPERINGS))
def test_a_tampered_blob_is_an_error_never_a_wrong_state(
    store: Store, reopen: Callable[[], Store], backend: Backend, how: str
) -> None:
    history = states(2, 2)
    store.instances.create(InstanceRecord(id="w", name="default", seed=2, genesis_hash=state_hash(history[0])))
    victim, _ = (store.snapshots.save("w", state, "periodic") for state in history)
    backend.tamper(victim.id, TAMPERINGS[how](backend.blob(victim.id), encode_state(history[0])))
    for reader in (store, reopen()):
        with pytest.raises((HistoryIntegrityError, CodecError)):
            reader.snapshots.load(victim.id)


def test_a_tampered_keyframe_breaks_its_deltas_loudly(
    store: Store, reopen: Callable[[], Store], backend: Backend
) -> None:
    history = states(1, 4, agents=997)
    store.instances.create(InstanceRecord(id="w", name="default", seed=1, genesis_hash=state_hash(history[0])))
    keyframe, *deltas = (store.snapshots.save("w", state, "periodic") for state in history)
    assert all(delta.base_id == keyframe.id for delta in deltas)
    backend.tamper(keyframe.id, _other_bytes_of_the_same_size(encode_state(history[0])))
    fresh = reopen()
    for info in (deltas[-1], keyframe, deltas[0]):
        with pytest.raises(HistoryIntegrityError):
            fresh.snapshots.load(info.id)


def test_a_deleted_and_recreated_instance_gets_its_dictionary_judged_anew(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A verdict that a trained dictionary did not pay belongs to one world: the same id, deleted and made again,
    is another world, and its snapshots are given their own chance at a dictionary."""
    compression = CompressionEngine()
    store = backend.open(compression=compression)
    history = states(1, DICTIONARY_SAMPLES + 4, every=3)
    record = InstanceRecord(id="w", name="default", seed=1, genesis_hash=state_hash(history[0]))
    store.instances.create(record)
    with monkeypatch.context() as patched:  # the first world's dictionary does not pay
        patched.setattr(compression, "dictionary_pays", lambda samples, trained: False)
        first = [store.snapshots.save("w", state, "periodic") for state in history]
    assert {info.dictionary_id for info in first} == {None}

    store.instances.delete("w")
    store.instances.create(record)
    again = [store.snapshots.save("w", state, "periodic") for state in history]
    trained = {info.dictionary_id for info in again[DICTIONARY_SAMPLES:]}
    assert len(trained) == 1
    assert None not in trained


def test_a_large_state_given_as_a_frame_is_stored_as_that_frame_a_keyframe(
    store: Store, reopen: Callable[[], Store], backend: Backend
) -> None:
    genesis_state, later = states(1, 2, agents=997, every=3)
    store.instances.create(InstanceRecord(id="w", name="default", seed=1, genesis_hash=state_hash(genesis_state)))
    store.snapshots.save("w", genesis_state, "periodic")
    raw = encode_state(later)
    frame = StateFrame(state_hash=state_hash(later), data=CompressionEngine().compress(raw).data)

    # without the frame this state would be a delta of the genesis keyframe
    info = store.snapshots.save_raw("w", raw, tick=later.tick, type="import", frame=frame)
    assert (info.base_id, info.codec, info.dictionary_id) == (None, "zstd", None)
    assert (info.stored_size, info.raw_size, info.state_hash) == (len(frame.data), len(raw), state_hash(later))
    assert backend.blob(info.id) == frame.data
    for reader in (store, reopen()):
        assert_loads_exactly(reader, info, later)
    after = World(detached(later))
    after.step()
    delta = store.snapshots.save("w", after.state, "periodic")
    assert delta.base_id == info.id  # later snapshots are deltas of the frame's keyframe
    assert_loads_exactly(reopen(), delta, after.state)


def test_a_frame_that_holds_another_state_than_it_claims_is_an_error_when_read(
    store: Store, reopen: Callable[[], Store]
) -> None:
    (state,) = states(1, 1, agents=997)
    store.instances.create(InstanceRecord(id="w", name="default", seed=1, genesis_hash=state_hash(state)))
    raw = encode_state(state)
    wrong = StateFrame(state_hash=state_hash(state), data=_other_bytes_of_the_same_size(raw))
    info = store.snapshots.save_raw("w", raw, tick=state.tick, type="import", frame=wrong)
    for reader in (store, reopen()):
        with pytest.raises(HistoryIntegrityError):
            reader.snapshots.load(info.id)


def test_a_small_state_given_as_a_frame_is_compressed_as_the_storage_decides(store: Store, backend: Backend) -> None:
    (state,) = states(3, 1)
    raw = encode_state(state)
    assert len(raw) <= DICTIONARY_MAX_RAW  # small states get the instance's dictionary once it has one
    store.instances.create(InstanceRecord(id="w", name="default", seed=3, genesis_hash=state_hash(state)))
    frame = StateFrame(state_hash=state_hash(state), data=zstandard.ZstdCompressor(level=19).compress(raw))
    info = store.snapshots.save_raw("w", raw, tick=0, type="import", frame=frame)
    assert backend.blob(info.id) == CompressionEngine().compress(raw).data != frame.data
    assert_loads_exactly(store, info, state)
