"""``verify`` in several processes at once (``--workers``): a history in a SQLite file cut at stored snapshots into
spans, the first replayed in this process and each other in a process of its own. It reports what one replay
reports on an intact history, finds the same first difference in a forged one, and tells its progress to the end; a
store with no URL is replayed here. Each span reads back the stored blobs of its stretch. A process with no other
thread forks the span processes; one with another thread spawns them."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from soulfra import verification, verification_spans
from soulfra.durable import DurabilitySettings, DurableWorld
from soulfra.store import InMemoryStore, SqlStore, schema
from soulfra.store.ports import Store
from soulfra.verification import VerifyReport, verify
from soulfra.world import DEFAULT_WORLD, Whisper

pytestmark = pytest.mark.timeout(120)

SEED = 12
TICKS = 130
AGENTS = 20


@pytest.fixture(autouse=True)
def _spans_for_short_histories(monkeypatch: pytest.MonkeyPatch) -> None:
    # A history this short is replayed in one process unless told otherwise: the tests want spans, of equal work
    # unless a test gives the first span (replayed in the test's process) a head start.
    monkeypatch.setattr(verification, "PARALLEL_MIN_WORK", {"fork": 1, "spawn": 1})
    monkeypatch.setattr(verification, "START_WORK", {"fork": 0, "spawn": 0})


def _fill(store: Store, agents: int = AGENTS) -> str:
    durable = DurableWorld.create(
        store, SEED, DEFAULT_WORLD, agents=agents, settings=DurabilitySettings(snapshot_every=20)
    )
    durable.submit([Whisper(tick=tick, target="arty", text=f"whisper {tick}") for tick in (3, 47, 88, 121)])
    while durable.tick < TICKS:
        durable.step()
    durable.close()
    return durable.instance_id


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[tuple[SqlStore, str]]:
    store = SqlStore.open(f"sqlite:///{tmp_path / 'worlds.db'}")
    instance = _fill(store)
    yield store, instance
    store.close()


def _summary(report: VerifyReport) -> dict[str, object]:
    return {key: value for key, value in report.to_json().items() if key != "mismatches"}


def test_spans_in_processes_report_what_one_replay_does(
    stored: tuple[SqlStore, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, instance = stored
    one = verify(store, instance, workers=1)
    spanned: list[int] = []
    real = verification_spans.replay_spans

    def counted(*args: Any, **kwargs: Any) -> Any:
        results = real(*args, **kwargs)
        spanned.append(len(results))
        return results

    monkeypatch.setattr(verification, "replay_spans", counted)
    reached: list[int] = []
    several = verify(store, instance, workers=3, on_tick=reached.append)
    assert spanned == [3]  # three spans: this process and two others
    assert one.ok and several.ok
    assert _summary(several) == _summary(one)
    assert one.snapshots_checked == len(store.snapshots.list_snapshots(instance))
    assert reached and reached[-1] == TICKS
    assert reached == sorted(reached)


def test_the_spans_cut_at_stored_snapshots_and_cover_the_history(stored: tuple[SqlStore, str]) -> None:
    store, instance = stored
    snapshots = store.snapshots.list_snapshots(instance)
    base = store.snapshots.load(snapshots[0].id)[1]
    spans = verification._spans(snapshots, base, TICKS, 3)
    assert len(spans) == 3
    assert spans[0].start == 0 and spans[0].snapshot_id is None and spans[-1].end == TICKS
    by_id = {info.id: info.tick for info in snapshots}
    for before, after in pairwise(spans):
        assert before.end == after.start == by_id[after.snapshot_id or -1]


def test_the_first_span_is_longer_by_what_a_process_takes_to_start(
    stored: tuple[SqlStore, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, instance = stored
    snapshots = store.snapshots.list_snapshots(instance)
    base = store.snapshots.load(snapshots[0].id)[1]
    assert [(s.start, s.end) for s in verification._spans(snapshots, base, TICKS, 2)] == [(0, 60), (60, TICKS)]
    # 20 ticks of this world's replay to start a spawned process, none to fork one
    monkeypatch.setattr(verification, "START_WORK", {"fork": 0, "spawn": 20 * base.size})
    # the other span's share: (130 - 20) / 2 = 55 ticks, cut at the snapshot nearest tick 75
    assert [(s.start, s.end) for s in verification._spans(snapshots, base, TICKS, 2)] == [(0, 80), (80, TICKS)]
    assert [(s.start, s.end) for s in verification._spans(snapshots, base, TICKS, 2, "fork")] == [(0, 60), (60, TICKS)]
    reached: list[int] = []
    report = verify(store, instance, workers=2, on_tick=reached.append)
    assert report.ok and report.snapshots_checked == len(snapshots)
    assert reached[-1] == TICKS and reached == sorted(reached)


@pytest.mark.parametrize("forged", ["input", "snapshot-hash"])
def test_a_forged_history_fails_from_the_same_first_tick(stored: tuple[SqlStore, str], forged: str) -> None:
    store, instance = stored
    with store.engine.begin() as conn:
        if forged == "input":  # the whisper at tick 47 said something else: the replay differs from tick 60 on
            row = {"tick": 47, "type": "whisper", "target": "arty", "text": "forged", "tone": "gentle"}
            changed = conn.execute(schema.inputs.update().where(schema.inputs.c.seq == 2).values(body=row))
            first = 60
        else:  # the hash stored at tick 60, where a span may start
            table = schema.snapshots
            changed = conn.execute(table.update().where(table.c.tick == 60).values(state_hash="b2:" + "0" * 64))
            first = 60
    assert changed.rowcount == 1
    one = verify(store, instance, workers=1)
    several = verify(store, instance, workers=3)
    assert not one.ok and not several.ok
    assert min(m.tick for m in one.mismatches) == min(m.tick for m in several.mismatches) == first


def test_a_store_without_a_url_is_replayed_in_this_process() -> None:
    store = InMemoryStore()
    instance = _fill(store)
    assert not hasattr(store, "url")
    one = verify(store, instance, workers=1)
    several = verify(store, instance, workers=4)
    assert one.ok and _summary(several) == _summary(one)


def test_a_blob_that_does_not_read_back_is_reported_by_the_span_that_holds_it(stored: tuple[SqlStore, str]) -> None:
    store, instance = stored
    table = schema.snapshots
    with store.engine.begin() as conn:  # the last span's snapshot at tick 120: its hash stays, its bytes do not
        changed = conn.execute(table.update().where(table.c.tick == 120).values(data=b"not a snapshot"))
    assert changed.rowcount == 1
    one = verify(store, instance, workers=1)
    several = verify(store, instance, workers=3)
    assert [(m.tick, m.replayed) for m in one.mismatches] == [(120, "unreadable")]
    assert several.to_json() == one.to_json()


SPIED = """
import json, sys
from soulfra import verification
from soulfra.store import SqlStore

