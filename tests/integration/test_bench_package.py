"""``soulfra bench package`` end to end, tiny: every part measured, every figure in the JSON and well formed."""

from __future__ import annotations

import io
import json
import statistics
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from soulfra.bench.package import package_command, render, run_package_bench
from soulfra.errors import ConfigError

TINY: dict[str, Any] = {
    "agents": 50, "ticks": 40, "instances": 20, "instance_agents": 5, "window": 2.0,
    "saturation_instances": 5, "saturation_ticks": 50,
}  # fmt: skip


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=160)


def _check_many(many: dict[str, Any], *, instances: int, sample: tuple[int, int]) -> None:
    """The many instances' figures, with the saturation sample of ``sample`` (instances, ticks) and the projection."""
    assert many["instances"] == instances
    assert many["ticks_achieved"] > 0
    rounding = 0.05 / many["ticks_expected"] + 1e-4  # ticks_expected is rounded to 0.1, the rate kept to 1e-4
    assert many["tick_rate_kept"] == pytest.approx(many["ticks_achieved"] / many["ticks_expected"], abs=rounding)
    assert many["peak_rss_bytes"] >= many["rss_before_bytes"] > 0
    assert many["failed_instances"] == 0
    assert many["created_s"] > 0
    assert many["loop_lag_max_ms"] >= many["loop_lag_p99_ms"] >= many["loop_lag_p50_ms"]

    saturation = many["saturation"]
    count, ticks = sample
    assert (saturation["instances"], saturation["ticks"]) == sample
    assert saturation["agents_per_instance"] == many["agents_per_instance"]
    assert saturation["ticks_per_instance_max"] >= ticks
    assert saturation["ticks_per_s"] > 0
    before, after = saturation["rss_before_bytes"], saturation["rss_saturated_bytes"]
    assert after >= before > 0  # a tiny sample may fit in memory the process already holds
    assert saturation["bytes_per_instance"] == round((after - before) / count)
    assert saturation["kib_per_instance"] == pytest.approx(saturation["bytes_per_instance"] / 1024, abs=0.1)
    assert saturation["kib_per_instance"] >= 0
    curve = saturation["kib_per_instance_by_ticks"]
    assert [at for at, _ in curve] == [0, *(mark for mark in (500, 1000) if mark < ticks), ticks]
    assert curve[-1][1] == saturation["kib_per_instance"]
    projected = many["projected_steady_rss_bytes"]
    assert projected == many["rss_before_bytes"] + instances * saturation["bytes_per_instance"] > 0
    assert many["steady_rss_bytes"] == max(many["peak_rss_bytes"], projected)


def _check_memory_target(many: dict[str, Any], memory: dict[str, Any]) -> None:
    """The memory verdict is on the larger of the window's peak and the projected steady state."""
    assert (memory["peak"], memory["projected"]) == (many["peak_rss_bytes"], many["projected_steady_rss_bytes"])
    assert memory["measured"] == many["steady_rss_bytes"] == max(memory["peak"], memory["projected"])
    assert memory["basis"] == ("projected" if memory["projected"] >= memory["peak"] else "peak")
    assert memory["pass"] is (memory["measured"] < 2 << 30)


