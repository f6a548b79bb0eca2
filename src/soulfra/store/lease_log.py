"""Reading the lease log (``WriterLeases.history``): whether two epochs of one key were ever held at once, and how an
epoch is said. Pure: it is handed the epochs and touches no database, so a test or an operator can check any history.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from soulfra.store.ports import RELEASED, TAKEN_OVER, LeaseEpoch

__all__ = ["RELEASED", "TAKEN_OVER", "epoch_json", "overlap_line", "overlaps"]


def overlaps(history: Iterable[LeaseEpoch]) -> list[tuple[LeaseEpoch, LeaseEpoch]]:
    """Every later epoch of a key that began while an earlier one of that key was still held, paired with the
    earlier epoch that reached furthest past its start: an epoch not ended (or ended later) when the next began.
    Empty when each key was held by one writer at a time. An epoch still held, and the last of its key, is no
    overlap."""
    by_key: dict[str, list[LeaseEpoch]] = {}
    for entry in history:
        by_key.setdefault(entry.key, []).append(entry)
    found: list[tuple[LeaseEpoch, LeaseEpoch]] = []
    for key in sorted(by_key):
        furthest: LeaseEpoch | None = None  # of the epochs before, the one whose holding ended last (or never)
        for entry in sorted(by_key[key], key=lambda e: e.epoch):
            if furthest is not None and _held_after(furthest, entry.acquired_at):
                found.append((furthest, entry))
            if furthest is None or _ends_after(entry, furthest):
                furthest = entry
    return found


def _held_after(entry: LeaseEpoch, moment: datetime) -> bool:
    return entry.ended_at is None or entry.ended_at > moment


def _ends_after(entry: LeaseEpoch, other: LeaseEpoch) -> bool:
    """Whether ``entry`` was held past the end of ``other`` (of two never ended, neither: the earlier is named)."""
    if other.ended_at is None:
        return False
    return entry.ended_at is None or entry.ended_at > other.ended_at


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def overlap_line(earlier: LeaseEpoch, later: LeaseEpoch) -> str:
    """One line naming two epochs of a key that were held at once."""
    end = "was never ended" if earlier.ended_at is None else f"ended at {_when(earlier.ended_at)}"
    return (
        f"{earlier.key}: epoch {earlier.epoch} (pid {earlier.pid} on {earlier.host}) {end}, after epoch "
        f"{later.epoch} (pid {later.pid} on {later.host}) began at {_when(later.acquired_at)}"
    )


def epoch_json(entry: LeaseEpoch) -> dict[str, object]:
    return {
        "key": entry.key, "epoch": entry.epoch, "owner": entry.owner, "pid": entry.pid, "host": entry.host,
        "acquired_at": _when(entry.acquired_at), "ended": entry.ended,
        "ended_at": None if entry.ended_at is None else _when(entry.ended_at), "last_tick": entry.last_tick,
    }  # fmt: skip
