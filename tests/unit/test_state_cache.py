"""StateCache and the reads of past ticks that go through it: a cached start is the state a replay reaches, and
only ever found under the snapshot and the inputs it was rebuilt from."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soulfra.durable import DurabilitySettings, DurableWorld, state_at
from soulfra.store import InMemoryStore
from soulfra.store.state_cache import StateCache
from soulfra.world import DEFAULT_WORLD, Whisper, World, schedule, state_hash
from soulfra.world.inputs import Input

SEED = 7
TICKS = 60
INPUTS: list[Input] = [
    Whisper(tick=4, target="arty", text="look east", tone="urgent"),
    Whisper(tick=23, target="*", text="rest now", tone="gentle"),
    Whisper(tick=41, target="cal-riven", text="bless it", tone="solemn"),
]


def _replayed_hashes() -> list[str]:
    """The state hash at every tick of a plain in-memory replay (index t: tick t)."""
    world = World.create(SEED, DEFAULT_WORLD, agents=5)
    due = schedule(INPUTS)
    hashes = [world.state_hash()]
    while world.tick < TICKS:
        world.step(due.get(world.tick, ()))
        hashes.append(world.state_hash())
    return hashes


REPLAYED = _replayed_hashes()


def _stored() -> tuple[InMemoryStore, str]:
    store = InMemoryStore()
    durable = DurableWorld.create(store, SEED, DEFAULT_WORLD, agents=5, settings=DurabilitySettings(snapshot_every=9))
    durable.submit(INPUTS)
    while durable.tick < TICKS:
        durable.step()
    durable.close()
    return store, durable.instance_id


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=TICKS), min_size=1, max_size=25))
def test_every_tick_rebuilt_through_the_cache_hashes_as_the_replay_does(ticks: list[int]) -> None:
    """Any order of reads (so starts from any kept state): each rebuilt tick has the replayed state's hash, and a
    state handed out and then changed does not change what a later read gets."""
    store, instance = _stored()
    for tick in ticks:
        state = state_at(store, instance, tick)
        assert state_hash(state) == REPLAYED[tick], tick
        state.valence[:] = 0  # the caller's to change: the cache keeps a copy of its own
        state.memory.clear()
    assert state_hash(state_at(store, instance, ticks[0])) == REPLAYED[ticks[0]]


def test_a_later_read_starts_from_an_earlier_one_of_the_same_snapshot() -> None:
    store, instance = _stored()
    cache = store.snapshots.cache
    state_at(store, instance, 30)  # snapshot 27, replayed to 30
    hits = cache.hits
    assert state_hash(state_at(store, instance, 33)) == REPLAYED[33]
    assert cache.hits == hits + 1
    assert state_hash(state_at(store, instance, 28)) == REPLAYED[28]  # from the snapshot at 27, kept too
    assert cache.hits == hits + 2


def test_a_kept_state_is_not_a_start_once_the_inputs_differ() -> None:
    world = World.create(SEED, DEFAULT_WORLD)
    base = ("w", 1, world.state_hash())
    whisper = Whisper(tick=2, target="arty", text="hi", tone="gentle")
    cache = StateCache()
    cache.keep(base, world.state, [], size=10)
    world.run_to(5, [whisper])
    cache.keep(base, world.state, [(2, whisper)], size=10)
    found = cache.start(base, 8, [(2, whisper)])
    assert found is not None and found.tick == 5
    other = Whisper(tick=2, target="arty", text="another", tone="gentle")
    found = cache.start(base, 8, [(2, other)])
    assert found is not None and found.tick == 0  # only the snapshot itself matches: nothing replayed onto it
    assert cache.start(("w", 2, base[2]), 8, []) is None  # another snapshot id: another world
    assert cache.start(base, 4, [(2, whisper)]) is not None  # a read before the replayed state: the snapshot
    assert cache.hits == 3


def test_the_least_recently_used_go_first_and_forget_drops_an_instance() -> None:
    world = World.create(SEED, DEFAULT_WORLD)
    cache = StateCache(max_bytes=25)
    for instance in ("a", "b", "c"):
        cache.keep((instance, 1, "h"), world.state, [], size=10)
    assert len(cache) == 2
    assert cache.start(("a", 1, "h"), 0, []) is None
    assert cache.start(("b", 1, "h"), 0, []) is not None
    cache.forget("b")
    assert len(cache) == 1
    cache.keep(("d", 1, "h"), world.state, [], size=26)  # bigger than the whole cache: not kept
    assert len(cache) == 1


def test_opening_a_world_to_run_it_keeps_nothing() -> None:
    """The writer runs on from the state it opens at: nothing of it is kept for reads that will not come."""
    store, instance = _stored()
    store.snapshots.cache.clear()
    durable = DurableWorld.open(store, instance)
    assert durable.world.state_hash() == REPLAYED[TICKS]
    assert len(store.snapshots.cache) == 0
    durable.close()
