"""The ``SnapshotStorage`` port in SQL: canonical state bytes compressed by ``CompressionEngine``, each a keyframe or a
zstd delta against its instance's latest keyframe (two reads at most), small states with a dictionary trained on the
instance's own snapshots. Which of these a snapshot gets is ``SnapshotPolicy``'s to decide, not this module's; here
snapshots are stored, read back and checked against their stored hash.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from soulfra.codec import Compressed, CompressionEngine, Dictionary
from soulfra.errors import HistoryIntegrityError, NotFoundError
from soulfra.store import schema
from soulfra.store.ports import SnapshotInfo, StateFrame
from soulfra.store.snapshot_blobs import refuse_another_state, stored_frame, unpack
from soulfra.store.snapshot_policy import KEYFRAME_EVERY, SnapshotPolicy
from soulfra.store.sql.clock import aware, utc_now
from soulfra.store.state_cache import StateCache
from soulfra.world.encoding import FORMAT_VERSION, decode_state, encode_state, encoded_hash
from soulfra.world.model import WorldState

if TYPE_CHECKING:
    from soulfra.store.sql.store import SqlStore


def raw_hash(raw: bytes) -> str:
    """The state hash of canonical state bytes (equal to ``state_hash`` of the decoded state)."""
    return encoded_hash(raw)


_SNAPSHOT_INFO = [c for c in schema.snapshots.c if c.name != "data"]


def _snapshot_info(row: sa.Row[Any]) -> SnapshotInfo:
    return SnapshotInfo(
        id=row.id, instance_id=row.instance_id, type=row.type, tick=row.tick, state_hash=row.state_hash,
        format_version=row.format_version, codec=row.codec, dictionary_id=row.dictionary_id, base_id=row.base_id,
        raw_size=row.raw_size, stored_size=row.stored_size, timestamp=aware(row.timestamp),
    )  # fmt: skip


class SqlSnapshotStorage:
    def __init__(
        self, store: SqlStore, compression: CompressionEngine, *, keyframe_every: int = KEYFRAME_EVERY
    ) -> None:
        self._store = store
        self._compression = compression
        self.policy = SnapshotPolicy(compression, keyframe_every=keyframe_every)
        self._dictionaries: dict[int, Dictionary] = {}  # by dictionary id, once read or trained
        self._raw_cache: tuple[tuple[int, str], bytes] | None = None  # the last keyframe read or written
        self.cache = StateCache()

    def forget(self, instance_id: str) -> None:
        """Drop what this process learnt of ``instance_id``'s snapshots: an id deleted and made again names a new
        world, whose trained dictionary may pay where the old one's did not."""
        self.policy.forget(instance_id)
        self.cache.forget(instance_id)

    def save(self, instance_id: str, state: WorldState, type: str) -> SnapshotInfo:
        return self.save_raw(instance_id, encode_state(state), tick=state.tick, type=type)

    def save_raw(
        self, instance_id: str, raw: bytes, *, tick: int, type: str, frame: StateFrame | None = None
    ) -> SnapshotInfo:
        """``save`` for state bytes already encoded (``encode_state``); ``frame``: the same bytes compressed already
        (see ``StateFrame``)."""
        table = schema.snapshots
        digest = raw_hash(raw) if frame is None else frame.state_hash
        with self._store.connect(f"saving a snapshot of {instance_id} at tick {tick}") as conn:
            self._store.fence(conn, instance_id)
            stored = conn.execute(
                sa.select(*_SNAPSHOT_INFO).where(table.c.instance_id == instance_id, table.c.tick == tick)
            ).first()
            if stored is not None:
                refuse_another_state(instance_id, tick, stored_hash=stored.state_hash, digest=digest)
                return _snapshot_info(stored)
            if frame is not None and not self.policy.wants_dictionary(len(raw)):
                framed, base, packed = True, None, stored_frame(frame, len(raw))
            else:
                framed, (base, packed) = False, self._packed(conn, instance_id, raw, tick)
            row: dict[str, Any] = {
                "instance_id": instance_id, "type": type, "data": packed.data, "timestamp": utc_now(), "tick": tick,
                "state_hash": digest, "format_version": FORMAT_VERSION, "codec": packed.codec,
                "dictionary_id": packed.dictionary_id, "base_id": base[0] if base is not None else None,
                "raw_size": len(raw), "stored_size": len(packed.data),
            }  # fmt: skip
            new_id = conn.execute(table.insert().values(**row).returning(table.c.id)).scalar_one()
            if base is None and not framed:  # a frame is read back from its bytes: it is checked then
                self._raw_cache = ((new_id, digest), raw)
        return SnapshotInfo(
            id=new_id, instance_id=instance_id, type=type, tick=tick, state_hash=digest,
            format_version=FORMAT_VERSION, codec=packed.codec, dictionary_id=packed.dictionary_id,
            base_id=base[0] if base is not None else None, raw_size=len(raw), stored_size=len(packed.data),
            timestamp=row["timestamp"],
        )  # fmt: skip

    def _packed(
        self, conn: sa.Connection, instance_id: str, raw: bytes, tick: int
    ) -> tuple[tuple[int, bytes] | None, Compressed]:
        """The keyframe a new snapshot is a delta of (its id and bytes; None for a keyframe), and its blob."""
        history = _History(conn, instance_id, self._raw)
        base_id = self.policy.delta_base(history, tick=tick, size=len(raw))
        base = None if base_id is None else (base_id, self._raw(conn, base_id))
        dictionary = None if base is not None else self._dictionary(conn, instance_id, history, len(raw))
        packed = self._compression.compress(raw, reference=base[1] if base is not None else None, dictionary=dictionary)
        return base, packed

    def _dictionary(self, conn: sa.Connection, instance_id: str, history: _History, size: int) -> Dictionary | None:
        """The instance's dictionary for a keyframe of ``size`` bytes: the one it has, or one the policy has trained
        and keeps; None where the policy gives it none."""
        if not self.policy.wants_dictionary(size):
            return None
        # Which dictionary the instance has is asked of the database every time: one cached per instance would
        # outlive a rolled-back transaction or a deleted instance, and snapshots would name a dictionary not stored.
        dicts = schema.compression_dictionaries
        dict_id = conn.execute(
            sa.select(dicts.c.dict_id).where(dicts.c.instance_id == instance_id).order_by(dicts.c.id).limit(1)
        ).scalar()
        if dict_id is not None:
            found = self._dictionaries.get(dict_id)
            if found is None:
                data = conn.execute(
                    sa.select(dicts.c.data).where(dicts.c.instance_id == instance_id, dicts.c.dict_id == dict_id)
                ).scalar_one()
                found = Dictionary(id=dict_id, data=data)
                self._compression.add_dictionary(found)
                self._dictionaries[dict_id] = found
            return found
        trained = self.policy.train(instance_id, history)
        if trained is None:
            return None
        conn.execute(
            dicts.insert().values(
                instance_id=instance_id, dict_id=trained.id, codec="zstd", data=trained.data, created_at=utc_now()
            )
        )
        self._compression.add_dictionary(trained)
        self._dictionaries[trained.id] = trained
        return trained

    def _raw(self, conn: sa.Connection, snapshot_id: int, read: sa.Row[Any] | None = None) -> bytes:
        """The canonical bytes of a stored snapshot, checked against its stored hash. ``read``: its row as the
        caller read it already, with its data."""
        table = schema.snapshots
        row = read or conn.execute(sa.select(*_SNAPSHOT_INFO).where(table.c.id == snapshot_id)).first()
        if row is None:
            raise NotFoundError(f"no snapshot {snapshot_id} in this database")
        cache = self._raw_cache
        if cache is not None and cache[0] == (snapshot_id, row.state_hash):
            return cache[1]
        if row.dictionary_id is not None and not self._compression.has_dictionary(row.dictionary_id):
            dicts = schema.compression_dictionaries
            data = conn.execute(
                sa.select(dicts.c.data).where(
                    dicts.c.instance_id == row.instance_id, dicts.c.dict_id == row.dictionary_id
                )
            ).scalar()
            if data is None:
                raise HistoryIntegrityError(
                    f"snapshot {snapshot_id} needs dictionary {row.dictionary_id}, which is missing"
                )
            self._compression.add_dictionary(Dictionary(id=row.dictionary_id, data=data))
        reference = self._raw(conn, row.base_id) if row.base_id is not None else None
        blob = (
            read.data
            if read is not None
            else conn.execute(sa.select(table.c.data).where(table.c.id == snapshot_id)).scalar_one()
        )
        raw = unpack(
            self._compression, blob, snapshot_id=snapshot_id, instance_id=row.instance_id, tick=row.tick,
            codec=row.codec, dictionary_id=row.dictionary_id, raw_size=row.raw_size, state_hash=row.state_hash,
            reference=reference,
        )  # fmt: skip
        if row.base_id is None:
            self._raw_cache = ((snapshot_id, row.state_hash), raw)
        return raw

    def load_raw(self, snapshot_id: int) -> tuple[SnapshotInfo, bytes]:
        table = schema.snapshots
        with self._store.connect(f"loading snapshot {snapshot_id}") as conn:
            # the row with its data in one read: most loads are of a snapshot this process has not read before
            query = sa.select(*_SNAPSHOT_INFO, table.c.data).where(table.c.id == snapshot_id)
            row: sa.Row[Any] | None = conn.execute(query).first()  # type: ignore[assignment]  # one more column
            if row is None:
                raise NotFoundError(f"no snapshot {snapshot_id} in this database")
            return _snapshot_info(row), self._raw(conn, snapshot_id, row)

    def load(self, snapshot_id: int) -> tuple[SnapshotInfo, WorldState]:
        info, raw = self.load_raw(snapshot_id)
        return info, decode_state(raw)

    def nearest(self, instance_id: str, tick: int) -> SnapshotInfo | None:
        table = schema.snapshots
        query = (
            sa.select(*_SNAPSHOT_INFO)
            .where(table.c.instance_id == instance_id, table.c.tick <= tick)
            .order_by(table.c.tick.desc())
            .limit(1)
        )
        with self._store.connect(f"finding a snapshot of {instance_id}") as conn:
            row = conn.execute(query).first()
        return None if row is None else _snapshot_info(row)

    def by_hash(self, instance_id: str, state_hash: str) -> SnapshotInfo:
        table = schema.snapshots
        query = (
            sa.select(*_SNAPSHOT_INFO)
            .where(table.c.instance_id == instance_id, table.c.state_hash == state_hash)
            .order_by(table.c.tick)
            .limit(1)
        )
        with self._store.connect(f"finding a snapshot of {instance_id}") as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(f"instance {instance_id!r} has no snapshot with hash {state_hash}")
        return _snapshot_info(row)

    def list_snapshots(self, instance_id: str) -> list[SnapshotInfo]:
        table = schema.snapshots
        query = sa.select(*_SNAPSHOT_INFO).where(table.c.instance_id == instance_id).order_by(table.c.tick)
        with self._store.connect(f"listing snapshots of {instance_id}") as conn:
            return [_snapshot_info(row) for row in conn.execute(query)]


