"""The storage ports over SQLAlchemy Core: one adapter for SQLite and PostgreSQL, differing only where the
dialects do (JSONB, upserts). Driver errors leave this module as ``StorageError``s.

Snapshots are canonical state bytes, compressed by ``CompressionEngine``: every ``keyframe_every``-th snapshot of
an instance stands alone, the ones between are zstd deltas against the latest keyframe (two reads at most); small
states use a dictionary trained on the instance's own snapshots, where it pays.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from soulfra.codec import CompressionEngine, Dictionary, train_dictionary
from soulfra.errors import (
    CodecError,
    ConflictError,
    HistoryIntegrityError,
    InputError,
    LineageError,
    NotFoundError,
    StorageError,
)
from soulfra.store import schema
from soulfra.store.database import make_engine, translate_errors, upgrade
from soulfra.store.lease import SqlLeases
from soulfra.store.ports import (
    AgentRecord,
    AuditEntry,
    InstanceRecord,
    SnapshotInfo,
    StoredInput,
    TraceRecord,
    parent_tick,
)
from soulfra.world.encoding import FORMAT_VERSION, decode_state, encode_state, encoded_hash
from soulfra.world.events import Event, event_to_json
from soulfra.world.fixed import SCALE
from soulfra.world.inputs import Input, input_to_json, parse_input
from soulfra.world.model import WorldState

TRAIT_NAMES = ("warmth", "curiosity", "order", "chaos")
KEYFRAME_EVERY = 10
DICTIONARY_MAX_RAW = 64 * 1024  # states at most this big get a trained dictionary...
DICTIONARY_SAMPLES = 16  # ...once this many snapshots exist to train it on


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything Soulfra stores is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def raw_hash(raw: bytes) -> str:
    """The state hash of canonical state bytes (equal to ``state_hash`` of the decoded state)."""
    return encoded_hash(raw)


class SqlStore:
    """The ``Store`` port on one SQLAlchemy engine. Transactions are per thread; nested ones join the outer."""

    def __init__(self, engine: sa.Engine, *, compression: CompressionEngine | None = None) -> None:
        self.engine = engine
        self._local = threading.local()
        self.instances = SqlInstanceCatalog(self)
        self.inputs = SqlInputLog(self)
        self.snapshots = SqlSnapshotStorage(self, compression or CompressionEngine())
        self.rituals = SqlRitualStorage(self)
        self.vault = SqlVaultManager(self)
        self.audit = SqlAuditLog(self)
        self.leases = SqlLeases(self)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, compression: CompressionEngine | None = None) -> SqlStore:
        """Open the database at ``url``, migrating it to the newest schema first unless ``migrate`` is False."""
        engine = make_engine(url)
        if migrate:
            upgrade(engine)
        return cls(engine, compression=compression)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if getattr(self._local, "connection", None) is not None:
            yield
            return
        with translate_errors("writing to the database"), self.engine.begin() as connection:
            self._local.connection = connection
            self._local.fenced = set()
            try:
                yield
            finally:
                self._local.connection = None
                self._local.fenced = None

    @contextmanager
    def connect(self, what: str) -> Iterator[sa.Connection]:
        """The current transaction's connection, or a new transaction that commits on exit."""
        current: sa.Connection | None = getattr(self._local, "connection", None)
        with translate_errors(what):
            if current is not None:
                yield current
            else:
                with self.engine.begin() as connection:
                    yield connection

    def fence(self, conn: sa.Connection, instance_id: str) -> None:
        """Before a write to ``instance_id``: if this store holds its lease, check it still does (``LeaseLostError``
        otherwise), once per transaction."""
        self.leases.fence(conn, instance_id, getattr(self._local, "fenced", None))

    def insert(self, table: sa.Table) -> Any:
        """An INSERT that supports ``on_conflict_do_*`` on both dialects."""
        return postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table)

    def close(self) -> None:
        try:
            self.leases.close()
        finally:
            self.engine.dispose()


