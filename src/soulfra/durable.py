"""A world whose history is stored: inputs committed before they are acknowledged, ticks group-committed,
snapshots every K ticks and at every loop seal, and any past tick rebuilt from a snapshot plus a replay.

Orchestrates the world core and the storage ports; it names no database. What a world computes never depends on
anything here: a durable run and an in-memory run with the same seed and inputs have the same state hashes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from soulfra.errors import ConfigError, ConflictError, HistoryIntegrityError, InputError, NotFoundError
from soulfra.metrics import Metrics
from soulfra.store.ports import InstanceRecord, SnapshotInfo, Store, StoredInput
from soulfra.world import World, WorldSpec
from soulfra.world.events import Event
from soulfra.world.inputs import Input, parse_input
from soulfra.world.model import WorldState

# Output events kept in ritual_logs by default: the ritual timeline, loops, vibe and every operator effect.
# Posts, threads and tasks are many per tick and regenerable from the input log by replay.
TRACE_KINDS = frozenset(
    {
        "whisper_heard", "agent_possessed", "agent_released", "operator_acted", "personality_changed",
        "ritual_injected", "vibe_altered", "input_rejected", "ritual_proposed", "ritual_gathered", "ritual_blessed",
        "ritual_refused", "ritual_lapsed", "ritual_performed", "ritual_sealed", "vibe_shifted", "seed_applied",
        "visitor_posted", "loop_sealed",
    }
)  # fmt: skip
TraceLevel = Literal["rituals", "all", "none"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DurabilitySettings:
    """How a durable world writes. ``snapshot_every`` trades bytes stored against the cost of reading old ticks."""

    snapshot_every: int = 20
    commit_every: int = 32  # ticks per group commit when no input forces one sooner
    traces: TraceLevel = "rituals"
    horizon: int = 1_000_000  # how far past the current tick an input may be stamped (a tick never reached is loss)

    def __post_init__(self) -> None:
        if self.snapshot_every < 1:
            raise ConfigError("snapshot_every must be at least 1")
        if self.commit_every < 1:
            raise ConfigError("commit_every must be at least 1")
        if self.horizon < 1:
            raise ConfigError("horizon must be at least 1")
        if self.traces not in ("rituals", "all", "none"):
            raise ConfigError(f"traces must be rituals, all or none, not {self.traces!r}")


def world_description(spec: WorldSpec, agents: int) -> dict[str, Any]:
    return {"name": spec.name, "loop_length": spec.loop_length, "agents": len(spec.agents) + agents}


class DurableWorld:
    """One persisted instance, stepping forward. Use ``create``, ``open`` or ``open_or_create``; ``close`` flushes.

    Opening one makes its store the instance's writer (``store.leases``): a second writer anywhere is refused with
    ``LeaseHeldError``, and this one's writes fail with ``LeaseLostError`` if its lease is ever taken over. The
    lease is kept until the store releases it or closes.

    ``metrics``, when set (the runtime that runs the world sets its own), observes each snapshot the world writes.
    """

    def __init__(
        self, store: Store, record: InstanceRecord, world: World, settings: DurabilitySettings, durable_tick: int
    ) -> None:
        self.store = store
        self.instance_id = record.id
        self.record = record
        self.world = world
        self.settings = settings
        self.durable_tick = durable_tick
        self._pending: dict[int, list[Input]] = {}
        self._traces: list[Event] = []
        self.resumed_from = world.tick
        self.metrics: Metrics | None = None

    # -- opening ------------------------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        store: Store,
        seed: int,
        spec: WorldSpec,
        *,
        agents: int = 0,
        instance_id: str | None = None,
        settings: DurabilitySettings | None = None,
    ) -> DurableWorld:
        """A new instance at tick 0, stored with its genesis snapshot. Not audited here: whoever asked for it
        records it (``soulfra.security.audit``)."""
        world = World.create(seed, spec, agents=agents)
        record = InstanceRecord(
            id=instance_id or free_id(store, f"world-{seed}"),
            name=spec.name,
            seed=seed,
            genesis_hash=world.state_hash(),
            world=world_description(spec, agents),
        )
        with _leased(store, record.id), store.transaction():
            record = store.instances.create(record)
            store.snapshots.save(record.id, world.state, "genesis")
            store.vault.save_agents(record.id, world.state)
        return cls(store, record, world, settings or DurabilitySettings(), 0)

    @classmethod
    def open(cls, store: Store, instance_id: str, *, settings: DurabilitySettings | None = None) -> DurableWorld:
        """Continue a stored instance from its last durable tick (recovery after a crash is the same thing)."""
        # The lease and the reads in one transaction (one connection and one commit for all of them: a host taking
        # over hundreds of worlds opens them as fast as its database round trips allow), the replay after it.
        with _leased(store, instance_id, take=False):  # let go of if the reads, the commit or the replay fail
            with store.transaction():
                store.instances.get(instance_id)  # NotFoundError before a lease is taken on a name
                store.leases.acquire(instance_id)
                record = store.instances.get(instance_id)  # as of the lease: no other writer moves it from here on
                start, replayed, pending = _head_reads(store, record)
            if start is None:  # a fork, clone or merge before its first snapshot: rebuilt through its parent
                state = state_at(store, instance_id, record.head_tick, keep=False)
            else:
                state = _replayed(start, record.head_tick, replayed)
        durable = cls(store, record, World(state), settings or DurabilitySettings(), record.head_tick)
        for stored in pending:
            durable._pending.setdefault(stored.tick, []).append(stored.input)
        return durable

    @classmethod
    def from_state(
        cls, store: Store, instance_id: str, state: WorldState, *, settings: DurabilitySettings | None = None
    ) -> DurableWorld:
        """Continue a stored instance from a state already in memory (equal to its state at its head tick), such
        as a fork's copy of its parent's live state: nothing is read back but the inputs still to apply."""
        store.instances.get(instance_id)
        with _leased(store, instance_id):
            record = store.instances.get(instance_id)
            if state.tick != record.head_tick:
                raise ConflictError(f"{instance_id} is durable to tick {record.head_tick}, not {state.tick}")
            durable = cls(store, record, World(state), settings or DurabilitySettings(), record.head_tick)
            for stored in store.inputs.read(instance_id, from_tick=record.head_tick):
                durable._pending.setdefault(stored.tick, []).append(stored.input)
        return durable

    @classmethod
    def open_or_create(
        cls,
        store: Store,
        seed: int,
        spec: WorldSpec,
        *,
        agents: int = 0,
        fresh: bool = False,
        settings: DurabilitySettings | None = None,
    ) -> DurableWorld:
        """Continue the newest instance made with this seed and world, or create one (always, with ``fresh``)."""
        if not fresh:
            found = store.instances.find(seed)
            if found:
                genesis_hash = World.create(seed, spec, agents=agents).state_hash()
                for record in found:
                    if record.genesis_hash == genesis_hash:
                        return cls.open(store, record.id, settings=settings)
                raise ConfigError(
                    f"the database holds instance {found[0].id} with seed {seed}, but of another world "
                    "(other agents or world file); pass --fresh to start a new instance beside it"
                )
        made = cls.create(store, seed, spec, agents=agents, settings=settings)
        if fresh:
            return made
        return made._first_of_twins(seed)

    def _first_of_twins(self, seed: int) -> DurableWorld:
        """This new instance, unless another process made one of the same seed and world at the same moment (both
        found none, then both created one): of such twins the first made is kept, by (created_at, id), which every
        process reads alike. A later twin is deleted while its maker still holds its lease, and the first is opened
        instead (continued, or refused while its maker runs it)."""
        store, record = self.store, self.record
        twins = [
            r for r in store.instances.find(seed) if r.genesis_hash == record.genesis_hash and _made(r) < _made(record)
        ]
        if not twins:
            return self
        first = min(twins, key=_made)
        store.instances.delete(record.id)
        store.leases.release(record.id)
        return type(self).open(store, first.id, settings=self.settings)

    # -- inputs and ticks ---------------------------------------------------------------------------------------

    @property
    def tick(self) -> int:
        return self.world.tick

    def check(self, item: Input) -> None:
        """``InputError`` if ``item`` cannot be taken now: stamped for a tick already run or past the horizon, or
        refused by the world (an unknown agent...)."""
        if item.tick < self.world.tick:
            raise InputError(f"input for tick {item.tick} comes after the world has reached tick {self.world.tick}")
        if item.tick > self.world.tick + self.settings.horizon:
            raise InputError(
                f"input for tick {item.tick} is more than {self.settings.horizon:,} ticks past the world's "
                f"tick {self.world.tick}"
            )
        self.world.check(item)

    def submit(self, items: Sequence[Input]) -> list[StoredInput]:
        """Validate, store and commit inputs; only then are they acknowledged (returned) and scheduled."""
        for item in items:
            self.check(item)
        with self.store.transaction():
            self._write_progress()
            stored = self.store.inputs.append(self.instance_id, items)
        for entry in stored:
            self._pending.setdefault(entry.tick, []).append(entry.input)
        return stored

    def step(self) -> list[Event]:
        """One tick with the inputs stamped for it; snapshots and group commits as the settings say."""
        events = self.world.step(self.inputs_due())
        self.commit_tick(events)
        return events

    def inputs_due(self) -> list[Input]:
        """The stored inputs stamped for the coming tick (taken: ``step`` uses them once)."""
        return self._pending.pop(self.world.tick, [])

    def commit_tick(self, events: list[Event]) -> None:
        """The storage half of ``step``, after the world has ticked: traces, snapshots, group commits."""
        if (write := self.record_tick(events)) is not None:
            write()

    def record_tick(self, events: list[Event]) -> Callable[[], object] | None:
        """Keep the traces of the tick just run; return the write it calls for (a snapshot, a group commit), if any,
        for the caller to run before the next tick where it runs blocking work (a runtime: off the event loop)."""
        level = self.settings.traces
        if level == "all":
            self._traces.extend(events)
        elif level == "rituals":
            self._traces.extend(e for e in events if e.kind in TRACE_KINDS)
        tick = self.world.tick
        sealed = any(e.kind == "loop_sealed" for e in events)
        if sealed or tick % self.settings.snapshot_every == 0:
            return functools.partial(self.snapshot, "loop-seal" if sealed else "periodic", agents=False)
        if tick - self.durable_tick >= self.settings.commit_every:
            return self.flush
        return None

    def snapshot(self, type: str = "manual", *, agents: bool = True) -> SnapshotInfo:
        """Store the current state (and, with ``agents``, the agents table) with everything before it."""
        return self.save_state(self.world.state, type, agents=agents)

    def save_state(self, state: WorldState, type: str, *, agents: bool = False) -> SnapshotInfo:
        """Store ``state`` (the current one, or one copied from it since) as a snapshot, with the world's progress
        before it; observed in ``metrics``, by ``type``."""
        started = None if self.metrics is None else self.metrics.clock()
        with self.store.transaction():
            self._write_progress()
            info = self.store.snapshots.save(self.instance_id, state, type)
            if agents:
                self.store.vault.save_agents(self.instance_id, state)
        if self.metrics is not None and started is not None:
            self.metrics.snapshot_written(type, info.stored_size, self.metrics.clock() - started)
        return info

    def flush(self) -> None:
        """Group commit: the traces so far and the head tick, in one transaction."""
        if self.durable_tick == self.world.tick and not self._traces:
            return
        with self.store.transaction():
            self._write_progress()

    def _write_progress(self) -> None:
        if self._traces:
            self.store.rituals.append(self.instance_id, self._traces)
        self.store.instances.set_head(self.instance_id, self.world.tick)
        self._traces = []
        self.durable_tick = self.world.tick

    def close(self) -> None:
        self.flush()
        self.store.vault.save_agents(self.instance_id, self.world.state)


def _made(record: InstanceRecord) -> tuple[datetime, str]:
    """When an instance was made, its id breaking ties: the order in which twins are told apart."""
    return record.created_at or datetime.min.replace(tzinfo=UTC), record.id


@contextmanager
def _leased(store: Store, instance_id: str, *, take: bool = True) -> Iterator[None]:
    """Take the writer lease of ``instance_id`` for what follows (or, with ``take=False``, let what follows take it,
    in a transaction of its own); let go of it if that fails (unless held before)."""
    newly = instance_id not in store.leases.held()
    try:
        if take:
            store.leases.acquire(instance_id)
        yield
    except BaseException:
        if newly:
            store.leases.release(instance_id)
        raise


def stamp_input(obj: object, tick: int) -> Input:
    """Parse one live input: without a ``tick`` it applies at ``tick`` (the next to run); an earlier tick is refused."""
    if isinstance(obj, dict):
        obj.setdefault("tick", tick)
        if isinstance(obj["tick"], int) and obj["tick"] < tick:
            raise InputError(f"input for tick {obj['tick']} comes after the world has reached tick {tick}")
    return parse_input(obj)


def free_id(store: Store, base: str, *, reserved: set[str] | None = None) -> str:
    """``base`` if no instance has it (nor is it ``reserved``), else ``base-2``, ``base-3``..."""
    taken = {record.id for record in store.instances.list_instances()} | (reserved or set())
    if base not in taken:
        return base
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


# -- reading the past ------------------------------------------------------------------------------------------


def resolve_instance(store: Store, instance_id: str | None) -> InstanceRecord:
    """The named instance, or the newest one when none is named."""
    if instance_id is not None:
        return store.instances.get(instance_id)
    records = store.instances.list_instances()
    if not records:
        raise NotFoundError("the database holds no instance yet (run one with: soulfra run --db URL)")
    return records[-1]


def start_tick(record: InstanceRecord) -> int:
    """The first tick of an instance's own history: 0, or the tick it was forked, cloned, merged or imported at."""
    return record.fork_tick if record.fork_tick is not None else 0


