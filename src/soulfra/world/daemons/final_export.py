"""FinalExportDaemon: at the end of a loop, seals it: the loop's digest, the next loop's seed, the state hash.

``collect_seed`` is the trace collector: a pure function from a loop's traces to the next loop's seed (the
mirror platform calls the same function). The loop digest is a BLAKE2b chain over every event of the loop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from soulfra.world.events import Event, LoopSealed
from soulfra.world.model import LoopSeed, LoopTrace, WorldState

THEMES = 3


def first_digest(loop: int) -> bytes:
    return hashlib.blake2b(b"soulfra-loop:%d" % loop, digest_size=32).digest()


def collect_seed(trace: LoopTrace, mean_valence: int) -> LoopSeed:
    """The next loop's seed: the most-discussed topics, intentions read from what happened, a mood baseline."""
    themes = tuple(topic for topic, _ in sorted(trace.topics.items(), key=lambda kv: (-kv[1], kv[0]))[:THEMES])
    intentions = []
    if trace.refused > trace.performed:
        intentions.append("reconcile")
    if trace.performed >= 2:
        intentions.append("celebrate")
    if trace.artifacts >= 1:
        intentions.append("build")
    if len(trace.topics) >= 6:
        intentions.append("explore")
    return LoopSeed(
        loop=trace.index + 1,
        themes=themes,
        intentions=tuple(intentions) or ("listen",),
        baseline=(trace.baseline + mean_valence) // 2,
    )


class FinalExportDaemon:
    def seal(self, state: WorldState, state_hash: Callable[[WorldState], str], events: list[Event]) -> None:
        """Close the current loop (``state.tick`` is one past its last tick) and open the next."""
        trace = state.loop
        mean_valence = int(state.valence.sum()) // max(1, state.size)
        state.pending_seed = collect_seed(trace, mean_valence)
        state.loop = LoopTrace(
            index=trace.index + 1, start=state.tick, digest=first_digest(trace.index + 1), baseline=trace.baseline,
            themes=trace.themes, intentions=trace.intentions,
        )  # fmt: skip
        events.append(
            LoopSealed(
                tick=state.tick - 1,
                loop=trace.index,
                start=trace.start,
                end=state.tick - 1,
                digest=trace.digest.hex(),
                state_hash=state_hash(state),
            )
        )
