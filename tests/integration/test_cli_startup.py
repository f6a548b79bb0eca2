"""``soulfra --help``, ``--version``, every command's ``--help`` and the client commands start fast: they load no
server, world, storage or benchmark code (help loads no HTTP client either), and psutil (which only the benchmarks
use) is an optional dependency, in the ``bench`` extra."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import soulfra
from soulfra.cli import EXIT_USAGE, app, main

from .support import environment, free_port

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(soulfra.__file__).parent
# What no light command may load: the server stack, storage, the world, NATS, signing keys and the benchmarks.
HEAVY = (
    "fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "numpy", "nats", "cryptography", "psutil",
    "soulfra.api", "soulfra.bench", "soulfra.bus", "soulfra.codec", "soulfra.durable", "soulfra.meta",
    "soulfra.platforms", "soulfra.store", "soulfra.system", "soulfra.world", "soulfra.security.tokens",
)  # fmt: skip
# What a client command needs and help does not: the settings, and httpx with what httpx loads itself (zstandard, and
# the rich.progress and rich.live of its own command line, which it imports whenever click and rich are installed).
# Help loads none of them, nor the progress bars and live view of the long local commands; pydantic it does load
# (Typer 0.29 parses options with it).
CLIENT_ONLY = (
    "httpx", "zstandard", "asyncio", "pydantic_settings", "soulfra.settings", "rich.progress", "rich.live",
)  # fmt: skip
# Runs ``main`` with the arguments after the output file's name, then writes its exit code and every module loaded.
PROBE = """
import json, sys
out, args = sys.argv[1], sys.argv[2:]
from soulfra.cli import main
try:
    main(args)
except SystemExit as stop:
    code = stop.code
with open(out, "w", encoding="utf-8") as handle:
    json.dump({"code": code, "modules": sorted(sys.modules)}, handle)
"""


def _loaded(tmp_path: Path, *args: str) -> tuple[int, list[str], str]:
    """``soulfra ARGS`` in a fresh interpreter of an empty installation: its exit code, every module it loaded, and
    its stderr."""
    out = tmp_path / "probe.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        capture_output=True, text=True, timeout=60, check=False, env=environment(tmp_path / "home"),
    )  # fmt: skip
    assert out.exists(), done.stderr[-2000:]
    probe = json.loads(out.read_text(encoding="utf-8"))
    return int(probe["code"]), list(probe["modules"]), done.stderr


def _among(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [name for name in modules if name in names or name.startswith(tuple(f"{n}." for n in names))]


@pytest.mark.parametrize(
    "args",
    [("--version",), ("--help",), ("run", "--help"), ("up", "--help"), ("verify", "--help"),
     ("instance", "list", "--help"), ("god", "fork", "--help"), ("package", "edit", "--help")],
    ids="-".join,
)  # fmt: skip
def test_help_loads_no_heavy_module(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, modules, stderr = _loaded(tmp_path, *args)
    assert code == 0, stderr
    assert "soulfra.cli.commands" in modules  # the probe ran the CLI at all
    assert _among(modules, HEAVY + CLIENT_ONLY) == []


@pytest.mark.parametrize(
    "args",
    [("status",), ("whisper", "hello"), ("instance", "list"), ("pause",), ("god", "freeze", "world-0")],
    ids=lambda args: args[0] if len(args) == 1 else "-".join(args[:2]),
)
def test_a_client_command_loads_no_heavy_module(tmp_path: Path, args: tuple[str, ...]) -> None:
    """Against a port nothing listens on: the command gets as far as its request, and says so in its usual line."""
    url = f"http://127.0.0.1:{free_port()}"
    code, modules, stderr = _loaded(tmp_path, *args, "--url", url)
    assert (code, stderr.strip()) == (
        69, f"soulfra: error: no Soulfra server at {url} (ConnectError); start one with `soulfra up`"
    )  # fmt: skip
    assert "httpx" in modules  # it did try to reach the server
    assert _among(modules, HEAVY) == []


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
    assert commands == ["api", "cluster", "dashboard", "minds", "package", "tick", "storage"]
    shown = CliRunner().invoke(app, ["bench", "api", "--help"])
    assert shown.exit_code == 0, shown.output
    assert "Usage: soulfra bench api [OPTIONS]" in shown.output
    assert "--connections" in shown.output
    dashboard = CliRunner().invoke(app, ["bench", "dashboard", "--help"])
    assert dashboard.exit_code == 0, dashboard.output
    assert "--canvas-agents" in dashboard.output


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

    undescribed, listed, misworded = [], [], []
    for path, command in commands(typer.main.get_command(app)):
        for param in command.params:
            if param.param_type_name == "argument" and not getattr(param, "help", None):
                undescribed.append(f"{' '.join(path)} {param.name}")
        names = {name for param in command.params for name in getattr(param, "opts", ())}
        json_help = [getattr(p, "help", "") or "" for p in command.params if "--json" in getattr(p, "opts", ())]
        if "--db" in names and any("server's reply" in text for text in json_help):  # with --db, no server replies
            misworded.append(" ".join(path))
        shown = run(*path, "--help")
        assert shown.returncode == 0, (path, shown.stderr)
        options = [line for line in shown.stdout.splitlines() if line.lstrip().startswith("-")]
        if any("list[" in line for line in options):
            listed.append(" ".join(path))
    assert undescribed == []
    assert listed == []
    assert misworded == []
    assert len(commands(typer.main.get_command(app))) > 40  # the walk reached every command
