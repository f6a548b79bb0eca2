"""The ``SnapshotStorage`` port in memory, stored as the SQL adapter stores it: canonical state bytes compressed by
``CompressionEngine``, a keyframe or a delta and with or without a trained dictionary as ``SnapshotPolicy`` decides,
and checked against the stored hash on every read. What a snapshot's info says (codec, base, dictionary, sizes) is
then the same on every backend, and a tampered blob is caught here as it is there.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from soulfra.codec import Compressed, CompressionEngine, Dictionary
from soulfra.errors import HistoryIntegrityError, NotFoundError
from soulfra.store.memory.tables import DictionaryRow, SnapshotRow, Tables
from soulfra.store.ports import SnapshotInfo, StateFrame
from soulfra.store.snapshot_blobs import refuse_another_state, stored_frame, unpack
from soulfra.store.snapshot_policy import KEYFRAME_EVERY, SnapshotPolicy
from soulfra.store.state_cache import StateCache
from soulfra.world.encoding import FORMAT_VERSION, decode_state, encode_state, encoded_hash
from soulfra.world.model import WorldState

if TYPE_CHECKING:
    from soulfra.store.memory.store import InMemoryStore


def _infos(tables: Tables, instance_id: str) -> list[SnapshotInfo]:
    """The instance's snapshots, by tick."""
    return [tables.snapshots[snapshot_id].info for _, snapshot_id in tables.ticks.get(instance_id, ())]