def state_at(store: Store, instance_id: str, tick: int, *, keep: bool = True) -> WorldState:
    """The state at ``tick``: the nearest snapshot at or before it (checked against its hash) plus a replay. The
    store's ``snapshots.cache`` shortens it: the replay starts from the latest state this process rebuilt from that
    snapshot with the same inputs, at or before ``tick``, if it kept one; and, unless ``keep`` is False, what this
    read decodes and rebuilds is kept there for later reads (a caller that runs the world on from the state, as
    opening one does, has no later read of it to speed up). The caller owns the state returned.

    A fork, clone or merge copies no history: before its own first snapshot it reads its parent's, up to the tick
    it was made at, and replays its own inputs from there.
    """
    record = store.instances.get(instance_id)
    if tick < 0 or tick > record.head_tick:
        raise NotFoundError(f"instance {instance_id} has durably reached tick {record.head_tick}; no tick {tick}")
    nearest = store.snapshots.nearest(instance_id, tick)
    if nearest is not None:
        return _rebuilt(store, nearest, tick, keep=keep)
    if record.parent_id is not None and record.fork_tick is not None:
        if tick <= record.fork_tick:
            return state_at(store, record.parent_id, tick, keep=keep)
        world = World(state_at(store, record.parent_id, record.fork_tick, keep=keep))
        world.run_to(tick, (s.input for s in store.inputs.read(instance_id, from_tick=record.fork_tick, to_tick=tick)))
        return world.state
    raise HistoryIntegrityError(f"instance {instance_id} has no snapshot at or before tick {tick}, not even genesis")