class SqlInstanceCatalog:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def create(self, record: InstanceRecord) -> InstanceRecord:
        now = _now()
        row = {
            "id": record.id, "name": record.name, "seed": str(record.seed), "genesis_hash": record.genesis_hash,
            "world": record.world, "parent_id": record.parent_id, "fork_tick": record.fork_tick,
            "merge_parent_id": record.merge_parent_id, "head_tick": record.head_tick, "status": record.status,
            "created_at": now, "updated_at": now,
        }  # fmt: skip
        with self._store.connect(f"creating instance {record.id}") as conn:
            exists = conn.execute(sa.select(schema.instances.c.id).where(schema.instances.c.id == record.id)).first()
            if exists is not None:
                raise ConflictError(f"instance {record.id!r} already exists")
            conn.execute(schema.instances.insert().values(**row))
        self._store.snapshots.forget(record.id)  # the id may have been deleted by another process
        return self.get(record.id)

    def get(self, instance_id: str) -> InstanceRecord:
        with self._store.connect(f"reading instance {instance_id}") as conn:
            row = conn.execute(sa.select(schema.instances).where(schema.instances.c.id == instance_id)).first()
        if row is None:
            raise NotFoundError(f"no instance {instance_id!r} in this database")
        return _instance(row)

    def list_instances(self) -> list[InstanceRecord]:
        query = sa.select(schema.instances).order_by(schema.instances.c.created_at, schema.instances.c.id)
        with self._store.connect("listing instances") as conn:
            return [_instance(row) for row in conn.execute(query)]

    def find(self, seed: int) -> list[InstanceRecord]:
        table = schema.instances
        query = sa.select(table).where(table.c.seed == str(seed)).order_by(table.c.created_at.desc(), table.c.id)
        with self._store.connect(f"finding instances with seed {seed}") as conn:
            return [_instance(row) for row in conn.execute(query)]

    def set_head(self, instance_id: str, tick: int) -> None:
        table = schema.instances
        with self._store.connect(f"advancing instance {instance_id}") as conn:
            self._store.fence(conn, instance_id)
            result = conn.execute(
                table.update().where(table.c.id == instance_id).values(head_tick=tick, updated_at=_now())
            )
        if result.rowcount == 0:
            raise NotFoundError(f"no instance {instance_id!r} in this database")

    def delete(self, instance_id: str) -> None:
        with self._store.connect(f"deleting instance {instance_id}") as conn:
            self._store.fence(conn, instance_id)
            self.get(instance_id)
            snaps = schema.snapshots
            # deltas first: they reference their keyframes
            conn.execute(snaps.delete().where(snaps.c.instance_id == instance_id, snaps.c.base_id.is_not(None)))
            for table in (
                schema.snapshots, schema.compression_dictionaries, schema.ritual_logs, schema.inputs, schema.agents
            ):  # fmt: skip
                conn.execute(table.delete().where(table.c.instance_id == instance_id))
            links = schema.instance_links
            conn.execute(links.delete().where(sa.or_(links.c.a == instance_id, links.c.b == instance_id)))
            conn.execute(schema.instances.delete().where(schema.instances.c.id == instance_id))
        self._store.snapshots.forget(instance_id)

    def set_status(self, instance_id: str, status: str) -> None:
        if status not in STATUSES:
            raise InputError(f"unknown instance status {status!r}; expected one of {', '.join(STATUSES)}")
        table = schema.instances
        with self._store.connect(f"setting the status of {instance_id}") as conn:
            self._store.fence(conn, instance_id)
            result = conn.execute(
                table.update().where(table.c.id == instance_id).values(status=status, updated_at=_now())
            )
        if result.rowcount == 0:
            raise NotFoundError(f"no instance {instance_id!r} in this database")

    def children(self, instance_id: str) -> list[InstanceRecord]:
        table = schema.instances
        query = (
            sa.select(table)
            .where(sa.or_(table.c.parent_id == instance_id, table.c.merge_parent_id == instance_id))
            .order_by(table.c.created_at, table.c.id)
        )
        with self._store.connect(f"reading the children of {instance_id}") as conn:
            return [_instance(row) for row in conn.execute(query)]

    def split_branch(self, instance_id: str, tick: int, branch: InstanceRecord) -> InstanceRecord:
        record = self.get(instance_id)
        if not 0 <= tick <= record.head_tick:
            raise LineageError(f"instance {instance_id} has reached tick {record.head_tick}; cannot revert to {tick}")
        start = record.fork_tick if record.fork_tick is not None else 0
        if tick < start:
            raise LineageError(
                f"instance {instance_id} begins at tick {start}; its history before that is "
                f"{record.parent_id or 'not in this database'}'s"
            )
        created = self.create(branch)
        snaps, dicts, table = schema.snapshots, schema.compression_dictionaries, schema.instances
        with self._store.connect(f"reverting {instance_id} to tick {tick}") as conn:
            self._store.fence(conn, instance_id)
            used = conn.execute(
                sa.select(snaps.c.dictionary_id)
                .where(snaps.c.instance_id == instance_id, snaps.c.tick > tick, snaps.c.dictionary_id.is_not(None))
                .distinct()
            ).scalars()
            for dict_id in list(used):  # a trained dictionary is a few KiB of codec state, not history
                row = conn.execute(
                    sa.select(dicts).where(dicts.c.instance_id == instance_id, dicts.c.dict_id == dict_id)
                ).one()
                conn.execute(dicts.insert().values(
                    instance_id=created.id, dict_id=dict_id, codec=row.codec, data=row.data, created_at=_now()
                ))  # fmt: skip
            conn.execute(snaps.update().where(snaps.c.instance_id == instance_id, snaps.c.tick > tick)
                         .values(instance_id=created.id))  # fmt: skip
            for moved in (schema.inputs, schema.ritual_logs):
                conn.execute(
                    moved.update()
                    .where(moved.c.instance_id == instance_id, moved.c.tick >= tick)
                    .values(instance_id=created.id)
                )
            for child in self.children(instance_id):  # made from the abandoned part: they descend from the branch
                for role, column in (("parent", "parent_id"), ("merge_parent", "merge_parent_id")):
                    if (
                        getattr(child, column) == instance_id
                        and child.id != created.id
                        and parent_tick(child, role) > tick
                    ):
                        conn.execute(
                            table.update()
                            .where(table.c.id == child.id)
                            .values({column: created.id, "updated_at": _now()})
                        )
            conn.execute(table.update().where(table.c.id == instance_id).values(head_tick=tick, updated_at=_now()))
        return created

    def link(self, a: str, b: str) -> None:
        first, second = sorted((a, b))
        with self._store.connect(f"linking {a} and {b}") as conn:
            self._store.fence(conn, a)
            self._store.fence(conn, b)
            self.get(first)
            self.get(second)
            stmt = self._store.insert(schema.instance_links).values(a=first, b=second, created_at=_now())
            conn.execute(stmt.on_conflict_do_nothing())

    def unlink(self, a: str, b: str) -> bool:
        first, second = sorted((a, b))
        links = schema.instance_links
        with self._store.connect(f"unlinking {a} and {b}") as conn:
            self._store.fence(conn, a)
            self._store.fence(conn, b)
            result = conn.execute(links.delete().where(links.c.a == first, links.c.b == second))
        return bool(result.rowcount)

    def links(self, instance_id: str) -> list[str]:
        links = schema.instance_links
        query = sa.select(links.c.a, links.c.b).where(sa.or_(links.c.a == instance_id, links.c.b == instance_id))
        with self._store.connect(f"reading the links of {instance_id}") as conn:
            return sorted(row.b if row.a == instance_id else row.a for row in conn.execute(query))