class InMemorySnapshotStorage:
    def __init__(
        self, store: InMemoryStore, compression: CompressionEngine, *, keyframe_every: int = KEYFRAME_EVERY
    ) -> None:
        self._store = store
        self._compression = compression
        self.policy = SnapshotPolicy(compression, keyframe_every=keyframe_every)
        self._last_keyframe: tuple[tuple[int, str], bytes] | None = None  # (id, hash) and bytes, read or written
        self.cache = StateCache()

    def save(self, instance_id: str, state: WorldState, type: str) -> SnapshotInfo:
        return self.save_raw(instance_id, encode_state(state), tick=state.tick, type=type)

    def forget(self, instance_id: str) -> None:
        """An id deleted and made again names a new world: what the policy learnt of the old one goes."""
        self.policy.forget(instance_id)
        self.cache.forget(instance_id)

    def save_raw(
        self, instance_id: str, raw: bytes, *, tick: int, type: str, frame: StateFrame | None = None
    ) -> SnapshotInfo:
        digest = encoded_hash(raw) if frame is None else frame.state_hash
        what = f"saving a snapshot of {instance_id} at tick {tick}"
        with self._store.write(what) as tables:
            self._store.fence(tables, instance_id)
            stored = next((info for info in _infos(tables, instance_id) if info.tick == tick), None)
            if stored is not None:
                refuse_another_state(instance_id, tick, stored_hash=stored.state_hash, digest=digest)
                return stored
            tables.require_instance(instance_id, what)
            if frame is not None and not self.policy.wants_dictionary(len(raw)):
                framed, (base_id, base, packed) = True, (None, None, stored_frame(frame, len(raw)))
            else:
                framed, (base_id, base, packed) = False, self._packed(tables, instance_id, raw, tick)
            info = SnapshotInfo(
                id=tables.next_id(), instance_id=instance_id, type=type, tick=tick, state_hash=digest,
                format_version=FORMAT_VERSION, codec=packed.codec, dictionary_id=packed.dictionary_id,
                base_id=base_id if base is not None else None, raw_size=len(raw), stored_size=len(packed.data),
                timestamp=datetime.now(UTC),
            )  # fmt: skip
            tables.snapshots[info.id] = SnapshotRow(info=info, data=packed.data)
            ticks = list(tables.ticks.get(instance_id, ()))
            bisect.insort(ticks, (tick, info.id))
            tables.ticks[instance_id] = tuple(ticks)
            if base is None and not framed:  # a frame is read back from its bytes: it is checked then
                self._last_keyframe = ((info.id, digest), raw)
        return info

    def _packed(
        self, tables: Tables, instance_id: str, raw: bytes, tick: int
    ) -> tuple[int | None, bytes | None, Compressed]:
        """The keyframe a new snapshot is a delta of (its id and bytes; None for a keyframe), and its blob."""
        history = _History(tables, instance_id, self._raw)
        base_id = self.policy.delta_base(history, tick=tick, size=len(raw))
        base = None if base_id is None else self._raw(tables, base_id)
        dictionary = None if base is not None else self._dictionary(tables, instance_id, history, len(raw))
        return base_id, base, self._compression.compress(raw, reference=base, dictionary=dictionary)

    def _dictionary(self, tables: Tables, instance_id: str, history: _History, size: int) -> Dictionary | None:
        """The instance's dictionary for a keyframe of ``size`` bytes: the one it has, or one the policy has trained
        (stored with this write, so a rollback takes it away too); None where the policy gives it none."""
        if not self.policy.wants_dictionary(size):
            return None
        kept = tables.dictionaries.get(instance_id, ())
        if kept:
            found = Dictionary(id=kept[0].dict_id, data=kept[0].data)
            if not self._compression.has_dictionary(found.id):
                self._compression.add_dictionary(found)
            return found
        trained = self.policy.train(instance_id, history)
        if trained is None:
            return None
        tables.dictionaries[instance_id] = (DictionaryRow(dict_id=trained.id, codec="zstd", data=trained.data),)
        self._compression.add_dictionary(trained)
        return trained

    def _raw(self, tables: Tables, snapshot_id: int) -> bytes:
        """The canonical bytes of a stored snapshot, checked against its stored hash."""
        row = tables.snapshots.get(snapshot_id)
        if row is None:
            raise NotFoundError(f"no snapshot {snapshot_id} in this database")
        info = row.info
        last = self._last_keyframe
        if last is not None and last[0] == (snapshot_id, info.state_hash):
            return last[1]
        wanted = info.dictionary_id
        if wanted is not None and not self._compression.has_dictionary(wanted):
            kept = [d.data for d in tables.dictionaries.get(info.instance_id, ()) if d.dict_id == wanted]
            if not kept:
                raise HistoryIntegrityError(f"snapshot {snapshot_id} needs dictionary {wanted}, which is missing")
            self._compression.add_dictionary(Dictionary(id=wanted, data=kept[0]))
        raw = unpack(
            self._compression, row.data, snapshot_id=snapshot_id, instance_id=info.instance_id, tick=info.tick,
            codec=info.codec, dictionary_id=wanted, raw_size=info.raw_size, state_hash=info.state_hash,
            reference=None if info.base_id is None else self._raw(tables, info.base_id),
        )  # fmt: skip
        if info.base_id is None:
            self._last_keyframe = ((snapshot_id, info.state_hash), raw)
        return raw

    def load_raw(self, snapshot_id: int) -> tuple[SnapshotInfo, bytes]:
        tables = self._store.view()
        raw = self._raw(tables, snapshot_id)
        return tables.snapshots[snapshot_id].info, raw

    def load(self, snapshot_id: int) -> tuple[SnapshotInfo, WorldState]:
        info, raw = self.load_raw(snapshot_id)
        return info, decode_state(raw)

    def nearest(self, instance_id: str, tick: int) -> SnapshotInfo | None:
        tables = self._store.view()
        ticks = tables.ticks.get(instance_id, ())
        at = bisect.bisect_right(ticks, tick, key=lambda entry: entry[0])
        return tables.snapshots[ticks[at - 1][1]].info if at else None

    def by_hash(self, instance_id: str, state_hash: str) -> SnapshotInfo:
        for info in _infos(self._store.view(), instance_id):
            if info.state_hash == state_hash:
                return info
        raise NotFoundError(f"instance {instance_id!r} has no snapshot with hash {state_hash}")

    def list_snapshots(self, instance_id: str) -> list[SnapshotInfo]:
        return _infos(self._store.view(), instance_id)


class _History:
    """One instance's stored snapshots as ``SnapshotPolicy`` asks about them, in the saving write's tables."""

    def __init__(self, tables: Tables, instance_id: str, raw: Callable[[Tables, int], bytes]) -> None:
        self._tables = tables
        self._instance_id = instance_id
        self._raw = raw

    def latest_keyframe(self) -> tuple[int, int] | None:
        keyframes = [info for info in _infos(self._tables, self._instance_id) if info.base_id is None]
        return None if not keyframes else (keyframes[-1].id, keyframes[-1].tick)

    def count_after(self, tick: int) -> int:
        return sum(1 for t, _ in self._tables.ticks.get(self._instance_id, ()) if t > tick)

    def newest(self, count: int) -> Sequence[bytes] | None:
        ticks = self._tables.ticks.get(self._instance_id, ())
        if len(ticks) < count:
            return None
        return [self._raw(self._tables, snapshot_id) for _, snapshot_id in reversed(ticks[-count:])]
