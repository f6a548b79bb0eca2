"""DurableWorld on a real SQLite file: the stored world is the same world, tick for tick, as one run in memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from soulfra.durable import TRACE_KINDS, DurabilitySettings, DurableWorld, state_at
from soulfra.errors import ConfigError, InputError, NotFoundError
from soulfra.store import SqlStore, schema
from soulfra.verification import replay, verify
from soulfra.world import DEFAULT_WORLD, Possess, Whisper, World, WorldSpec, schedule, state_hash
from soulfra.world.inputs import Input

SEED = 41


def _inputs() -> list[Input]:
    return [
        Whisper(tick=3, target="arty", text="look east", tone="urgent"),
        Whisper(tick=57, target="*", text="rest now"),
        Possess(tick=120, agent="agent-zero"),
    ]


def _hashes(ticks: int, inputs: list[Input], agents: int = 0) -> list[str]:
    """The state hash after every tick of an in-memory run (index t: the state at tick t)."""
    world = World.create(SEED, DEFAULT_WORLD, agents=agents)
    by_tick = schedule(inputs)
    hashes = [world.state_hash()]
    while world.tick < ticks:
        world.step(by_tick.get(world.tick, ()))
        hashes.append(world.state_hash())
    return hashes


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = SqlStore.open(f"sqlite:///{tmp_path / 'worlds.db'}")
    yield opened
    opened.close()


def _run(store: SqlStore, ticks: int, inputs: list[Input], **settings: int) -> DurableWorld:
    durable = DurableWorld.create(store, SEED, DEFAULT_WORLD, settings=DurabilitySettings(**settings))  # type: ignore[arg-type]
    durable.submit(inputs)
    while durable.tick < ticks:
        durable.step()
    durable.close()
    return durable


def test_every_past_tick_rebuilds_to_the_in_memory_hash(store: SqlStore) -> None:
    expected = _hashes(150, _inputs())
    durable = _run(store, 150, _inputs(), snapshot_every=7)
    for tick in range(151):
        assert state_hash(state_at(store, durable.instance_id, tick)) == expected[tick], tick


def test_snapshots_every_k_ticks_and_at_each_loop_seal(store: SqlStore) -> None:
    durable = _run(store, 250, [], snapshot_every=30)
    snaps = {info.tick: info for info in store.snapshots.list_snapshots(durable.instance_id)}
    periodic = set(range(30, 251, 30))
    seals = {100, 200}
    assert set(snaps) == {0} | periodic | seals
    assert snaps[0].type == "genesis"
    assert {t for t, info in snaps.items() if info.type == "loop-seal"} == seals
    expected = _hashes(250, [])
    assert all(info.state_hash == expected[tick] for tick, info in snaps.items())


def test_a_snapshot_is_addressed_by_its_hash(store: SqlStore) -> None:
    durable = _run(store, 40, [], snapshot_every=10)
    info = durable.snapshot()  # on demand, at tick 40 where a periodic one exists: the same snapshot
    assert info.tick == 40
    assert store.snapshots.by_hash(durable.instance_id, info.state_hash).id == info.id
    _, state = store.snapshots.load(info.id)
    assert state_hash(state) == info.state_hash == durable.world.state_hash()


def test_an_input_is_stored_before_it_is_acknowledged(store: SqlStore) -> None:
    durable = DurableWorld.create(store, SEED, DEFAULT_WORLD)
    acked = durable.submit([Whisper(tick=5, target="cal-riven", text="hold")])
    reader = SqlStore.open(str(store.engine.url), migrate=False)  # another connection sees it at once
    try:
        logged = reader.inputs.read(durable.instance_id)
    finally:
        reader.close()
    assert [(s.seq, s.tick, s.input) for s in logged] == [(a.seq, a.tick, a.input) for a in acked]


def test_ticks_are_group_committed(store: SqlStore) -> None:
    durable = DurableWorld.create(
        store, SEED, DEFAULT_WORLD, settings=DurabilitySettings(snapshot_every=1000, commit_every=16)
    )
    heads = []
    for _ in range(40):
        durable.step()
        heads.append(store.instances.get(durable.instance_id).head_tick)
    assert heads[:15] == [0] * 15
    assert heads[15] == 16
    assert heads[31] == 32
    assert heads[-1] == 32


def test_recovery_after_a_crash_continues_from_the_last_commit(store: SqlStore, tmp_path: Path) -> None:
    inputs = [*_inputs(), Whisper(tick=180, target="arty", text="after the crash")]
    expected = _hashes(200, inputs)
    durable = DurableWorld.create(
        store, SEED, DEFAULT_WORLD, settings=DurabilitySettings(snapshot_every=25, commit_every=8)
    )
    durable.submit(inputs)
    for _ in range(70):
        durable.step()
    # the process dies here: no close(), no flush; whatever was not committed is gone, and its lease with it
    crashed_at = durable.tick
    del durable
    store.close()
    reopened = SqlStore.open(f"sqlite:///{tmp_path / 'worlds.db'}")
    try:
        (record,) = reopened.instances.list_instances()
        assert record.head_tick <= crashed_at
        recovered = DurableWorld.open(reopened, record.id)
        assert recovered.tick == record.head_tick
        assert recovered.world.state_hash() == expected[record.head_tick]
        while recovered.tick < 200:
            recovered.step()
        recovered.close()
        assert recovered.world.state_hash() == expected[200]  # the future input survived the crash and applied
        assert verify(reopened, record.id).ok
    finally:
        reopened.close()


def test_open_or_create_continues_the_same_world_and_refuses_another(store: SqlStore) -> None:
    first = DurableWorld.open_or_create(store, SEED, DEFAULT_WORLD)
    for _ in range(30):
        first.step()
    first.close()
    again = DurableWorld.open_or_create(store, SEED, DEFAULT_WORLD)
    assert (again.instance_id, again.tick) == (first.instance_id, 30)
    fresh = DurableWorld.open_or_create(store, SEED, DEFAULT_WORLD, fresh=True)
    assert (fresh.instance_id, fresh.tick) == (f"world-{SEED}-2", 0)
    with pytest.raises(ConfigError, match="--fresh"):
        DurableWorld.open_or_create(store, SEED, DEFAULT_WORLD, agents=4)
    other = DurableWorld.open_or_create(
        store, SEED, WorldSpec(name="other", agents=DEFAULT_WORLD.agents[:2]), fresh=True
    )
    assert other.instance_id == f"world-{SEED}-3"


def test_inputs_for_the_past_or_unknown_agents_are_refused_and_not_stored(store: SqlStore) -> None:
    durable = DurableWorld.create(store, SEED, DEFAULT_WORLD)
    for _ in range(10):
        durable.step()
    with pytest.raises(InputError, match="tick 10"):
        durable.submit([Whisper(tick=4, target="arty", text="too late")])
    with pytest.raises(InputError):
        durable.submit([Whisper(tick=12, target="arty", text="ok"), Whisper(tick=12, target="nobody", text="x")])
    assert store.inputs.count(durable.instance_id) == 0


def test_state_beyond_the_durable_head_is_not_found(store: SqlStore) -> None:
    durable = _run(store, 20, [])
    with pytest.raises(NotFoundError, match="tick 20"):
        state_at(store, durable.instance_id, 21)


@pytest.mark.parametrize("level", ["rituals", "all", "none"])
def test_trace_levels_choose_what_reaches_ritual_logs(tmp_path: Path, level: str) -> None:
    store = SqlStore.open(f"sqlite:///{tmp_path / 'traces.db'}")
    try:
        durable = DurableWorld.create(store, SEED, DEFAULT_WORLD, settings=DurabilitySettings(traces=level))  # type: ignore[arg-type]
        emitted = []
        for _ in range(120):
            emitted.extend(durable.step())
        durable.close()
        kinds = [r.kind for r in store.rituals.read(durable.instance_id)]
    finally:
        store.close()
    wanted = {
        "all": [e.kind for e in emitted],
        "rituals": [e.kind for e in emitted if e.kind in TRACE_KINDS],
        "none": [],
    }[level]
    assert kinds == wanted
    if level == "rituals":
        assert "loop_sealed" in kinds
        assert "post_made" not in kinds


def test_verify_replays_to_the_same_hash_as_a_clean_run(store: SqlStore) -> None:
    durable = _run(store, 130, _inputs(), snapshot_every=20)
    report = verify(store, durable.instance_id)
    assert report.ok
    assert report.state_hash == replay(SEED, DEFAULT_WORLD, 0, _inputs(), 130) == _hashes(130, _inputs())[130]
    assert report.snapshots_checked == len(store.snapshots.list_snapshots(durable.instance_id))


@pytest.mark.parametrize("damage", ["another-state", "no-frame"])
def test_verify_names_a_snapshot_whose_blob_no_longer_reads_back(store: SqlStore, damage: str) -> None:
    """The replay meets every stored hash (the rows are intact) but one blob holds other bytes, or no zstd frame at
    all: verify reads every blob back and names that one, rather than failing on it."""
    durable = _run(store, 60, _inputs(), snapshot_every=20)
    victim = store.snapshots.nearest(durable.instance_id, 40)
    assert victim is not None and victim.tick == 40
    if damage == "another-state":
        raw = store.snapshots.load_raw(victim.id)[1]
        values: dict[str, object] = {"codec": "none", "dictionary_id": None, "data": raw[:-1] + bytes([raw[-1] ^ 1])}
    else:
        values = {"data": b"\x28\xb5\x2f\xfd" + bytes(16)}
    table = schema.snapshots
    with store.engine.begin() as conn:
        conn.execute(table.update().where(table.c.id == victim.id).values(**values))
    reader = SqlStore.open(str(store.engine.url), migrate=False)  # nothing of the writer's kept in memory
    try:
        report = verify(reader, durable.instance_id)
    finally:
        reader.close()
    assert [(m.tick, m.replayed) for m in report.mismatches] == [(40, "unreadable")]


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ConfigError):
        DurabilitySettings(snapshot_every=0)
    with pytest.raises(ConfigError):
        DurabilitySettings(commit_every=0)
    with pytest.raises(ConfigError):
        DurabilitySettings(traces="some")  # type: ignore[arg-type]
