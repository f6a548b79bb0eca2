"""``soulfra bench api`` end to end, short: both servers measured on every endpoint, the figures well formed."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from soulfra.bench.api import ENDPOINTS, api_command, render


@pytest.mark.slow
def test_bench_api_measures_both_servers_and_the_snapshot_pause(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(api_command)
    out = tmp_path / "api.json"
    args = ["--seconds", "0.5", "--warmup", "0.1", "--connections", "4", "--agents", "20", "--snapshots", "3"]
    args += ["--pause-agents", "30"]
    done = CliRunner().invoke(app, [*args, "--out", str(out), "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(out.read_text())
    assert json.loads(done.output) == result
    assert result["benchmark"] == "api"
    assert (result["connections"], result["agents"]) == (4, 20)
    assert [row["path"] for row in result["rows"]] == list(ENDPOINTS)
    for row in result["rows"]:
        ours, bare = row["soulfra"], row["bare"]
        for side in (ours, bare):
            assert side["requests"] > 0
            assert side["errors"] == 0, side["error_kinds"]
            assert side["rps"] > 0
            assert 0 < side["p50_ms"] <= side["p99_ms"] <= side["max_ms"]
        assert ours["ticks_per_s"] > 0  # the runtime ticked while the API answered
        assert bare["body_bytes"] > 0
        assert row["rps_ratio"] == pytest.approx(ours["rps"] / bare["rps"], abs=1e-3)
    pause = result["unified_snapshot"]
    assert pause["agents"] == 30
    assert len(pause["pause_ns"]) == pause["snapshots"] == 3
    assert all(ns > 0 for ns in pause["pause_ns"])
    assert pause["pause_max_ms"] == pytest.approx(max(pause["pause_ns"]) / 1e6, abs=1e-3)
    access = result["access"]
    assert set(access) == {"surface", "authenticated"}
    assert access["authenticated"]["on"]["path"].endswith("/agents?limit=20")
    for row in access.values():
        for side in (row["on"], row["off"]):
            assert side["requests"] > 0
            assert side["errors"] == 0, side["error_kinds"]  # the token was let in; nothing refused
        assert row["rps_ratio"] == pytest.approx(row["on"]["rps"] / row["off"]["rps"], abs=1e-3)
    targets = result["targets"]
    assert set(targets) == {"rps_ratio", "p99_ms", "access_ratio", "pause_ms"}
    assert targets["access_ratio"]["worst"] == min(row["rps_ratio"] for row in access.values())
    assert targets["rps_ratio"]["worst"] == min(row["rps_ratio"] for row in result["rows"])
    assert targets["p99_ms"]["worst"] == max(row["soulfra"]["p99_ms"] for row in result["rows"])
    assert all(isinstance(target["pass"], bool) for target in targets.values())
    assert result["machine"]["cpus"] >= 1
    assert set(result["versions"]) == {"fastapi", "starlette", "uvicorn", "httpx"}
    shown = io.StringIO()
    Console(file=shown, width=160).print(render(result))
    assert "/api/agents/echo" in shown.getvalue()
    assert "snapshot pause" in shown.getvalue()
    assert "access control on and off" in shown.getvalue()
