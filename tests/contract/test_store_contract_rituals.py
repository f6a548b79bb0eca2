"""The RitualStorage contract, run on every backend: ritual traces read back as event JSON in stored order, with
tick bounds and kinds, beside derived records and rows stored many at once."""

from __future__ import annotations

from soulfra.store import Store
from soulfra.world import (
    event_to_json,
)

from .support import _is_utc, _run, make_record

# -- RitualStorage ---------------------------------------------------------------------------------------------


def test_rituals_read_back_as_event_json_in_stored_order(store: Store) -> None:
    store.instances.create(make_record("a"))
    store.instances.create(make_record("b"))
    events = _run(40)
    assert len({e.kind for e in events}) >= 5
    half = len(events) // 2
    assert store.rituals.append("a", events[:half]) == half
    assert store.rituals.append("a", iter(events[half:])) == len(events) - half
    assert store.rituals.append("a", []) == 0
    store.rituals.append("b", events[:3])

    read = store.rituals.read("a")
    assert [(r.tick, r.kind, r.data) for r in read] == [(e.tick, e.kind, event_to_json(e)) for e in events]
    assert [r.id for r in read] == sorted(r.id for r in read)
    assert len({r.id for r in read}) == len(read)
    assert all(_is_utc(r.timestamp) for r in read)
    assert len(store.rituals.read("b")) == 3
    assert store.rituals.read("nobody") == []


def test_a_derived_record_is_stored_beside_the_events_with_its_own_id(store: Store) -> None:
    store.instances.create(make_record("a"))
    store.rituals.append("a", _run(5))
    first = store.rituals.record("a", tick=3, kind="unified_snapshot", data={"system_hash": "ab", "conflicts": []})
    second = store.rituals.record("a", tick=4, kind="anomaly", data={"detail": "x"})
    assert second > first
    read = store.rituals.read("a", kinds=["unified_snapshot", "anomaly"])
    assert [(r.id, r.tick, r.kind, r.data) for r in read] == [
        (first, 3, "unified_snapshot", {"system_hash": "ab", "conflicts": []}),
        (second, 4, "anomaly", {"detail": "x"}),
    ]


def test_rituals_read_with_tick_bounds_and_kinds(store: Store) -> None:
    store.instances.create(make_record("a"))
    events = _run(40)
    store.rituals.append("a", events)

    def expected(lo: int, hi: int | None, kinds: tuple[str, ...] = ()) -> list[dict[str, object]]:
        return [
            event_to_json(e)
            for e in events
            if lo <= e.tick and (hi is None or e.tick < hi) and (not kinds or e.kind in kinds)
        ]

    kinds = ("post_made", "vibe_shifted", "ritual_injected")
    assert [r.data for r in store.rituals.read("a", from_tick=10)] == expected(10, None)
    assert [r.data for r in store.rituals.read("a", to_tick=10)] == expected(0, 10)
    assert [r.data for r in store.rituals.read("a", from_tick=5, to_tick=25)] == expected(5, 25)
    by_kind = store.rituals.read("a", kinds=kinds)
    assert {r.kind for r in by_kind} == set(kinds)
    assert [r.data for r in by_kind] == expected(0, None, kinds)
    assert [r.data for r in store.rituals.read("a", from_tick=5, to_tick=25, kinds=kinds)] == expected(5, 25, kinds)
    assert store.rituals.read("a", kinds=("no_such_kind",)) == []


def test_record_many_stores_rows_in_order_and_reads_them_back(store: Store) -> None:
    store.instances.create(make_record("a"))
    rows = [{"tick": t, "kind": "ritual_sealed", "data": {"kind": "ritual_sealed", "n": t}} for t in (1, 1, 4)]
    assert store.rituals.record_many("a", rows) == 3
    assert store.rituals.record_many("a", []) == 0
    assert [(r.tick, r.kind, r.data) for r in store.rituals.read("a")] == [
        (r["tick"], r["kind"], r["data"]) for r in rows
    ]
