"""What a runtime logs about the inputs it takes: a line when it accepts one (its sequence number, the tick it
applies at, its type, the request it came in), and a line when the tick that applied inputs is committed (stored
durably, which may be some ticks later: a group commit), naming their sequence numbers and requests. Ticks that
applied no input cost nothing here. Must not: change what is stored, or log a line per tick.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from soulfra.logs import current_request_id
from soulfra.store.ports import StoredInput

__all__ = ["InputTrail"]

log = logging.getLogger(__name__)


class InputTrail:
    """The accepted inputs of one runtime whose tick is not committed yet, by the tick they apply at."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self._waiting: dict[int, list[tuple[int, str | None]]] = {}  # tick -> (seq, request id) of its inputs
        self._first: int | None = None  # the earliest tick waiting, so that a commit with none waiting is one test

    def accepted(self, stored: Sequence[StoredInput]) -> None:
        """Inputs just stored and acknowledged, in the request being handled (its id is the bound one)."""
        rid = current_request_id()
        for entry in stored:
            self._waiting.setdefault(entry.tick, []).append((entry.seq, rid))
            if self._first is None or entry.tick < self._first:
                self._first = entry.tick
            log.info(
                "accepted input %d (%s) of %s for tick %d", entry.seq, entry.input.type, self.instance_id, entry.tick,
                extra={"instance": self.instance_id, "tick": entry.tick, "seq": entry.seq, "type": entry.input.type},
            )  # fmt: skip

    def committed(self, durable_tick: int) -> None:
        """The world is stored up to ``durable_tick`` (every tick before it has run and is durable): one line for
        each tick that applied inputs and is now committed."""
        if self._first is None or self._first >= durable_tick:
            return
        for tick in sorted(t for t in self._waiting if t < durable_tick):
            inputs = self._waiting.pop(tick)
            seqs = [seq for seq, _ in inputs]
            rids = sorted({rid for _, rid in inputs if rid is not None})
            named = ", ".join(f"{seq} ({rid or 'no request id'})" for seq, rid in inputs)
            fields: dict[str, object] = {"instance": self.instance_id, "tick": tick, "seqs": seqs, "request_ids": rids}
            if len(rids) == 1:
                fields["request_id"] = rids[0]
            log.info("tick %d of %s committed with inputs %s", tick, self.instance_id, named, extra=fields)
        self._first = min(self._waiting, default=None)

    def forget(self) -> None:
        """Drop what is waiting (the runtime carries on from another world: a revert)."""
        self._waiting.clear()
        self._first = None