STATUSES = ("active", "frozen", "abandoned")


def _instance(row: sa.Row[Any]) -> InstanceRecord:
    return InstanceRecord(
        id=row.id, name=row.name, seed=int(row.seed), genesis_hash=row.genesis_hash, world=dict(row.world),
        parent_id=row.parent_id, fork_tick=row.fork_tick, merge_parent_id=row.merge_parent_id,
        head_tick=row.head_tick, status=row.status, created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
    )  # fmt: skip


def _stored_inputs(instance_id: str, rows: Sequence[sa.Row[Any, Any, Any, Any]]) -> list[StoredInput]:
    out = []
    for row in rows:
        try:
            item = parse_input(row.body)
        except InputError as exc:
            raise HistoryIntegrityError(f"input {row.seq} of {instance_id} cannot be read back: {exc.detail}") from exc
        out.append(StoredInput(seq=row.seq, tick=row.tick, input=item, accepted_at=_aware(row.accepted_at)))
    return out


class SqlInputLog:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def append(self, instance_id: str, items: Sequence[Input]) -> list[StoredInput]:
        if not items:
            return []
        table = schema.inputs
        now = _now()
        with self._store.connect(f"appending to the input log of {instance_id}") as conn:
            self._store.fence(conn, instance_id)
            last = conn.execute(sa.select(sa.func.max(table.c.seq)).where(table.c.instance_id == instance_id)).scalar()
            first = (last or 0) + 1
            rows = [
                {"instance_id": instance_id, "seq": first + i, "tick": item.tick, "type": item.type,
                 "body": input_to_json(item), "accepted_at": now}
                for i, item in enumerate(items)
            ]  # fmt: skip
            conn.execute(table.insert(), rows)
        return [StoredInput(seq=first + i, tick=item.tick, input=item, accepted_at=now) for i, item in enumerate(items)]

    def read(self, instance_id: str, *, from_tick: int = 0, to_tick: int | None = None) -> list[StoredInput]:
        table = schema.inputs
        query = sa.select(table.c.seq, table.c.tick, table.c.body, table.c.accepted_at).where(
            table.c.instance_id == instance_id, table.c.tick >= from_tick
        )
        if to_tick is not None:
            query = query.where(table.c.tick < to_tick)
        with self._store.connect(f"reading the input log of {instance_id}") as conn:
            rows = conn.execute(query.order_by(table.c.seq)).all()
        return _stored_inputs(instance_id, rows)

    def page(self, instance_id: str, *, after_seq: int = 0, limit: int = 100) -> list[StoredInput]:
        table = schema.inputs
        query = (
            sa.select(table.c.seq, table.c.tick, table.c.body, table.c.accepted_at)
            .where(table.c.instance_id == instance_id, table.c.seq > after_seq)
            .order_by(table.c.seq)
            .limit(limit)
        )
        with self._store.connect(f"reading the input log of {instance_id}") as conn:
            rows = conn.execute(query).all()
        return _stored_inputs(instance_id, rows)

    def count(self, instance_id: str) -> int:
        table = schema.inputs
        with self._store.connect(f"counting inputs of {instance_id}") as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(table.c.instance_id == instance_id)).scalar() or 0)