def _head_reads(
    store: Store, record: InstanceRecord
) -> tuple[WorldState | None, list[tuple[int, Input]], list[StoredInput]]:
    """What opening a world to run it reads in its transaction: a state at or before its head tick (its nearest
    snapshot's, or a later one the store's ``StateCache`` keeps of it; None for a fork, clone or merge before its
    first snapshot, whose state is rebuilt through its parent's history after the transaction, as it replays more),
    the inputs to replay from there to the head (``_replayed``), and its stored inputs still to apply (stamped at
    the head or later). The log is read at once from the snapshot on, in one read instead of two (a host taking
    over hundreds of worlds waits on each)."""
    head = record.head_tick
    nearest = store.snapshots.nearest(record.id, head)
    if nearest is None:
        return None, [], store.inputs.read(record.id, from_tick=head)
    stored = store.inputs.read(record.id, from_tick=nearest.tick)
    inputs = [(s.tick, s.input) for s in stored if s.tick < head]
    return _start(store, nearest, head, inputs, keep=False), inputs, [s for s in stored if s.tick >= head]


def _rebuilt(
    store: Store, snapshot: SnapshotInfo, tick: int, *, keep: bool, stored: list[StoredInput] | None = None
) -> WorldState:
    """The state at ``tick`` from ``snapshot`` (the nearest at or before it) and a replay of the inputs since (those
    ``stored``, if the caller has read them already)."""
    if stored is None:
        stored = store.inputs.read(snapshot.instance_id, from_tick=snapshot.tick, to_tick=tick)
    inputs = [(s.tick, s.input) for s in stored]
    start = _start(store, snapshot, tick, inputs, keep=keep)
    state = _replayed(start, tick, inputs)
    if keep and state is not start:  # a state replayed here is kept too: a later read starts from it
        base = (snapshot.instance_id, snapshot.id, snapshot.state_hash)
        store.snapshots.cache.keep(base, state, inputs, size=snapshot.raw_size)
    return state


