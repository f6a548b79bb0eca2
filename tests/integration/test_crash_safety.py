"""Crash safety of ``soulfra run --db``: a persisted run is killed with SIGKILL at random moments, restarted, and
shown to have lost no acknowledged input, with a recovered state equal to a clean replay of its durable log.

Runs on SQLite and PostgreSQL. The moments are drawn from a seeded ``random.Random``; the seed is in every
assertion message (set ``SOULFRA_CRASH_SEED`` to replay a failing choice of moments).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from soulfra.durable import resolve_instance, state_at
from soulfra.store import SqlStore
from soulfra.verification import replay
from soulfra.world import DEFAULT_WORLD, Whisper
from soulfra.world.encoding import state_hash

from .support import ACK_TIMEOUT, RunningWorld

WORLD_SEED = 11
RATE = "500"  # ticks per second: the world moves between acknowledgements, but not absurdly fast
SNAPSHOT_EVERY = "50"  # so group commits (every 32 ticks) fall between snapshots too
CYCLES = 5
MOMENTS = ("after-ack", "after-ticks", "mid-burst", "idle")
POLL = 0.002


@dataclass(frozen=True, slots=True)
class Acked:
    seq: int
    tick: int
    text: str


@dataclass(slots=True)
class Trail:
    """What the test did, for assertion messages: the seed of the moments, and each cycle's choices."""

    seed: int
    steps: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"SOULFRA_CRASH_SEED={self.seed}; " + "; ".join(self.steps)


def _acknowledge(world: RunningWorld, text: str, trail: Trail, *, tick: int | None = None) -> Acked:
    obj: dict[str, Any] = {"type": "whisper", "target": "arty", "text": text}
    if tick is not None:
        obj["tick"] = tick
    world.send(obj)
    reply = world.read(f"waiting for the ack of {text!r} ({trail})")
    assert "ack" in reply, f"{text!r} was not acknowledged: {reply} ({trail})"
    assert reply["line"] == world.sent, f"{reply} answers another line ({trail})"
    if tick is not None:
        assert reply["tick"] == tick, f"{reply} is not stamped for tick {tick} ({trail})"
    return Acked(seq=reply["ack"], tick=reply["tick"], text=text)


def _wait_for_head(url: str, target: int, trail: Trail) -> int:
    """Wait (with a deadline) until the run has durably reached ``target``: it just group-committed."""
    store = SqlStore.open(url, migrate=False)
    try:
        deadline = time.monotonic() + ACK_TIMEOUT
        while (head := resolve_instance(store, None).head_tick) < target:
            assert time.monotonic() < deadline, f"the run never committed tick {target} ({trail})"
            time.sleep(POLL)  # polling the database for the condition, not waiting for luck
        return head
    finally:
        store.close()


def _crash_cycle(url: str, cycle: int, moment: str, rng: random.Random, trail: Trail, *, future: bool) -> list[Acked]:
    """One life of the run: some acknowledged inputs, then SIGKILL at ``moment``, details drawn from ``rng``."""
    world = RunningWorld(url, seed=WORLD_SEED, rate=RATE, snapshot_every=SNAPSHOT_EVERY)
    acked: list[Acked] = []
    number = 0

    def whisper(tick: int | None = None) -> Acked:
        nonlocal number
        number += 1
        done = _acknowledge(world, f"cycle {cycle} #{number}", trail, tick=tick)
        acked.append(done)
        return done

    try:
        now = whisper().tick
        for _ in range(rng.randint(0, 8)):
            now = whisper().tick
        if future:  # acknowledged for ticks this life will never reach
            for _ in range(rng.randint(1, 3)):
                whisper(tick=now + rng.randint(300, 600))
        if moment == "after-ticks":  # let the world cross a group commit or a snapshot first
            target = now + rng.randint(5, 80)
            while now < target:
                now = whisper().tick
        elif moment == "mid-burst":  # lines in flight: some acknowledged, the rest maybe stored, maybe not
            burst, first_line = rng.randint(2, 6), world.sent + 1
            for extra in range(burst):
                world.send({"type": "whisper", "target": "arty", "text": f"cycle {cycle} burst {extra}"})
            for extra in range(rng.randint(0, burst)):
                reply = world.read(f"burst ack ({trail})")
                assert reply.get("line") == first_line + extra, f"{reply} ({trail})"
                acked.append(Acked(seq=reply["ack"], tick=reply["tick"], text=f"cycle {cycle} burst {extra}"))
        elif moment == "idle":  # no inputs for a while: killed just after a group commit or snapshot
            now = _wait_for_head(url, now + rng.randint(20, 130), trail)
        stamped = [ack.tick for ack in acked if ack.tick > now]
        trail.steps.append(
            f"cycle {cycle}: {len(acked)} acks (for ticks {stamped} ahead), kill {moment} near tick {now}"
        )
    finally:
        world.kill()
    return acked


