"""``soulfra bench storage`` end to end, small: both sides keep the same world, and the figures are well formed."""

from __future__ import annotations

import json
import subprocess
import sys

from soulfra.bench.storage import SEED, _whispers
from soulfra.durable import replay
from soulfra.world import DEFAULT_WORLD


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "soulfra", "bench", "storage", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_bench_storage_keeps_the_same_world_on_both_sides() -> None:
    done = _bench("--sizes", "3,5", "--ticks", "200", "--reads", "4", "--intervals", "5,100", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [row["agents"] for row in result["rows"]] == [3, 5]
    for row in result["rows"]:
        ours, peer = row["soulfra"], row["langgraph"]
        assert ours["state_hash"] == replay(SEED, DEFAULT_WORLD, row["agents"] - 3, _whispers(200), 200)
        assert ours["bytes_per_tick"] > 0 and peer["bytes_per_tick"] > 0
        assert ours["fork_bytes"] <= peer["fork_bytes"]  # a fork references history; LangGraph copies a checkpoint
        assert row["bytes_langgraph_over_soulfra"] > 1
    assert [point["snapshot_every"] for point in result["curve"]] == [5, 100]
    sparse, dense = result["curve"][1], result["curve"][0]
    assert sparse["bytes_per_tick"] < dense["bytes_per_tick"]  # fewer snapshots store fewer bytes


def test_bench_storage_refuses_bad_sizes() -> None:
    done = _bench("--sizes", "2,x")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "soulfra: error: --sizes must be comma-separated whole numbers, got '2,x'"
    ]