class _History:
    """One instance's stored snapshots as ``SnapshotPolicy`` asks about them, read on the saving transaction's
    connection."""

    def __init__(self, conn: sa.Connection, instance_id: str, raw: Callable[[sa.Connection, int], bytes]) -> None:
        self._conn = conn
        self._instance_id = instance_id
        self._raw = raw

    def latest_keyframe(self) -> tuple[int, int] | None:
        table = schema.snapshots
        keyframe = self._conn.execute(
            sa.select(table.c.id, table.c.tick)
            .where(table.c.instance_id == self._instance_id, table.c.base_id.is_(None))
            .order_by(table.c.tick.desc())
            .limit(1)
        ).first()
        return None if keyframe is None else (keyframe.id, keyframe.tick)

    def count_after(self, tick: int) -> int:
        table = schema.snapshots
        # counting by tick uses the (instance, tick) index
        query = sa.select(sa.func.count()).where(table.c.instance_id == self._instance_id, table.c.tick > tick)
        return int(self._conn.execute(query).scalar_one())

    def newest(self, count: int) -> list[bytes] | None:
        table = schema.snapshots
        query = (
            sa.select(table.c.id)
            .where(table.c.instance_id == self._instance_id)
            .order_by(table.c.tick.desc())
            .limit(count)
        )
        ids = self._conn.execute(query).scalars().all()
        if len(ids) < count:
            return None
        return [self._raw(self._conn, snapshot_id) for snapshot_id in ids]