seen = []
real = verification.replay_spans

def spy(*args, **kwargs):
    results = real(*args, **kwargs)
    seen.append([kwargs["method"], len(results)])
    return results

verification.replay_spans = spy
store = SqlStore.open(sys.argv[1], migrate=False)
report = verification.verify(store, sys.argv[2], workers=3)
print(json.dumps({"start": verification.start_method(), "spans": seen, "report": report.to_json()}))
"""


def test_a_process_with_no_other_thread_forks_its_spans(tmp_path: Path) -> None:
    """``soulfra verify`` runs one thread: its span processes are forked, and report what one replay does."""
    url = f"sqlite:///{tmp_path / 'worlds.db'}"
    store = SqlStore.open(url)
    try:
        instance = _fill(store, agents=200)  # 130 ticks of 203 agents: worth more than one forked process
        one = verify(store, instance, workers=1)
    finally:
        store.close()
    ran = subprocess.run(
        [sys.executable, "-c", SPIED, url, instance], capture_output=True, text=True, timeout=90, check=False
    )
    assert ran.returncode == 0, ran.stderr
    found = json.loads(ran.stdout)
    assert found["start"] == "fork" and found["spans"] == [["fork", 3]]
    assert found["report"] == one.to_json() and one.ok


def test_a_process_with_another_thread_spawns_them() -> None:
    release = threading.Event()
    other = threading.Thread(target=release.wait, daemon=True)
    other.start()
    try:
        assert verification_spans.start_method() == "spawn"
    finally:
        release.set()
        other.join()
