"""The README is a script: every shell and console block runs, in order, typed into one shell in a fresh directory
with a fresh home, exactly as written, and prints what the README shows. It also documents every `soulfra run` flag
and every event kind.

What the test changes, and why: the server's port (a free one, through ``SOULFRA_PORT`` and ``SOULFRA_URL``, and the
``localhost:8000`` the curl examples name, so that a server already on 8000 cannot answer in its place), the fixed
ports of the README's other servers (``FIXED_PORTS``: free ones too), and the PostgreSQL database's name (a fresh
one of the test's own, created with the README's own ``createdb`` and dropped afterwards). The set-up block's
``make`` lines are what runs this test, so they are checked to be targets of the Makefile, not run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from soulfra.world import EVENT_KINDS

from .readme_shell import STOPPED, Block, Ran, Shell, blocks, commands, matches
from .support import free_port, soulfra

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
# Figures that differ from run to run: the README shows them, the test checks only that they are there.
VOLATILE = {"agent_steps_per_s", "elapsed_s", "ticks_per_s"}


def readme() -> list[Block]:
    return blocks(README.read_text(encoding="utf-8"))


@pytest.fixture
def database(postgres_schema: str) -> Iterator[str]:
    """A name for the README's PostgreSQL database, unused on the server; dropped afterwards. (``postgres_schema``
    skips the test when PostgreSQL is unreachable, and fails it under CI=true.)"""
    name = f"soulfra_readme_{secrets.token_hex(4)}"
    yield name
    subprocess.run(["dropdb", "--if-exists", "--force", "-h", "127.0.0.1", name], check=False, capture_output=True)


def shown(expected: Any, actual: Any, where: str) -> list[str]:
    """How ``actual`` differs from the JSON the README shows (``…`` in a string stands for any text; a key ``…``
    for any others; a figure in VOLATILE need only be there)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: shown an object, got {actual!r}"]
        problems = []
        for key, value in expected.items():
            if key == "…":
                continue
            if key not in actual:
                problems.append(f"{where}.{key}: shown, missing")
            elif key not in VOLATILE:
                problems += shown(value, actual[key], f"{where}.{key}")
        return problems
    if isinstance(expected, str) and "…" in expected:
        return (
            []
            if isinstance(actual, str) and matches(expected, actual)
            else [f"{where}: shown {expected!r}, got {actual!r}"]
        )
    return [] if expected == actual else [f"{where}: shown {expected!r}, got {actual!r}"]


@pytest.mark.slow  # about three minutes: collected first, so it is not the run's tail
@pytest.mark.timeout(900)
def test_the_readme_runs_in_order_as_written(tmp_path: Path, database: str) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    port = free_port()
    others = {fixed: free_port() for fixed in FIXED_PORTS}  # the README's other servers, on free ports too
    env = {key: value for key, value in os.environ.items() if not key.startswith("SOULFRA_")}
    env |= {"HOME": str(home), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
            "SOULFRA_PORT": str(port), "SOULFRA_URL": f"http://127.0.0.1:{port}", "COLUMNS": "120"}  # fmt: skip
    shell = Shell(work, env)
    ran: list[Ran] = []
    problems: list[str] = []  # every difference, not only the first: a README fix is made in one go
    try:
        for block in readme():
            if block.info.startswith("file="):
                (work / block.info.removeprefix("file=")).write_text(block.body, encoding="utf-8")
            elif block.lang == "json" and ran:
                problems += _check_json(block, ran[-1])
            elif block.lang in ("sh", "console"):
                steps = commands(block)
                for index, step in enumerate(steps):
                    text = _local(step.text, port, database, others)
                    if text.startswith("make "):
                        _check_make_target(text)
                        continue
                    done = shell.run(text)
                    ran.append(done)
                    shown_code = index + 1 < len(steps) and steps[index + 1].text.strip() == "echo $?"
                    if done.code not in (STOPPED if done.stopped else (0,)) and not shown_code:
                        problems.append(
                            f"line {block.line}: {step.text!r} exited {done.code}: {done.err.strip()[-1500:]}"
                        )
                    problems += [
                        f"line {block.line}: {step.text!r} should print {line!r}, printed:\n{done.out}{done.err}"
                        for line in step.expected
                        if not matches(line, done.out + done.err)
                    ]
    except BaseException:
        with contextlib.suppress(Exception):  # the failure that stopped the run is the one to report
            shell.close()
        raise
    codes = shell.close()
    assert not problems, "the README does not run as written:\n" + "\n".join(problems)
    assert len(ran) >= 60
    assert set(codes.values()) <= set(STOPPED), f"a server the README left running did not stop cleanly: {codes}"


# Ports the README's examples name for servers beside the main one (gateways, probes, HTTPS): free ones in the test.
FIXED_PORTS = (8001, 8002, 8443, 9000, 9464, 9465)


def _local(command: str, port: int, database: str, others: dict[int, int]) -> str:
    """The command with the test's own ports and database (see the module's docstring)."""
    command = command.replace("localhost:8000", f"localhost:{port}")
    command = re.sub(
        r"(?<=[ :])(" + "|".join(map(str, others)) + r")\b", lambda found: str(others[int(found[1])]), command
    )
    command = re.sub(r"postgresql://localhost/soulfra\b", f"postgresql://localhost/{database}", command)
    return re.sub(r"\b(createdb|dropdb) soulfra\b", rf"\1 {database}", command)


def _check_make_target(command: str) -> None:
    target = command.split("#", maxsplit=1)[0].split()[1]
    done = subprocess.run(["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"the README's {command!r} is no target of the Makefile: {done.stderr}"


def _check_json(block: Block, last: Ran) -> list[str]:
    try:
        actual = json.loads(last.out)
    except ValueError:
        return [f"line {block.line}: {last.command!r} printed no JSON: {last.out[:300]!r}"]
    return [f"line {block.line}: {last.command!r}: {problem}" for problem in shown(json.loads(block.body), actual, "$")]


def test_readme_documents_every_run_flag_and_event_kind() -> None:
    text = README.read_text(encoding="utf-8")
    helped = soulfra("run", "--help")
    assert helped.returncode == 0, helped.stderr
    flags = set(re.findall(r"--[a-z][a-z-]+", helped.stdout)) - {"--help"}
    assert len(flags) >= 9
    assert {flag for flag in flags if f"`{flag}" not in text} == set()
    assert {kind for kind in EVENT_KINDS if f"`{kind}`" not in text} == set()


def test_the_shell_reads_commands_and_output_as_a_user_would() -> None:
    console = Block("console", "", '$ soulfra run --seed 1 \n{"a": 1}\n…b…\n$ echo $?\n0\n', 1)
    assert [(c.text, c.expected) for c in commands(console)] == [
        ("soulfra run --seed 1 ", ('{"a": 1}', "…b…")), ("echo $?", ("0",))]  # fmt: skip
    sh = Block("sh", "", "# a comment\nsoulfra a \\\n  --b 1   # why\n\nsoulfra c '# not a comment'\n", 1)
    assert [c.text for c in commands(sh)] == ["soulfra a  --b 1   # why", "soulfra c '# not a comment'"]
    assert matches("prints … then", "x\n  prints 42 then \n") and not matches("prints … then", "prints 42")
    assert shown({"a": "b2:…", "…": 0, "elapsed_s": 1}, {"a": "b2:ff", "elapsed_s": 2, "z": 1}, "$") == []
    assert shown({"a": 1}, {"a": 2}, "$") == ["$.a: shown 1, got 2"]
