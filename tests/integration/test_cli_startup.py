"""``soulfra --help`` and ``--version`` start fast: they load no world, storage or benchmark code, and psutil (which
only the benchmarks use) is an optional dependency, in the ``bench`` extra."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import soulfra
from soulfra.cli import EXIT_USAGE, app, main

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(soulfra.__file__).parent
HEAVY = ("sqlalchemy", "numpy", "psutil", "soulfra.bench")


def _imported(*args: str) -> list[str]:
    """Every module ``python -m soulfra ARGS`` imports, as ``-X importtime`` lists them."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "soulfra", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    names = [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "soulfra.cli" in names  # the listing is there at all
    return names


@pytest.mark.parametrize("args", [("--version",), ("--help",)], ids=["version", "help"])
def test_version_and_help_import_no_heavy_module(args: tuple[str, ...]) -> None:
    heavy = [name for name in _imported(*args) if name.split(".")[0] in HEAVY or name.startswith(HEAVY)]
    assert heavy == []


def test_psutil_is_a_bench_extra_not_a_core_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not [dep for dep in project["dependencies"] if dep.startswith("psutil")]
    assert [dep for dep in project["optional-dependencies"]["bench"] if dep.startswith("psutil")]


def test_only_the_benchmarks_import_psutil() -> None:
    offenders = []
    for path in sorted(SOURCE.rglob("*.py")):
        if path.is_relative_to(SOURCE / "bench"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            offenders += [f"{path.relative_to(SOURCE)}: {name}" for name in names if name.split(".")[0] == "psutil"]
    assert offenders == []


def test_the_bench_commands_load_when_asked_for() -> None:
    listed = CliRunner().invoke(app, ["bench", "--help"])
    assert listed.exit_code == 0, listed.output
    commands = [line.split()[0] for line in listed.output.split("Commands:")[1].splitlines() if line.strip()]
    assert commands == ["api", "package", "tick", "storage"]
    shown = CliRunner().invoke(app, ["bench", "api", "--help"])
    assert shown.exit_code == 0, shown.output
    assert "Usage: soulfra bench api [OPTIONS]" in shown.output
    assert "--connections" in shown.output


def test_a_benchmark_without_the_bench_extra_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "psutil", None)  # as if the bench extra were not installed
    for name in [name for name in sys.modules if name.startswith("soulfra.bench.package")]:
        monkeypatch.delitem(sys.modules, name)  # the package and its modules, so that they are imported anew
    with pytest.raises(SystemExit) as stopped:
        main(["bench", "package", "--part", "fork"])
    assert stopped.value.code == EXIT_USAGE
    assert capsys.readouterr().err.strip() == (
        "soulfra: error: `soulfra bench package` needs the bench extra (pip install 'soulfra[bench]'): no module psutil"
    )


def test_every_help_names_each_value_and_describes_each_argument() -> None:
    """No option shows its value as a Python type (`<list[str]>`), and every argument says what it is."""
    import typer.main  # noqa: PLC0415

    from .support import soulfra as run  # noqa: PLC0415

    def commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
        found = [(path, group)]
        for name, sub in getattr(group, "commands", {}).items():
            found += commands(sub, (*path, name))
        return found

    undescribed, listed = [], []
    for path, command in commands(typer.main.get_command(app)):
        for param in command.params:
            if param.param_type_name == "argument" and not getattr(param, "help", None):
                undescribed.append(f"{' '.join(path)} {param.name}")
        shown = run(*path, "--help")
        assert shown.returncode == 0, (path, shown.stderr)
        options = [line for line in shown.stdout.splitlines() if line.lstrip().startswith("-")]
        if any("list[" in line for line in options):
            listed.append(" ".join(path))
    assert undescribed == []
    assert listed == []
    assert len(commands(typer.main.get_command(app))) > 40  # the walk reached every command