_SNAPSHOT_INFO = [c for c in schema.snapshots.c if c.name != "data"]


def _snapshot_info(row: sa.Row[Any]) -> SnapshotInfo:
    return SnapshotInfo(
        id=row.id, instance_id=row.instance_id, type=row.type, tick=row.tick, state_hash=row.state_hash,
        format_version=row.format_version, codec=row.codec, dictionary_id=row.dictionary_id, base_id=row.base_id,
        raw_size=row.raw_size, stored_size=row.stored_size, timestamp=_aware(row.timestamp),
    )  # fmt: skip


class SqlSnapshotStorage:
    def __init__(
        self, store: SqlStore, compression: CompressionEngine, *, keyframe_every: int = KEYFRAME_EVERY
    ) -> None:
        self._store = store
        self._compression = compression
        self.keyframe_every = keyframe_every
        self._dictionaries: dict[int, Dictionary] = {}  # by dictionary id, once read or trained
        self._untrained: set[str] = set()  # instances whose trained dictionary did not pay
        self._raw_cache: tuple[tuple[int, str], bytes] | None = None  # the last keyframe read or written

    def forget(self, instance_id: str) -> None:
        """Drop what this process learnt of ``instance_id``'s snapshots: an id deleted and made again names a new
        world, whose trained dictionary may pay where the old one's did not."""
        self._untrained.discard(instance_id)

    def save(self, instance_id: str, state: WorldState, type: str) -> SnapshotInfo:
        return self.save_raw(instance_id, encode_state(state), tick=state.tick, type=type)

    def save_raw(self, instance_id: str, raw: bytes, *, tick: int, type: str) -> SnapshotInfo:
        """``save`` for state bytes already encoded (``encode_state``)."""
        table = schema.snapshots
        digest = raw_hash(raw)
        with self._store.connect(f"saving a snapshot of {instance_id} at tick {tick}") as conn:
            self._store.fence(conn, instance_id)
            stored = conn.execute(
                sa.select(*_SNAPSHOT_INFO).where(table.c.instance_id == instance_id, table.c.tick == tick)
            ).first()
            if stored is not None:
                if stored.state_hash != digest:
                    raise ConflictError(
                        f"instance {instance_id} already has a snapshot at tick {tick} with another state hash "
                        f"({stored.state_hash}, not {digest})"
                    )
                return _snapshot_info(stored)
            base = self._delta_base(conn, instance_id, tick, len(raw))
            dictionary = None if base is not None else self._dictionary(conn, instance_id, len(raw))
            packed = self._compression.compress(
                raw, reference=base[1] if base is not None else None, dictionary=dictionary
            )
            row: dict[str, Any] = {
                "instance_id": instance_id, "type": type, "data": packed.data, "timestamp": _now(), "tick": tick,
                "state_hash": digest, "format_version": FORMAT_VERSION, "codec": packed.codec,
                "dictionary_id": packed.dictionary_id, "base_id": base[0] if base is not None else None,
                "raw_size": len(raw), "stored_size": len(packed.data),
            }  # fmt: skip
            new_id = conn.execute(table.insert().values(**row).returning(table.c.id)).scalar_one()
            if base is None:
                self._raw_cache = ((new_id, digest), raw)
        return SnapshotInfo(
            id=new_id, instance_id=instance_id, type=type, tick=tick, state_hash=digest,
            format_version=FORMAT_VERSION, codec=packed.codec, dictionary_id=packed.dictionary_id,
            base_id=base[0] if base is not None else None, raw_size=len(raw), stored_size=len(packed.data),
            timestamp=row["timestamp"],
        )  # fmt: skip

    def _delta_base(self, conn: sa.Connection, instance_id: str, tick: int, size: int) -> tuple[int, bytes] | None:
        """The keyframe to store a delta against, or None when this snapshot should be a keyframe."""
        if size <= DICTIONARY_MAX_RAW or self.keyframe_every <= 1:
            return None
        table = schema.snapshots
        keyframe = conn.execute(
            sa.select(table.c.id, table.c.tick)
            .where(table.c.instance_id == instance_id, table.c.base_id.is_(None))
            .order_by(table.c.tick.desc())
            .limit(1)
        ).first()
        if keyframe is None or keyframe.tick > tick:
            return None
        # every later snapshot is a delta of the latest keyframe; counting by tick uses the (instance, tick) index
        deltas = conn.execute(
            sa.select(sa.func.count()).where(table.c.instance_id == instance_id, table.c.tick > keyframe.tick)
        ).scalar_one()
        if deltas + 1 >= self.keyframe_every:
            return None
        return keyframe.id, self._raw(conn, keyframe.id)

    def _dictionary(self, conn: sa.Connection, instance_id: str, size: int) -> Dictionary | None:
        """The instance's trained dictionary for small states: trained once enough snapshots exist, kept if it pays."""
        if size > DICTIONARY_MAX_RAW:
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
        if instance_id in self._untrained:
            return None
        table = schema.snapshots
        ids = conn.execute(
            sa.select(table.c.id).where(table.c.instance_id == instance_id).order_by(table.c.tick.desc()).limit(
                DICTIONARY_SAMPLES
            )
        ).scalars().all()  # fmt: skip
        if len(ids) < DICTIONARY_SAMPLES:
            return None
        samples = [self._raw(conn, snapshot_id) for snapshot_id in ids]
        try:
            trained = train_dictionary(samples[DICTIONARY_SAMPLES // 4 :])
        except CodecError:
            trained = None
        # judged on samples it was not trained on: a dictionary holds pieces of its training samples verbatim
        if trained is None or not self._compression.dictionary_pays(samples[: DICTIONARY_SAMPLES // 4], trained):
            self._untrained.add(instance_id)  # tried: plain zstd is as good for this world
            return None
        conn.execute(
            dicts.insert().values(
                instance_id=instance_id, dict_id=trained.id, codec="zstd", data=trained.data, created_at=_now()
            )
        )
        self._compression.add_dictionary(trained)
        self._dictionaries[trained.id] = trained
        return trained

    def _raw(self, conn: sa.Connection, snapshot_id: int) -> bytes:
        """The canonical bytes of a stored snapshot, checked against its stored hash."""
        table = schema.snapshots
        row = conn.execute(sa.select(*_SNAPSHOT_INFO).where(table.c.id == snapshot_id)).first()
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
        blob = conn.execute(sa.select(table.c.data).where(table.c.id == snapshot_id)).scalar_one()
        raw = self._compression.decompress(
            row.codec, blob, dictionary_id=row.dictionary_id, raw_size=row.raw_size, reference=reference
        )
        if raw_hash(raw) != row.state_hash:
            raise HistoryIntegrityError(
                f"snapshot {snapshot_id} (instance {row.instance_id}, tick {row.tick}) does not match its stored hash"
            )
        if row.base_id is None:
            self._raw_cache = ((snapshot_id, row.state_hash), raw)
        return raw

    def load_raw(self, snapshot_id: int) -> tuple[SnapshotInfo, bytes]:
        table = schema.snapshots
        with self._store.connect(f"loading snapshot {snapshot_id}") as conn:
            row = conn.execute(sa.select(*_SNAPSHOT_INFO).where(table.c.id == snapshot_id)).first()
            if row is None:
                raise NotFoundError(f"no snapshot {snapshot_id} in this database")
            return _snapshot_info(row), self._raw(conn, snapshot_id)

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


class SqlRitualStorage:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def append(self, instance_id: str, events: Iterable[Event]) -> int:
        now = _now()
        rows = [
            {"instance_id": instance_id, "ritual_data": event_to_json(e), "timestamp": now, "tick": e.tick,
             "kind": e.kind}
            for e in events
        ]  # fmt: skip
        if rows:
            with self._store.connect(f"storing traces of {instance_id}") as conn:
                self._store.fence(conn, instance_id)
                conn.execute(schema.ritual_logs.insert(), rows)
        return len(rows)

    def record(self, instance_id: str, *, tick: int, kind: str, data: dict[str, Any]) -> int:
        row = {"instance_id": instance_id, "ritual_data": data, "timestamp": _now(), "tick": tick, "kind": kind}
        with self._store.connect(f"storing a {kind} record of {instance_id}") as conn:
            self._store.fence(conn, instance_id)
            key = conn.execute(schema.ritual_logs.insert().values(**row)).inserted_primary_key
        if key is None:
            raise StorageError(f"the database returned no id for the {kind} record of {instance_id}")
        return int(key[0])

    def record_many(self, instance_id: str, rows: Sequence[dict[str, Any]]) -> int:
        if not rows:
            return 0
        now = _now()
        values = [
            {
                "instance_id": instance_id,
                "ritual_data": r["data"],
                "timestamp": now,
                "tick": r["tick"],
                "kind": r["kind"],
            }
            for r in rows
        ]
        with self._store.connect(f"storing {len(rows)} records of {instance_id}") as conn:
            self._store.fence(conn, instance_id)
            conn.execute(schema.ritual_logs.insert(), values)
        return len(values)

    def read(
        self, instance_id: str, *, from_tick: int = 0, to_tick: int | None = None, kinds: Sequence[str] = ()
    ) -> list[TraceRecord]:
        table = schema.ritual_logs
        query = sa.select(table).where(table.c.instance_id == instance_id, table.c.tick >= from_tick)
        if to_tick is not None:
            query = query.where(table.c.tick < to_tick)
        if kinds:
            query = query.where(table.c.kind.in_(list(kinds)))
        with self._store.connect(f"reading traces of {instance_id}") as conn:
            rows = conn.execute(query.order_by(table.c.id)).all()
        return [
            TraceRecord(id=r.id, tick=r.tick, kind=r.kind, data=dict(r.ritual_data), timestamp=_aware(r.timestamp))
            for r in rows
        ]


class SqlVaultManager:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def save_agents(self, instance_id: str, state: WorldState) -> int:
        table = schema.agents
        now = _now()
        rows = [
            {"id": spec.id, "instance_id": instance_id, "agent_type": spec.mind,
             "personality": personality_json(state, i), "state": agent_state_json(state, i), "tick": state.tick,
             "created_at": now}
            for i, spec in enumerate(state.specs)
        ]  # fmt: skip
        statement = self._store.insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.id, table.c.instance_id],
            set_={
                "agent_type": statement.excluded.agent_type,
                "personality": statement.excluded.personality,
                "state": statement.excluded.state,
                "tick": statement.excluded.tick,
            },
        )
        with self._store.connect(f"saving agents of {instance_id}") as conn:
            self._store.fence(conn, instance_id)
            conn.execute(statement, rows)
        return len(rows)

    def load_agent(self, instance_id: str, agent_id: str) -> AgentRecord:
        table = schema.agents
        with self._store.connect(f"reading agent {agent_id}") as conn:
            row = conn.execute(
                sa.select(table).where(table.c.instance_id == instance_id, table.c.id == agent_id)
            ).first()
        if row is None:
            raise NotFoundError(f"instance {instance_id!r} has no agent {agent_id!r}")
        return _agent(row)

    def list_agents(self, instance_id: str) -> list[AgentRecord]:
        table = schema.agents
        with self._store.connect(f"listing agents of {instance_id}") as conn:
            rows = conn.execute(sa.select(table).where(table.c.instance_id == instance_id)).all()
        records = [_agent(row) for row in rows]
        return sorted(records, key=lambda r: r.state.get("index", 0))


def personality_json(state: WorldState, i: int) -> dict[str, Any]:
    spec = state.specs[i]
    traits = {name: int(state.traits[i, k]) for k, name in enumerate(TRAIT_NAMES)}
    return {"name": spec.name, "voice": spec.voice, "goals": list(spec.goals), "traits": traits, "scale": SCALE}


def agent_state_json(state: WorldState, i: int) -> dict[str, Any]:
    return {
        "index": i,
        "valence": int(state.valence[i]),
        "arousal": int(state.arousal[i]),
        "energy": int(state.energy[i]),
        "focus": int(state.focus[i]),
        "possessed_by": state.possessed.get(i),
        "memory": list(state.memory.get(i, ())),
        "scale": SCALE,
    }


def _agent(row: sa.Row[Any]) -> AgentRecord:
    return AgentRecord(
        id=row.id, instance_id=row.instance_id, agent_type=row.agent_type, personality=dict(row.personality),
        state=dict(row.state), tick=row.tick, created_at=_aware(row.created_at),
    )  # fmt: skip


class SqlAuditLog:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def append(self, *, actor: str, action: str, instance_id: str | None, detail: dict[str, Any]) -> None:
        with self._store.connect(f"auditing {action}") as conn:
            conn.execute(
                schema.audit_log.insert().values(
                    timestamp=_now(), actor=actor, action=action, instance_id=instance_id, detail=detail
                )
            )

    def read(self, *, instance_id: str | None = None) -> list[AuditEntry]:
        table = schema.audit_log
        query = sa.select(table).order_by(table.c.id)
        if instance_id is not None:
            query = query.where(table.c.instance_id == instance_id)
        with self._store.connect("reading the audit log") as conn:
            rows = conn.execute(query).all()
        return [
            AuditEntry(id=r.id, timestamp=_aware(r.timestamp), actor=r.actor, action=r.action,
                       instance_id=r.instance_id, detail=dict(r.detail))
            for r in rows
        ]  # fmt: skip
