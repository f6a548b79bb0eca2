"""The storage ports: what the rest of Soulfra may ask of a database, and the records it gets back.

Each port is a ``Protocol`` whose docstrings state the contract (order, idempotency, what is raised). Records are
frozen dataclasses, never ORM rows. ``tests/contract`` runs one suite against every adapter.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from soulfra.errors import LineageError
from soulfra.store.state_cache import StateCache
from soulfra.world.events import Event
from soulfra.world.inputs import Input
from soulfra.world.model import WorldState


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceRecord:
    """One world: how it was made, where it came from (lineage), and how far it has durably run."""

    id: str
    name: str
    seed: int
    genesis_hash: str
    world: dict[str, Any] = field(default_factory=dict)
    parent_id: str | None = None
    fork_tick: int | None = None
    merge_parent_id: str | None = None
    head_tick: int = 0
    status: str = "active"  # active, frozen (time stopped by the puppet master) or abandoned (a reverted branch)
    created_at: datetime | None = None
    updated_at: datetime | None = None


STATUSES = ("active", "frozen", "abandoned")  # an instance's status: what ``InstanceCatalog.set_status`` accepts


def parent_tick(record: InstanceRecord, role: str = "parent") -> int:
    """The tick of its ``parent`` (or ``merge_parent``) an instance was made from: a merge keeps one per parent in
    ``world["parent_ticks"]``; a fork or clone has its ``fork_tick`` (and may carry a ``parent_ticks`` copied from a
    merge it descends from, in databases written before children stopped inheriting it: not its own)."""
    ticks = record.world.get("parent_ticks")
    if record.world.get("origin") == "merge" and isinstance(ticks, dict) and isinstance(ticks.get(role), int):
        return int(ticks[role])
    return record.fork_tick if record.fork_tick is not None else 0


def check_revert(record: InstanceRecord, tick: int) -> None:
    """``LineageError`` unless ``record`` can be reverted to ``tick`` (``InstanceCatalog.split_branch``): a tick of
    its own history, from where it began to its head."""
    if not 0 <= tick <= record.head_tick:
        raise LineageError(f"instance {record.id} has reached tick {record.head_tick}; cannot revert to {tick}")
    start = record.fork_tick if record.fork_tick is not None else 0
    if tick < start:
        raise LineageError(
            f"instance {record.id} begins at tick {start}; its history before that is "
            f"{record.parent_id or 'not in this database'}'s"
        )


def moved_to_branch(child: InstanceRecord, source: str, tick: int) -> list[str]:
    """Which lineage fields of ``child`` (``parent_id``, ``merge_parent_id``) name ``source`` at a tick after
    ``tick``: when ``source`` is reverted to ``tick``, ``child`` was made from the abandoned part, and those fields
    move to the branch that keeps it."""
    roles = (("parent", "parent_id"), ("merge_parent", "merge_parent_id"))
    return [column for role, column in roles if getattr(child, column) == source and parent_tick(child, role) > tick]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredInput:
    seq: int
    tick: int
    input: Input
    accepted_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotInfo:
    """A stored snapshot without its bytes: addressed by (instance, tick) and by its state hash."""

    id: int
    instance_id: str
    type: str
    tick: int
    state_hash: str
    format_version: int
    codec: str
    dictionary_id: int | None
    base_id: int | None
    raw_size: int
    stored_size: int
    timestamp: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class StateFrame:
    """State bytes as one plain zstd frame, with the state hash of the bytes it holds, both checked by whoever made
    it (a package's reader, against the signed manifest): ``save_raw`` stores the frame as it is, a keyframe, with
    no compression or hash of its own. A frame that is not what it claims fails its snapshot's hash check when read:
    an error, never a wrong state."""

    state_hash: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceRecord:
    """One stored output event (a ritual, a loop seal, a vibe shift...) as JSON."""

    id: int
    tick: int
    kind: str
    data: dict[str, Any]
    timestamp: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRecord:
    id: str
    instance_id: str
    agent_type: str
    personality: dict[str, Any]
    state: dict[str, Any]
    tick: int
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One row of the audit log: who (``actor``, with its ``role``, from ``source``), what (``action``, ``detail``),
    to which instances, with what ``outcome`` (``ok`` or the refusal's error code), and the row's place in the hash
    chain (``id`` counts 1, 2, 3...; ``row_hash`` commits to the row and to ``prev_hash``)."""

    id: int
    timestamp: datetime
    actor: str
    action: str
    instance_id: str | None
    detail: dict[str, Any]
    role: str | None = None
    source: str | None = None
    request_id: str | None = None
    outcome: str = "ok"
    instances: tuple[str, ...] = ()
    prev_hash: str = ""
    row_hash: str = ""

    def hash_fields(self) -> dict[str, Any]:
        """What ``audit_chain.row_hash`` takes, as this row holds it."""
        return {
            "id": self.id, "timestamp": self.timestamp, "actor": self.actor, "role": self.role, "source": self.source,
            "request_id": self.request_id, "action": self.action, "instance_id": self.instance_id,
            "instances": list(self.instances), "outcome": self.outcome, "detail": self.detail,
            "prev_hash": self.prev_hash,
        }  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedHead:
    """The audit chain's head (its last row and that row's hash) as an installation key signed it."""

    row_id: int
    row_hash: str
    key_id: str
    signature: str  # hex
    signed_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRecord:
    """An API token as stored: its SHA-256, never the token. ``instances`` None: it may see every instance."""

    name: str
    role: str
    token_hash: str
    instances: tuple[str, ...] | None = None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    created_by: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord:
    """A dashboard sign-in as stored: the SHA-256 of its id (never the id, which only the browser's cookie holds),
    the hash of the API token it signed in with, when it began, when it was last seen, and when it ends however
    busy it is (an idle session ends sooner: the caller decides how idle is too idle)."""

    id_hash: str
    token_hash: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseInfo:
    """Who holds (or last held) the writer lease of ``key``: an instance id, or ``:puppet-master`` for a server."""

    key: str
    epoch: int
    pid: int
    host: str
    since: datetime
    live: bool  # False once released, or when its holder is gone


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseEpoch:
    """One epoch of a writer lease in the lease log: who held ``key`` from when, and how and when that ended."""

    key: str
    epoch: int
    owner: str  # the holding store's liveness token
    pid: int
    host: str
    acquired_at: datetime
    ended: str | None  # RELEASED by its holder, TAKEN_OVER by the next epoch; None while held (or dead, not yet taken)
    ended_at: datetime | None
    last_tick: int | None  # the instance's last committed tick when the epoch ended; None for the server's own key


RELEASED = "released"
TAKEN_OVER = "taken_over"


class WriterLeases(Protocol):
    """One writer per instance. A lease is held by one store (one process) until it releases it, closes, or dies;
    readers never take one and are never blocked by one."""

    def acquire(self, key: str) -> LeaseInfo:
        """Become the writer of ``key``. Idempotent for the store that holds it. ``LeaseHeldError`` (naming the
        holder's pid, host and since when) if another live store holds it; a dead holder's lease is taken over,
        and from then on every write of the old holder to ``key`` raises ``LeaseLostError``."""

    def release(self, key: str) -> None:
        """Stop being the writer of ``key`` (a no-op if this store does not hold it)."""

    def holder(self, key: str) -> LeaseInfo | None:
        """Who holds or last held ``key``, or None if nobody ever did."""

    def held(self) -> list[str]:
        """The keys this store holds, sorted."""

    def history(self, key: str | None = None) -> list[LeaseEpoch]:
        """The lease log: every epoch of ``key`` (of every key if None) since the log was kept, by key then epoch.
        Append-only: an epoch's row is written as it is taken, in the transaction that takes it, and its end once,
        in the transaction that releases it or takes it over."""


class InstanceCatalog(Protocol):
    def create(self, record: InstanceRecord) -> InstanceRecord:
        """Store a new instance; ``ConflictError`` if the id is taken. Returns it with its timestamps."""

    def get(self, instance_id: str) -> InstanceRecord:
        """``NotFoundError`` if there is no such instance."""

    def list_instances(self, ids: Collection[str] | None = None) -> list[InstanceRecord]:
        """Every instance (or only those of ``ids``, those that exist), oldest first."""

    def find(self, seed: int) -> list[InstanceRecord]:
        """Instances made with ``seed``, newest first."""

    def set_head(self, instance_id: str, tick: int) -> None:
        """Record that ticks up to ``tick`` are durable. ``NotFoundError`` if there is no such instance."""

    def delete(self, instance_id: str) -> None:
        """Remove an instance and everything stored for it. ``NotFoundError`` if absent; ``ConflictError`` if
        another instance's lineage (a fork, clone, merge or abandoned branch) still points at it."""

    def set_status(self, instance_id: str, status: str) -> None:
        """``active``, ``frozen`` or ``abandoned``. ``NotFoundError`` if there is no such instance."""

    def children(self, instance_id: str) -> list[InstanceRecord]:
        """Instances whose parent or merge parent is ``instance_id``, oldest first."""

    def split_branch(self, instance_id: str, tick: int, branch: InstanceRecord) -> InstanceRecord:
        """Revert ``instance_id`` to ``tick``, keeping what came after as ``branch`` (created here): inputs and
        traces at ``tick`` or later and snapshots after it move to the branch (moved, never copied); forks taken
        after ``tick`` now descend from the branch; the instance's head becomes ``tick``. Call it inside a
        transaction. ``LineageError`` if ``tick`` is past the head."""

    def link(self, a: str, b: str) -> None:
        """Link two instances (idempotent, symmetric). ``NotFoundError`` if either is absent."""

    def unlink(self, a: str, b: str) -> bool:
        """Remove a link; False if there was none."""

    def links(self, instance_id: str) -> list[str]:
        """The instances linked to ``instance_id``, sorted."""

    def rules(self, instance_id: str) -> dict[str, Any] | None:
        """The protocol rules set for the instance (as ``RuleSet.to_json`` wrote them), or None if none were set.
        ``NotFoundError`` if there is no such instance."""

    def set_rules(self, instance_id: str, rules: dict[str, Any]) -> None:
        """Set (replace) the instance's protocol rules. ``NotFoundError`` if there is no such instance."""


class InputLog(Protocol):
    def append(self, instance_id: str, items: Sequence[Input]) -> list[StoredInput]:
        """Append in order, numbering from the log's last ``seq`` + 1. Durable when the enclosing transaction
        commits (at once outside a transaction). Two writers racing for the same ``seq`` get ``ConflictError``."""

    def read(self, instance_id: str, *, from_tick: int = 0, to_tick: int | None = None) -> list[StoredInput]:
        """Inputs stamped ``from_tick <= tick < to_tick``, in ``seq`` order (the order they apply in)."""

    def page(self, instance_id: str, *, after_seq: int = 0, limit: int = 100) -> list[StoredInput]:
        """At most ``limit`` inputs with ``seq > after_seq``, in ``seq`` order: a log read a page at a time."""

    def latest(self, instance_id: str, *, limit: int) -> list[StoredInput]:
        """The last ``limit`` inputs of the log, in ``seq`` order (a revert leaves gaps in ``seq``, so counting back
        from the total cannot find them)."""

    def count(self, instance_id: str) -> int: ...


class SnapshotStorage(Protocol):
    @property
    def cache(self) -> StateCache:
        """States this process decoded from the snapshots or rebuilt from them, for its next reads of past ticks
        (``durable.state_at``); ``load`` and ``load_raw`` never read it. Each adapter keeps its own."""

    def save(self, instance_id: str, state: WorldState, type: str) -> SnapshotInfo:
        """Store ``state`` at its tick. Idempotent: saving the same state at a stored tick returns the stored
        snapshot; another state at a stored tick is a ``ConflictError``."""

    def save_raw(
        self, instance_id: str, raw: bytes, *, tick: int, type: str, frame: StateFrame | None = None
    ) -> SnapshotInfo:
        """``save`` for state bytes already encoded (``encode_state``): the same rules, no re-encoding. ``frame``:
        the same bytes compressed already, stored as they are (a keyframe) where the storage would not give a state
        that size a dictionary."""

    def load_raw(self, snapshot_id: int) -> tuple[SnapshotInfo, bytes]:
        """``load`` without decoding: the state bytes, checked against the stored hash."""

    def load(self, snapshot_id: int) -> tuple[SnapshotInfo, WorldState]:
        """The snapshot and its state, checked against its stored hash (``HistoryIntegrityError`` if it differs)."""

    def nearest(self, instance_id: str, tick: int) -> SnapshotInfo | None:
        """The latest snapshot at or before ``tick``, or None."""

    def by_hash(self, instance_id: str, state_hash: str) -> SnapshotInfo:
        """``NotFoundError`` if no snapshot of the instance has that hash."""

    def list_snapshots(self, instance_id: str) -> list[SnapshotInfo]:
        """All snapshots of the instance, by tick."""


class RitualStorage(Protocol):
    def append(self, instance_id: str, events: Iterable[Event]) -> int:
        """Store output events in order; returns how many were stored."""

    def record(self, instance_id: str, *, tick: int, kind: str, data: dict[str, Any]) -> int:
        """Store one record a platform derived (a unified snapshot, an anomaly) beside the events; returns its id."""

    def record_many(self, instance_id: str, rows: Sequence[dict[str, Any]]) -> int:
        """Store records given as ``{"tick", "kind", "data"}`` (an imported history's traces) in order, in one
        statement; returns how many."""

    def read(
        self, instance_id: str, *, from_tick: int = 0, to_tick: int | None = None, kinds: Sequence[str] = ()
    ) -> list[TraceRecord]:
        """Events with ``from_tick <= tick < to_tick`` (of ``kinds``, if given), in the order they were stored."""


class VaultManager(Protocol):
    def save_agents(self, instance_id: str, state: WorldState) -> int:
        """Upsert every agent of ``state`` (personality and current state at ``state.tick``); returns the count."""

    def load_agent(self, instance_id: str, agent_id: str) -> AgentRecord:
        """``NotFoundError`` if the instance has no such agent."""

    def list_agents(self, instance_id: str) -> list[AgentRecord]:
        """Every agent of the instance, in world order."""


class AuditLog(Protocol):
    """The audit log, a hash chain: appends are one at a time across every store of the database, each row chained
    to the one before (``soulfra.store.audit_chain``). Rows are stored as given; what goes into them is the security
    layer's to decide."""

    def append(
        self,
        *,
        actor: str,
        action: str,
        instance_id: str | None,
        detail: dict[str, Any],
        role: str | None = None,
        source: str | None = None,
        request_id: str | None = None,
        outcome: str = "ok",
        instances: Sequence[str] = (),
    ) -> AuditEntry:
        """Add a row at the chain's head; returns it with its id and hashes. Durable when the enclosing transaction
        commits (at once outside a transaction). ``detail`` is kept as ``canonical_detail`` gives it."""

    def read(
        self,
        *,
        instance_id: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
    ) -> list[AuditEntry]:
        """Entries with ``id > after_id`` oldest first, at most ``limit`` of them: those of one instance (named by
        ``instance_id`` or among ``instances``), actor, action (a prefix ending in ``.`` matches every action under
        it) and outcome, where given."""

    def head(self) -> tuple[int, str]:
        """The chain's head as the database records it: the last row's id and hash (0 and ``GENESIS`` if empty)."""

    def save_head(self, head: SignedHead) -> None:
        """Keep a signed head."""

    def signed_heads(self) -> list[SignedHead]:
        """Every signed head kept, oldest first."""


class TokenStore(Protocol):
    """API tokens, by name and by hash."""

    def create(self, record: TokenRecord) -> TokenRecord:
        """Store a token. ``ConflictError`` if a token that is not revoked has the name (a revoked one is
        replaced), or if another token has the same hash."""

    def get(self, name: str) -> TokenRecord:
        """``NotFoundError`` if no token has that name."""

    def by_hash(self, token_hash: str) -> TokenRecord | None:
        """The token with that hash, revoked or not, or None."""

    def list_tokens(self) -> list[TokenRecord]:
        """Every token, revoked ones too, by name."""

    def revoke(self, name: str, at: datetime) -> TokenRecord:
        """Revoke a token from ``at`` on; ``NotFoundError`` if no token that is not revoked has that name."""


class SessionStore(Protocol):
    """Dashboard sessions by the hash of their id, shared by every API process on the database."""

    def create(self, record: SessionRecord, *, limit: int) -> SessionRecord:
        """Store a session; then, if its token has more than ``limit`` sessions, end the oldest (by ``created_at``)
        until it has ``limit``. ``ConflictError`` if a session has the same id hash."""

    def get(self, id_hash: str) -> SessionRecord | None:
        """The session with that id hash, ended by its time or not (the caller decides), or None."""

    def touch(self, id_hash: str, at: datetime) -> None:
        """Note the session was seen ``at`` (never earlier than it was last seen); nothing for one not there."""

    def delete(self, id_hash: str) -> bool:
        """End a session (sign-out); False if there was none."""

    def delete_for_token(self, token_hash: str) -> int:
        """End every session of a token (it was revoked); returns how many."""

    def purge(self, *, now: datetime, idle_since: datetime) -> int:
        """End every session that is over: ``expires_at <= now``, or last seen at or before ``idle_since``;
        returns how many."""


class Store(Protocol):
    """One database: the stores over it, and transactions that span them (a group commit)."""

    @property
    def instances(self) -> InstanceCatalog: ...
    @property
    def inputs(self) -> InputLog: ...
    @property
    def snapshots(self) -> SnapshotStorage: ...
    @property
    def rituals(self) -> RitualStorage: ...
    @property
    def vault(self) -> VaultManager: ...
    @property
    def audit(self) -> AuditLog: ...
    @property
    def leases(self) -> WriterLeases: ...
    @property
    def tokens(self) -> TokenStore: ...
    @property
    def sessions(self) -> SessionStore: ...

    def transaction(self) -> AbstractContextManager[None]:
        """Everything the stores do inside commits together, or not at all. Nested calls join the outer one."""

    def close(self) -> None:
        """Release every lease this store holds and close its connections."""
