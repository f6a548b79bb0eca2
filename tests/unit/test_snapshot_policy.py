"""The snapshot policy on its own, no database: when a snapshot is a keyframe or a delta, when a dictionary is trained
and whether it is kept. Its history is a list of (tick, is keyframe, state bytes), latest last."""

from __future__ import annotations

import ast
import inspect

import pytest

import soulfra.store.snapshot_policy
from soulfra.codec import CompressionEngine, Dictionary
from soulfra.store.snapshot_policy import (
    DICTIONARY_MAX_RAW,
    DICTIONARY_SAMPLES,
    KEYFRAME_EVERY,
    SnapshotHistory,
    SnapshotPolicy,
)
from soulfra.world import World, encode_state

BIG = DICTIONARY_MAX_RAW + 1


class FakeHistory:
    def __init__(self, snapshots: list[tuple[int, bool, bytes]]) -> None:
        self.snapshots = snapshots  # ids are list positions
        self.asked: list[str] = []

    def latest_keyframe(self) -> tuple[int, int] | None:
        self.asked.append("latest_keyframe")
        keyframes = [(tick, i) for i, (tick, keyframe, _) in enumerate(self.snapshots) if keyframe]
        return None if not keyframes else max(keyframes)[::-1]

    def count_after(self, tick: int) -> int:
        self.asked.append("count_after")
        return sum(1 for later, _, _ in self.snapshots if later > tick)

    def newest(self, count: int) -> list[bytes] | None:
        self.asked.append("newest")
        if len(self.snapshots) < count:
            return None
        return [raw for _, _, raw in sorted(self.snapshots, reverse=True)[:count]]


def test_the_fake_is_a_history() -> None:
    history: SnapshotHistory = FakeHistory([])
    assert history.latest_keyframe() is None


def test_a_small_state_is_always_a_keyframe_and_asks_nothing() -> None:
    history = FakeHistory([(0, True, b"")])
    assert SnapshotPolicy(CompressionEngine()).delta_base(history, tick=1, size=DICTIONARY_MAX_RAW) is None
    assert history.asked == []


def test_a_large_state_is_a_delta_of_the_latest_keyframe_until_every_nth() -> None:
    policy = SnapshotPolicy(CompressionEngine())
    history = FakeHistory([(0, True, b""), (5, True, b"")])  # keyframes at ticks 0 and 5 (ids 0 and 1)
    bases = []
    for tick in range(6, 6 + KEYFRAME_EVERY):
        base = policy.delta_base(history, tick=tick, size=BIG)
        bases.append(base)
        history.snapshots.append((tick, base is None, b""))
    assert bases == [1] * (KEYFRAME_EVERY - 1) + [None]  # the tenth since the keyframe stands alone again


def test_a_state_before_the_latest_keyframe_is_a_keyframe() -> None:
    policy = SnapshotPolicy(CompressionEngine())
    history = FakeHistory([(10, True, b"")])
    assert policy.delta_base(history, tick=4, size=BIG) is None
    assert history.asked == ["latest_keyframe"]


@pytest.mark.parametrize("keyframe_every", [0, 1])
def test_every_snapshot_is_a_keyframe_when_keyframes_come_every_time(keyframe_every: int) -> None:
    history = FakeHistory([(0, True, b"")])
    policy = SnapshotPolicy(CompressionEngine(), keyframe_every=keyframe_every)
    assert policy.delta_base(history, tick=1, size=BIG) is None
    assert history.asked == []


def test_a_first_snapshot_is_a_keyframe() -> None:
    assert SnapshotPolicy(CompressionEngine()).delta_base(FakeHistory([]), tick=0, size=BIG) is None


def test_only_small_states_want_a_dictionary() -> None:
    policy = SnapshotPolicy(CompressionEngine())
    assert policy.wants_dictionary(DICTIONARY_MAX_RAW)
    assert not policy.wants_dictionary(BIG)


def small_history(count: int) -> FakeHistory:
    world = World.create(1, agents=0)
    snapshots = []
    for _ in range(count):
        snapshots.append((world.state.tick, True, encode_state(world.state)))
        for _ in range(3):
            world.step()
    return FakeHistory(snapshots)


def test_a_dictionary_is_trained_once_enough_snapshots_exist_and_kept_when_it_pays() -> None:
    policy = SnapshotPolicy(CompressionEngine())
    assert policy.train("w", small_history(DICTIONARY_SAMPLES - 1)) is None
    trained = policy.train("w", small_history(DICTIONARY_SAMPLES))  # too few was no verdict: it is tried now
    assert isinstance(trained, Dictionary)


def test_a_dictionary_that_does_not_pay_is_not_kept_nor_tried_again_until_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compression = CompressionEngine()
    policy = SnapshotPolicy(compression)
    judged: list[int] = []

    def never_pays(samples: list[bytes], dictionary: Dictionary) -> bool:
        judged.append(len(samples))
        return False

    monkeypatch.setattr(compression, "dictionary_pays", never_pays)
    assert policy.train("w", small_history(DICTIONARY_SAMPLES)) is None
    assert judged == [DICTIONARY_SAMPLES // 4]  # judged on the samples it was not trained on
    again = small_history(DICTIONARY_SAMPLES)
    assert policy.train("w", again) is None
    assert again.asked == []  # the verdict is remembered: no samples read
    assert policy.train("other", small_history(DICTIONARY_SAMPLES)) is None
    assert judged == [DICTIONARY_SAMPLES // 4] * 2  # another instance gets its own chance

    monkeypatch.undo()
    policy.forget("w")
    assert isinstance(policy.train("w", small_history(DICTIONARY_SAMPLES)), Dictionary)


def test_the_policy_reads_no_database() -> None:
    tree = ast.parse(inspect.getsource(soulfra.store.snapshot_policy))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert {name for name in imported if name and name.startswith(("sqlalchemy", "soulfra.store"))} == set()