def _logged(url: str) -> tuple[str, int, dict[int, Acked], list[Whisper]]:
    store = SqlStore.open(url)
    try:
        record = resolve_instance(store, None)
        stored = store.inputs.read(record.id)
    finally:
        store.close()
    by_seq = {}
    items = []
    for entry in stored:
        assert isinstance(entry.input, Whisper)
        by_seq[entry.seq] = Acked(seq=entry.seq, tick=entry.tick, text=entry.input.text)
        items.append(entry.input)
    return record.id, record.head_tick, by_seq, items


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigkill_at_random_moments_loses_no_acknowledged_input(db_url: str) -> None:
    seed = int(os.environ.get("SOULFRA_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    trail = Trail(seed)
    acknowledged: list[Acked] = []
    future_cycles = {1, CYCLES - 1}  # the first life, and the last one before the clean end
    moments = [*MOMENTS, *(rng.choice(MOMENTS) for _ in range(CYCLES - len(MOMENTS)))]
    rng.shuffle(moments)  # every kind of moment at least once
    for cycle, moment in enumerate(moments, start=1):
        acknowledged += _crash_cycle(db_url, cycle, moment, rng, trail, future=cycle in future_cycles)
        _, head, logged, _ = _logged(db_url)
        for ack in acknowledged:  # (a), after every crash, not only at the end
            assert logged.get(ack.seq) == ack, f"acknowledged {ack} is not in the log as acked ({trail})"
        if cycle in future_cycles:  # the killed run acknowledged inputs for ticks it never reached
            assert any(ack.tick > head for ack in acknowledged), f"nothing stamped beyond head {head} ({trail})"

    # a last life that ends normally, past every input stamped for the future
    _, head, _, _ = _logged(db_url)
    ticks = max(ack.tick for ack in acknowledged) - head + 25
    command = ["run", "--db", db_url, "--seed", str(WORLD_SEED), "--ticks", str(ticks)]
    command += ["--snapshot-every", SNAPSHOT_EVERY, "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "soulfra", *command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{done.stderr} ({trail})"
    report = json.loads(done.stdout)
    assert (report["start_tick"], report["tick"]) == (head, head + ticks), f"{report} ({trail})"

    instance_id, head_tick, logged, items = _logged(db_url)
    assert head_tick == report["tick"], trail
    # (a) every acknowledged input, with its seq, tick and text
    for ack in acknowledged:
        assert logged.get(ack.seq) == ack, f"acknowledged {ack} lost or changed: {logged.get(ack.seq)} ({trail})"
    assert sorted(logged) == list(range(1, len(logged) + 1)), f"seqs have gaps: {sorted(logged)} ({trail})"
    # (b) the recovered state is a clean replay of the durable log
    clean = replay(WORLD_SEED, DEFAULT_WORLD, 0, items, head_tick)
    store = SqlStore.open(db_url)
    try:
        recovered = state_hash(state_at(store, instance_id, head_tick))
        heard = {(r.tick, r.data["text"]) for r in store.rituals.read(instance_id, kinds=("whisper_heard",))}
    finally:
        store.close()
    assert recovered == clean, f"recovered {recovered} != clean replay {clean} ({trail})"
    assert report["state_hash"] == clean, f"the final run's hash is not the clean replay ({trail})"
    assert clean != replay(WORLD_SEED, DEFAULT_WORLD, 0, [], head_tick), "the inputs made no difference"
    # the inputs stamped for ticks a killed run never reached were applied after the restart
    for ack in acknowledged:
        assert (ack.tick, ack.text) in heard, f"{ack} was never heard ({trail})"
    # (c) the whole history verifies
    verified = subprocess.run(
        [sys.executable, "-m", "soulfra", "verify", "--db", db_url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verified.returncode == 0, f"{verified.stdout} {verified.stderr} ({trail})"
    verdict = json.loads(verified.stdout)
    assert verdict["ok"] and verdict["state_hash"] == clean and verdict["ticks"] == head_tick, trail