def _start(
    store: Store, snapshot: SnapshotInfo, tick: int, inputs: list[tuple[int, Input]], *, keep: bool
) -> WorldState:
    """Where a replay to ``tick`` from ``snapshot`` starts: the latest state the store's ``StateCache`` keeps of that
    snapshot on the way (the same state a replay from the snapshot reaches: it was replayed from it, with the same
    inputs), or the snapshot's own (kept, with ``keep``)."""
    cache = store.snapshots.cache
    base = (snapshot.instance_id, snapshot.id, snapshot.state_hash)
    state = cache.start(base, tick, inputs)
    if state is None:
        state = store.snapshots.load(snapshot.id)[1]
        if keep:
            cache.keep(base, state, inputs, size=snapshot.raw_size)
    return state


def _replayed(state: WorldState, tick: int, inputs: list[tuple[int, Input]]) -> WorldState:
    """``state`` run on to ``tick`` with the stamped ``inputs`` (those before its own tick are passed over)."""
    if state.tick >= tick:
        return state
    world = World(state)
    world.run_to(tick, (item for stamped, item in inputs if stamped >= state.tick))
    return world.state


def history_base(store: Store, record: InstanceRecord, snapshots: list[SnapshotInfo]) -> WorldState:
    """Where an instance's own history starts: its genesis (or merge/import) snapshot, or its parent's state."""
    start = start_tick(record)
    if snapshots and snapshots[0].tick == start:
        return store.snapshots.load(snapshots[0].id)[1]
    if record.parent_id is not None:
        return state_at(store, record.parent_id, start)
    raise HistoryIntegrityError(f"instance {record.id} has no genesis snapshot to replay from")


__all__ = [
    "TRACE_KINDS",
    "DurabilitySettings",
    "DurableWorld",
    "free_id",
    "history_base",
    "resolve_instance",
    "start_tick",
    "state_at",
]
