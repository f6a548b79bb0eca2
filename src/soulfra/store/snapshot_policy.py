"""When a stored snapshot stands alone (a keyframe) and when it is a delta against one; when an instance's small
states get a dictionary trained on its own snapshots, and whether that dictionary is kept. Decisions only: a snapshot
storage asks, answering the questions in ``SnapshotHistory``; nothing here reads a database or stores anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from soulfra.codec import CompressionEngine, Dictionary, train_dictionary
from soulfra.errors import CodecError

KEYFRAME_EVERY = 10
DICTIONARY_MAX_RAW = 64 * 1024  # states at most this big get a trained dictionary...
DICTIONARY_SAMPLES = 16  # ...once this many snapshots exist to train it on


class SnapshotHistory(Protocol):
    """One instance's stored snapshots, as the policy asks about them while another is being saved."""

    def latest_keyframe(self) -> tuple[int, int] | None:
        """The id and tick of the instance's latest keyframe, or None if it has none."""

    def count_after(self, tick: int) -> int:
        """How many of the instance's snapshots are of a tick later than ``tick``."""

    def newest(self, count: int) -> Sequence[bytes] | None:
        """The canonical bytes of the instance's ``count`` latest snapshots, latest first; None while it has fewer."""


class SnapshotPolicy:
    """The keyframe and dictionary rules of one snapshot storage. It remembers which instances' trained dictionary
    did not pay, until told to ``forget`` one."""

    def __init__(self, compression: CompressionEngine, *, keyframe_every: int = KEYFRAME_EVERY) -> None:
        self.keyframe_every = keyframe_every
        self._compression = compression
        self._untrained: set[str] = set()  # instances whose trained dictionary did not pay

    def forget(self, instance_id: str) -> None:
        """Drop what was learnt of ``instance_id``: an id deleted and made again names a new world, whose trained
        dictionary may pay where the old one's did not."""
        self._untrained.discard(instance_id)

    def delta_base(self, history: SnapshotHistory, *, tick: int, size: int) -> int | None:
        """The id of the keyframe to store a state of ``size`` bytes at ``tick`` as a delta against, or None when it
        should be a keyframe. Small states are never deltas: a dictionary serves them."""
        if size <= DICTIONARY_MAX_RAW or self.keyframe_every <= 1:
            return None
        keyframe = history.latest_keyframe()
        if keyframe is None or keyframe[1] > tick:
            return None
        # every later snapshot is a delta of the latest keyframe
        if history.count_after(keyframe[1]) + 1 >= self.keyframe_every:
            return None
        return keyframe[0]

    def wants_dictionary(self, size: int) -> bool:
        """Whether a keyframe of ``size`` bytes is compressed with the instance's trained dictionary."""
        return size <= DICTIONARY_MAX_RAW

    def train(self, instance_id: str, history: SnapshotHistory) -> Dictionary | None:
        """A dictionary for an instance that has none yet: trained once enough snapshots exist, and returned only if
        it pays, to be kept from then on; None otherwise."""
        if instance_id in self._untrained:
            return None
        samples = history.newest(DICTIONARY_SAMPLES)
        if samples is None:
            return None
        try:
            trained = train_dictionary(samples[DICTIONARY_SAMPLES // 4 :])
        except CodecError:
            trained = None
        # judged on samples it was not trained on: a dictionary holds pieces of its training samples verbatim
        if trained is None or not self._compression.dictionary_pays(samples[: DICTIONARY_SAMPLES // 4], trained):
            self._untrained.add(instance_id)  # tried: plain zstd is as good for this world
            return None
        return trained
