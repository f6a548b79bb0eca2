"""The README's examples run as written (in this process, through the real ``main``), and it documents every
`soulfra run` flag and every event kind."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from soulfra.world import EVENT_KINDS

from .support import soulfra

README = Path(__file__).parents[2] / "README.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, str, str]]:
    return [(m.group(1), m.group(2).strip(), m.group(3)) for m in FENCE.finditer(README.read_text(encoding="utf-8"))]


def test_readme_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = [(info, body) for _, info, body in blocks() if info.startswith("file=")]
    assert len(files) >= 2
    for info, body in files:
        (tmp_path / info.removeprefix("file=")).write_text(body, encoding="utf-8")
    commands = [
        line.removeprefix("$ ")
        for lang, _, body in blocks()
        if lang == "console"
        for line in body.splitlines()
        if line.startswith("$ soulfra ")
    ]
    assert len(commands) >= 4
    monkeypatch.chdir(tmp_path)  # the examples' relative paths
    for command in commands:
        args = shlex.split(command)[1:]
        done = soulfra(*args, home=tmp_path / "home")  # the installation key of the examples
        assert done.returncode == 0, f"{command}: {done.stderr}"
        if "--json" in args:
            assert json.loads(done.stdout)["state_hash"].startswith("b2:")
    assert (tmp_path / "events.jsonl").stat().st_size > 0


def test_readme_documents_every_run_flag_and_event_kind() -> None:
    text = README.read_text(encoding="utf-8")
    helped = soulfra("run", "--help")
    assert helped.returncode == 0, helped.stderr
    flags = set(re.findall(r"--[a-z][a-z-]+", helped.stdout)) - {"--help"}
    assert len(flags) >= 9
    assert {flag for flag in flags if f"`{flag}" not in text} == set()
    assert {kind for kind in EVENT_KINDS if f"`{kind}`" not in text} == set()
