"""``soulfra run`` with a model (``--model-url``): its language agents ask the fake model server (on a loop of its
own in a thread) while the world ticks; with --db every reply is recorded as an input, the report counts exactly
those, and the stored history replays to the run's hash with the server stopped. Without --model-url, or with the
endpoint unreachable, the same world falls back and records nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from soulfra.store import SqlStore
from soulfra.verification import verify
from soulfra.world.inputs import MindReply

from .fake_model import threaded
from .support import free_port, soulfra

pytestmark = pytest.mark.timeout(120)

WORLD = ["--seed", "5", "--agents", "6", "--language-agents", "--model", "fake-135m", "--ticks", "30", "--json"]


def run(*args: str) -> dict[str, Any]:
    result = soulfra("run", *WORLD, *args)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_a_run_with_a_model_records_every_reply_and_replays_without_it(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'run.db'}"
    with threaded() as fake:
        kept = run("--model-url", fake.url, "--model-timeout", "5", "--db", db)
        free = run("--model-url", fake.url, "--model-timeout", "5", "--events", str(tmp_path / "events.jsonl"))
        asked = fake.requests
    store = SqlStore.open(db)
    try:
        replies = [s.input for s in store.inputs.read(kept["instance"]) if isinstance(s.input, MindReply)]
        report = verify(store, kept["instance"])  # the server is stopped: the replay reads the recorded replies
    finally:
        store.close()
    assert replies and kept["minds"] == {"reply": len(replies)} and kept["minds_skipped"] == 0
    assert {r.model for r in replies} == {"fake-135m"} and all(r.decision is not None for r in replies)
    assert report.ok and report.state_hash == kept["state_hash"] and report.ticks == 30
    # the same world without --db asks the same deterministic server the same questions: the same replies, the
    # same hash (every reply was in by its due tick, within the 5 s budget)
    assert free["minds"] == kept["minds"] and free["state_hash"] == kept["state_hash"]
    assert asked >= 2 * len(replies)  # both runs asked (a thought pending at a run's end may have been asked too)
    decided = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    outcomes = [e["outcome"] for e in decided if e["kind"] == "mind_decided"]
    assert outcomes and set(outcomes) <= {"reply", "not-done"}  # acted on, or a decision the world could not take


def test_without_a_model_or_with_none_listening_the_agents_fall_back(tmp_path: Path) -> None:
    plain = run()
    assert "minds" not in plain
    unreachable = run("--model-url", f"http://127.0.0.1:{free_port()}/v1", "--model-timeout", "2")
    assert set(unreachable["minds"]) == {"unreachable"} and unreachable["minds"]["unreachable"] > 0
    # a failed call falls back as no call does: the same events (the hash differs: each mind_decided event names
    # its outcome, unreachable or no-reply, and the loop's digest holds the events)
    assert unreachable["events"] == plain["events"] and unreachable["state_hash"] != plain["state_hash"]


def test_thoughts_over_the_budget_are_not_asked_and_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOULFRA_MODEL_CALLS_PER_MINUTE", "4")  # read as `up` reads it
    with threaded() as fake:
        report = run("--model-url", fake.url, "--model-timeout", "0.3")
        asked = fake.requests
    assert report["minds"] == {"reply": 4} and asked == 4  # the minute's four calls, then none
    assert report["minds_skipped"] > 0