@pytest.mark.slow
def test_bench_package_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "package.json"
    returned = run_package_bench(**TINY, out=out, console=_quiet())
    result = json.loads(out.read_text())
    assert result == returned
    assert result["benchmark"] == "package"
    assert {key: result["settings"][key] for key in ("agents", "ticks", "instances", "instance_agents")} == {
        "agents": 50, "ticks": 40, "instances": 20, "instance_agents": 5,
    }  # fmt: skip

    package = result["package"]
    assert (package["agents"], package["ticks"]) == (50, 40)
    assert package["inputs"] > 0  # the whispers
    assert package["package_bytes"] > 0
    assert package["gzip_json_bytes"] > 0
    assert package["json_bytes"] > package["gzip_json_bytes"]
    assert package["size_ratio"] == pytest.approx(package["package_bytes"] / package["gzip_json_bytes"], abs=1e-4)
    raw = package["raw_bytes_by_entry"]
    assert package["raw_bytes"] == sum(size for name, size in raw.items() if name.endswith(".zst")) > 0
    for key in ("write_ms", "read_ms", "store_ms", "bundle_ms", "peer_write_ms", "peer_read_ms", "peer_build_ms"):
        assert package[key] > 0, key
    samples = package["samples_ms"]
    imports = [r + s for r, s in zip(samples["read"], samples["store"], strict=True)]
    assert package["import_ms"] == pytest.approx(statistics.median(imports), abs=1e-2)
    for speed, took in (("export_mb_s", "write_ms"), ("import_mb_s", "import_ms")):
        megabytes_per_s = package["raw_bytes"] / 1e6 / (package[took] / 1000)
        assert package[speed] == pytest.approx(megabytes_per_s, rel=0.01, abs=0.01), speed
    assert all(len(laps) == package["repeats"] for laps in samples.values())

    fork = result["fork"]
    assert fork["tick"] == 40  # a periodic snapshot's tick
    for kind in ("fork", "clone", "copy"):
        side = fork[kind]
        assert len(side["samples_ms"]) == side["repeats"] == 20
        assert 0 < side["p50_ms"] <= side["max_ms"]
        assert side["instance_row_bytes"] > 0
    assert fork["fork"]["history_bytes_copied"] == 0
    assert fork["clone"]["history_bytes_copied"] == 0
    assert fork["fork"]["own_modification_bytes"] == 0
    assert fork["clone"]["own_modification_bytes"] > 0  # the clone's one input, and only it
    assert fork["clone"]["bytes_grown_by_table"]["inputs"] == fork["clone"]["own_modification_bytes"]
    assert fork["copy"]["history_bytes_copied"] >= 20 * fork["snapshot_stored_bytes"] > 0  # the peer copies
    assert fork["materialise"]["p50_ms"] > 0

    many = result["instances"]
    _check_many(many, instances=20, sample=(5, 50))

    targets = result["targets"]
    assert set(targets) == {
        "package_size_ratio", "export_mb_s", "import_mb_s", "fork_ms", "clone_ms", "history_bytes_copied",
        "rss_bytes", "tick_rate_kept", "compact_package_size_ratio", "compact_export_mb_s", "compact_import_mb_s",
    }  # fmt: skip
    assert all(isinstance(target["pass"], bool) for target in targets.values())
    assert targets["history_bytes_copied"]["pass"] is True
    assert targets["package_size_ratio"]["measured"] == package["size_ratio"]
    assert targets["compact_package_size_ratio"]["measured"] == package["compact_size_ratio"]
    assert package["compact_package_bytes"] < package["package_bytes"]
    assert "state/head.zst" not in package["compact_entries"]
    _check_memory_target(many, targets["rss_bytes"])
    shown = io.StringIO()
    Console(file=shown, width=200).print(render(result))
    for words in ("gzip JSON", "copy (peer)", "tick rate kept", "history_bytes_copied", "projected steady"):
        assert words in shown.getvalue()


def test_bench_package_runs_one_part_from_the_command_line(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(package_command)
    out = tmp_path / "fork.json"
    done = CliRunner().invoke(app, ["--part", "fork", "--agents", "10", "--ticks", "20", "--out", str(out), "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(out.read_text())
    assert set(result) >= {"fork", "targets", "settings"}
    assert "package" not in result
    assert "instances" not in result
    assert set(result["targets"]) == {"fork_ms", "clone_ms", "history_bytes_copied"}


@pytest.mark.slow
def test_bench_package_runs_the_instances_part_with_its_saturation_sample_from_the_command_line(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(package_command)
    out = tmp_path / "instances.json"
    options = [
        "--part", "instances", "--instances", "8", "--instance-agents", "3", "--window", "1",
        "--saturation-instances", "3", "--saturation-ticks", "30", "--out", str(out), "--json",
    ]  # fmt: skip
    done = CliRunner().invoke(app, options)
    assert done.exit_code == 0, done.output
    result = json.loads(out.read_text())
    assert "package" not in result
    assert "fork" not in result
    assert (result["settings"]["saturation_instances"], result["settings"]["saturation_ticks"]) == (3, 30)
    _check_many(result["instances"], instances=8, sample=(3, 30))
    assert set(result["targets"]) == {"rss_bytes", "tick_rate_kept"}
    _check_memory_target(result["instances"], result["targets"]["rss_bytes"])


def test_bench_package_refuses_an_unknown_part(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--part must be one of"):
        run_package_bench(**TINY, out=tmp_path / "x.json", console=_quiet(), part="everything")


def test_bench_package_refuses_an_empty_saturation_sample(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="saturation"):
        run_package_bench(**{**TINY, "saturation_ticks": 0}, out=tmp_path / "x.json", console=_quiet())
