"""``overlaps``: two epochs of one key held at once are found, whichever epochs they are; a history of one writer
at a time, ended exactly as the next began included, has none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from soulfra.store.lease_log import RELEASED, TAKEN_OVER, epoch_json, overlap_line, overlaps
from soulfra.store.ports import LeaseEpoch

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def epoch(number: int, start: int, end: int | None, *, key: str = "w", how: str = RELEASED) -> LeaseEpoch:
    return LeaseEpoch(
        key=key, epoch=number, owner=f"o{number}", pid=100 + number, host="h",
        acquired_at=T0 + timedelta(seconds=start),
        ended=None if end is None else how, ended_at=None if end is None else T0 + timedelta(seconds=end),
        last_tick=None if end is None else end,
    )  # fmt: skip


def test_one_writer_at_a_time_has_no_overlap() -> None:
    history = [epoch(1, 0, 5), epoch(2, 5, 9, how=TAKEN_OVER), epoch(3, 9, None), epoch(1, 0, None, key="v")]
    assert overlaps(history) == []
    assert overlaps([]) == []


def test_an_epoch_not_ended_before_the_next_began_is_found() -> None:
    history = [epoch(3, 9, None), epoch(1, 0, None), epoch(2, 5, None)]  # any order: sorted by epoch
    found = overlaps(history)
    assert [(a.epoch, b.epoch) for a, b in found] == [(1, 2), (1, 3)]
    assert overlap_line(*found[0]) == (
        "w: epoch 1 (pid 101 on h) was never ended, after epoch 2 (pid 102 on h) began at "
        "2026-12-06T12:00:05.000000+00:00"
    )


def test_an_epoch_that_ended_after_a_later_one_began_is_found_even_past_its_successor() -> None:
    history = [epoch(1, 0, 20), epoch(2, 5, 6), epoch(3, 10, None), epoch(1, 0, 1, key="v"), epoch(2, 2, None, key="v")]
    found = overlaps(history)
    assert [(a.key, a.epoch, b.epoch) for a, b in found] == [("w", 1, 2), ("w", 1, 3)]
    assert "ended at 2026-12-06T12:00:20.000000+00:00" in overlap_line(*found[1])


def test_an_epoch_reads_as_json() -> None:
    assert epoch_json(epoch(2, 5, 9, how=TAKEN_OVER)) == {
        "key": "w", "epoch": 2, "owner": "o2", "pid": 102, "host": "h",
        "acquired_at": "2026-12-06T12:00:05.000000+00:00", "ended": "taken_over",
        "ended_at": "2026-12-06T12:00:09.000000+00:00", "last_tick": 9,
    }  # fmt: skip
