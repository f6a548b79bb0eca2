"""StateCache: world states one process has decoded from a snapshot or rebuilt from one, kept for its next read of a
past tick, which then starts from the latest of them at or before that tick instead of decoding the snapshot again.

A cache and never the truth: an entry is found only through the snapshot it was rebuilt from (id and state hash)
and only if the inputs replayed onto that snapshot to reach it are exactly those the store holds now, so a deleted
and remade instance, or any other log, never meets a stale state. ``verify`` does not read it. Entries are states
of their own: one is copied in and copied out, so no caller's changes reach another. Reads in several threads
(an API's) share one cache: it takes a lock of its own. Nothing here does I/O.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from soulfra.world.inputs import Input
from soulfra.world.model import WorldState

# Bounded by the canonical size of what it holds (its snapshot's raw size for each state): about 50 states of 1,000
# agents (650 KB each), 5 of 10,000. In memory a state decoded from a snapshot takes about 4.4 times its canonical
# size, one rebuilt from it about 1.2 times (the records that did not change are shared): some 40 to 140 MB here.
DEFAULT_MAX_BYTES = 32 * 1024 * 1024

BaseKey = tuple[str, int, str]  # instance, snapshot id, snapshot state hash


@dataclass(frozen=True, slots=True)
class _Entry:
    state: WorldState
    inputs: tuple[Input, ...]  # replayed onto the snapshot to reach ``state``, in log order
    size: int


class StateCache:
    """Least recently used states, each under the snapshot it was rebuilt from and its tick."""

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[BaseKey, int], _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0  # reads that started from a kept state (for benchmarks and tests; derived, never stored)

    def __len__(self) -> int:
        return len(self._entries)

    def start(self, base: BaseKey, tick: int, inputs: Sequence[tuple[int, Input]]) -> WorldState | None:
        """A copy of the latest state kept of ``base`` at or before ``tick`` that was reached by replaying exactly
        the ``inputs`` (each with its tick, in log order, from the snapshot's tick on) stamped before its own tick;
        None if none is kept."""
        best: tuple[tuple[BaseKey, int], _Entry] | None = None
        with self._lock:
            for key, entry in self._entries.items():
                if key[0] != base or key[1] > tick or (best is not None and key[1] <= best[0][1]):
                    continue
                if entry.inputs == tuple(item for stamped, item in inputs if stamped < key[1]):
                    best = (key, entry)
            if best is None:
                return None
            self._entries.move_to_end(best[0])
            self.hits += 1
        return best[1].state.copy()  # a kept state is never changed: copied outside the lock

    def keep(self, base: BaseKey, state: WorldState, inputs: Sequence[tuple[int, Input]], *, size: int) -> None:
        """Keep a copy of ``state``, reached from ``base`` by replaying the ``inputs`` stamped before its tick
        (``size``: its canonical size in bytes, the snapshot's raw size will do); the least recently used go first
        when the cache would hold more than ``max_bytes``. A state bigger than that is not kept."""
        if size > self.max_bytes:
            return
        entry = _Entry(
            state=state.copy(), inputs=tuple(item for stamped, item in inputs if stamped < state.tick), size=size
        )
        key = (base, state.tick)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            self._entries[key] = entry
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.size

    def forget(self, instance_id: str) -> None:
        """Drop every state kept of ``instance_id``."""
        with self._lock:
            for key in [key for key in self._entries if key[0][0] == instance_id]:
                self._bytes -= self._entries.pop(key).size

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
