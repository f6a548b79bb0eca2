"""``soulfra bench minds --quick`` end to end against the fake model server (no local model needed): the figures are
well formed, the model was asked, and the recorded world replays to the same hash without it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from soulfra.bench.minds import LOCAL_MODEL, TARGET_REPLAY_SPEEDUP, _targets
from soulfra.cli import model

from .fake_model import FakeModel

SECRET = "sk-bench-do-not-show"
ROW_KEYS = {
    "agents", "ticks", "seconds", "thoughts", "recorded", "decisions", "parsed", "outcomes", "decisions_per_s",
    "latency_p50_ms", "latency_p99_ms", "ticks_per_s", "worst_tick_delay_s",
}  # fmt: skip
REPLAY_KEYS = {
    "agents", "ticks", "replies", "run_s", "run_ticks_per_s", "replay_s", "replay_ticks_per_s", "speedup",
    "state_hash", "replay_state_hash", "hash_matched", "verified",
}  # fmt: skip


async def _bench(*args: str, key: str | None = None) -> tuple[int, str, str]:
    env = {name: value for name, value in os.environ.items() if name != "SOULFRA_MODEL_KEY"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "soulfra", "bench", "minds", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env if key is None else {**env, "SOULFRA_MODEL_KEY": key},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=240)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.anyio
async def test_bench_minds_quick_against_the_fake_model(tmp_path: Path) -> None:
    async with FakeModel() as fake:
        code, out, err = await _bench(
            "--quick", "--json", "--model-url", fake.url, "--sizes", "3,12", "--ticks", "8", "--rate", "20",
            "--replay-ticks", "60", "--out", str(tmp_path / "minds.json"), key=SECRET,
        )  # fmt: skip
    assert code == 0, err
    assert fake.authorization == {f"Bearer {SECRET}"} and SECRET not in out + err
    result = json.loads(out)
    assert json.loads((tmp_path / "minds.json").read_text()) == result
    assert result["machine"]["cpus"] >= 1
    assert result["benchmark"] == "minds" and result["rate"] == 20 and result["wait"] is True
    assert [row["agents"] for row in result["rows"]] == [3, 12]
    for row in result["rows"]:
        assert set(row) == ROW_KEYS
        assert row["ticks"] == 8
        assert row["recorded"] == sum(n for outcome, n in row["outcomes"].items() if outcome not in {"skipped", "late"})
        assert row["parsed"] == row["decisions"] <= row["recorded"]  # the fake answers every call with a decision
        assert row["ticks_per_s"] > 0 and row["worst_tick_delay_s"] >= 0
    assert sum(row["decisions"] for row in result["rows"]) > 0
    replayed = result["replay"]
    assert set(replayed) == REPLAY_KEYS
    assert replayed["ticks"] == 60 and replayed["replies"] > 0
    assert replayed["hash_matched"] and replayed["verified"]
    assert replayed["state_hash"] == replayed["replay_state_hash"]
    assert fake.requests >= replayed["replies"]
    assert set(result["targets"]) == {"worst_tick_delay_s", "replay_speedup"}


@pytest.mark.anyio
async def test_bench_minds_refuses_bad_sizes() -> None:
    code, _out, err = await _bench("--sizes", "2,x", "--model-url", "http://127.0.0.1:9/v1")
    assert code == 2
    assert err.strip().splitlines() == ["soulfra: error: --sizes must be comma-separated whole numbers, got '2,x'"]


def test_the_replay_target_needs_the_speedup_and_the_same_hash() -> None:
    row = {"worst_tick_delay_s": 1.0}
    fast = {"speedup": TARGET_REPLAY_SPEEDUP, "hash_matched": True, "run_ticks_per_s": 5.0}
    judged = _targets([row], fast, timeout=2.0)
    assert judged["replay_speedup"]["met"] and judged["worst_tick_delay_s"]["met"]
    assert not _targets([row], {**fast, "hash_matched": False}, timeout=2.0)["replay_speedup"]["met"]
    assert not _targets([row], {**fast, "speedup": 99.9}, timeout=2.0)["replay_speedup"]["met"]
    assert not _targets([{"worst_tick_delay_s": 2.6}], fast, timeout=2.0)["worst_tick_delay_s"]["met"]


def test_the_bench_asks_for_the_model_under_the_name_the_local_server_gives_it() -> None:
    assert LOCAL_MODEL == model.LOCAL_MODEL
