"""The mirror's watches: anomalies computed from what each tick published (its events and its vibe reading),
never invented. ``ThreadWatch`` finds a stalled thread, ``MoodWatch`` a mood collapse; each is fed the ticks in
order and says what it found. Both are deterministic functions of the ticks they were fed (no clock, no random),
so two mirrors that saw the same ticks report the same anomalies at the same ticks.

Must not: read the world's state or the store, or publish; the mirror records and publishes what they return.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from soulfra.world.daemons.thread_weaver import STALE

__all__ = [
    "MOOD_COLLAPSE_DROP",
    "MOOD_COLLAPSE_WINDOW",
    "STALL_ACTIVE",
    "STALL_MIN_POSTS",
    "STALL_TICKS",
    "Found",
    "MoodWatch",
    "ThreadWatch",
]

# A thread is stalled when a conversation (at least STALL_MIN_POSTS posts) has had no post for STALL_TICKS ticks
# (half of the ThreadWeaver's STALE, so the mirror says so before the weaver closes it) while at least STALL_ACTIVE
# of its participants have posted in other threads since its last post: the talk went on, elsewhere.
STALL_TICKS = STALE // 2
STALL_ACTIVE = 2
STALL_MIN_POSTS = 3
# A mood collapse: the world's temperature (mean valence, -1..1) falls by more than MOOD_COLLAPSE_DROP below its
# highest reading of the last MOOD_COLLAPSE_WINDOW ticks. A further collapse is measured from the level it fell to.
MOOD_COLLAPSE_DROP = 0.25
MOOD_COLLAPSE_WINDOW = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class Found:
    """An anomaly a watch found: its name, the tick it was found at, one readable line and its particulars."""

    anomaly: str
    tick: int
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Thread:
    topic: str
    last: int
    last_seq: int = 0  # the number of its latest post among every post the watch saw
    posts: int = 0
    participants: set[str] = field(default_factory=set)
    reported: bool = False


class ThreadWatch:
    """Open threads as the post, weave and close events show them, and each agent's latest post anywhere."""

    def __init__(self) -> None:
        self._threads: dict[int, _Thread] = {}
        self._posted: dict[str, int] = {}  # agent -> the number of its latest post in any thread
        self._seq = 0  # posts seen, in the order the world made them (several can share a tick)

    def feed(self, after: int, events: list[dict[str, Any]]) -> list[Found]:
        """Take one tick's events (``after``: the tick the world is at once they happened); the stalls found."""
        for event in events:
            kind = event["kind"]
            if kind in ("post_made", "visitor_posted", "thread_opened"):
                thread = self._threads.get(int(event["thread"]))
                tick = int(event["tick"])
                if thread is None:  # opened, or opened before this watch started
                    thread = self._threads[int(event["thread"])] = _Thread(topic=str(event["topic"]), last=tick)
                if kind == "thread_opened":
                    continue
                self._seq += 1
                thread.last, thread.last_seq, thread.reported = tick, self._seq, False
                thread.posts += 1
                if kind == "post_made":
                    thread.participants.add(str(event["agent"]))
                    self._posted[str(event["agent"])] = self._seq
            elif kind == "threads_woven":
                woven = self._threads.pop(int(event["thread"]), None)
                into = self._threads.get(int(event["into"]))
                if woven is not None and into is not None:
                    into.participants |= woven.participants
                    into.posts += woven.posts
                    if woven.last_seq > into.last_seq:
                        into.last, into.last_seq, into.reported = woven.last, woven.last_seq, False
            elif kind == "thread_closed":
                self._threads.pop(int(event["thread"]), None)
        found = []
        for thread_id, thread in sorted(self._threads.items()):
            quiet = after - 1 - thread.last  # ticks run since its last post
            if quiet > STALE + 1:  # the weaver has closed it, in a tick this watch did not see
                del self._threads[thread_id]
                continue
            if thread.reported or quiet < STALL_TICKS or thread.posts < STALL_MIN_POSTS:
                continue
            elsewhere = sorted(a for a in thread.participants if self._posted.get(a, -1) > thread.last_seq)
            if len(elsewhere) >= STALL_ACTIVE:
                thread.reported = True
                found.append(
                    Found(
                        anomaly="stalled-thread",
                        tick=after - 1,
                        detail=(
                            f"thread {thread_id} ({thread.topic}) has had no post for {quiet} ticks while "
                            f"{len(elsewhere)} of its participants posted elsewhere"
                        ),
                        data={
                            "thread": thread_id,
                            "topic": thread.topic,
                            "last_post": thread.last,
                            "quiet": quiet,
                            "posts": thread.posts,
                            "active_elsewhere": elsewhere,
                        },
                    )
                )
        return found


class MoodWatch:
    """The world's temperature over the last ``MOOD_COLLAPSE_WINDOW`` ticks."""

    def __init__(self) -> None:
        self._window: deque[tuple[int, float]] = deque()  # (tick, temperature), oldest first

    def feed(self, after: int, vibe: dict[str, Any] | None) -> list[Found]:
        """Take one tick's vibe reading (None before a world's first reading); a collapse if one happened."""
        if vibe is None:
            return []
        tick = after - 1
        temperature = float(vibe["temperature"])
        window = self._window
        while window and window[0][0] <= tick - MOOD_COLLAPSE_WINDOW:
            window.popleft()
        window.append((tick, temperature))
        peak_tick, peak = max(window, key=lambda entry: (entry[1], -entry[0]))
        drop = peak - temperature
        if drop <= MOOD_COLLAPSE_DROP:
            return []
        window.clear()
        window.append((tick, temperature))
        return [
            Found(
                anomaly="mood-collapse",
                tick=tick,
                detail=(
                    f"the temperature fell from {peak:.3f} at tick {peak_tick} to {temperature:.3f} "
                    f"(by {drop:.3f}; the floor is a fall of {MOOD_COLLAPSE_DROP} within {MOOD_COLLAPSE_WINDOW} ticks)"
                ),
                data={"from": peak, "from_tick": peak_tick, "to": temperature, "drop": round(drop, 6)},
            )
        ]
