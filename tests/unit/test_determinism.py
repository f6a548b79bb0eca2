"""Same seed and inputs give the same state hash: twice in-process, and in fresh interpreters."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from soulfra.world import Input, Whisper, World, schedule


def run_hashes(seed: int, ticks: int, *, agents: int = 0, inputs: tuple[Input, ...] = ()) -> list[str]:
    world = World.create(seed, agents=agents)
    by_tick = schedule(inputs)
    hashes = []
    for _ in range(ticks):
        world.step(by_tick.get(world.tick, ()))
        hashes.append(world.state_hash())
    return hashes


def test_same_seed_gives_the_same_hash_at_every_tick() -> None:
    first = run_hashes(11, 120, agents=40)
    second = run_hashes(11, 120, agents=40)
    assert first == second
    assert len(set(first)) == 120  # every tick changes the state


def test_another_seed_gives_another_hash() -> None:
    assert run_hashes(11, 30)[-1] != run_hashes(12, 30)[-1]


def test_one_more_whisper_gives_another_hash() -> None:
    plain = run_hashes(11, 30)
    whispered = run_hashes(11, 30, inputs=(Whisper(tick=10, target="arty", text="look to the tides"),))
    assert plain[:10] == whispered[:10]
    assert plain[10:] != whispered[10:]
    assert all(a != b for a, b in zip(plain[10:], whispered[10:], strict=True))


def test_a_fresh_interpreter_gives_the_same_hash() -> None:
    expected = run_hashes(23, 150, agents=60)[-1]
    for hash_seed in ("0", "12345"):  # string hashing must not leak into the world
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-m", "soulfra", "run", "--seed", "23", "--ticks", "150", "--agents", "60", "--json"],
            capture_output=True, text=True, check=True, env=env, timeout=60,
        )  # fmt: skip
        assert json.loads(out.stdout)["state_hash"] == expected
