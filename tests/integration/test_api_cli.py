"""The CLI as a client of a real ``soulfra up`` process: status, whisper, pause and resume, snapshots and override,
and the exit code when no server answers."""

from __future__ import annotations

import json
import re

import pytest

from .api_support import (
    BASE,
    INSTANCE,
    PLATFORM_NAMES,
)
from .support import Server, soulfra, soulfra_at

# In the xdist group of the API's tests, as when they were one module (whose shared server they ran beside).
pytestmark = pytest.mark.xdist_group("test_api")


# -- the CLI client ------------------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_cli_client_commands(own: Server) -> None:
    url = own.url
    status = soulfra_at(own.home, "status", "--url", url)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0] == f"instance {INSTANCE}"
    for name in PLATFORM_NAMES:
        assert re.search(rf"^  {name}\s+\S+", status.stdout, re.MULTILINE)
    assert re.search(r"^  runtime\s+running\s+tick \d+", status.stdout, re.MULTILINE)
    assert re.search(r"^  protocol\s+\S+\s+\(no ticks of its own\)", status.stdout, re.MULTILINE)

    whispered = soulfra_at(own.home, "whisper", "hello from the cli", "--to", "arty", "--url", url)
    assert whispered.returncode == 0, whispered.stderr
    match = re.fullmatch(r"whisper (\d+) stored; applies at tick (\d+)\n", whispered.stdout)
    assert match, whispered.stdout
    seq, tick = int(match[1]), int(match[2])
    with own.client() as api:
        logged = api.get(f"{BASE}/inputs").json()["inputs"]
    assert {"seq": seq, "tick": tick, "type": "whisper", "text": "hello from the cli"} in [
        {"seq": r["seq"], "tick": r["tick"], "type": r["input"]["type"], "text": r["input"].get("text")} for r in logged
    ]

    paused = soulfra_at(own.home, "pause", "--url", url)
    assert paused.returncode == 0, paused.stderr
    assert re.fullmatch(rf"{INSTANCE} paused at tick \d+\n", paused.stdout)
    resumed = soulfra_at(own.home, "resume", "--url", url)
    assert resumed.returncode == 0, resumed.stderr
    assert re.fullmatch(rf"{INSTANCE} resumed at tick \d+\n", resumed.stdout)

    snap = soulfra_at(own.home, "snapshot", "--url", url)
    assert snap.returncode == 0, snap.stderr
    assert re.fullmatch(r"snapshot \d+ at tick \d+: b2:[0-9a-f]{64}\n", snap.stdout), snap.stdout
    unified = soulfra_at(own.home, "snapshot", "--unified", "--url", url)
    assert unified.returncode == 0, unified.stderr
    assert re.fullmatch(
        r"unified snapshot \d+ at tick \d+: system hash [0-9a-f]{16}, \d+ conflicts, runtime paused [0-9.]+ ms\n",
        unified.stdout,
    ), unified.stdout
    as_json = soulfra_at(own.home, "snapshot", "--json", "--url", url)
    assert as_json.returncode == 0, as_json.stderr
    taken = json.loads(as_json.stdout)
    assert taken["type"] == "manual" or (taken["type"] in ("periodic", "loop-seal") and taken["tick"] % 20 == 0)

    overridden = soulfra_at(own.home, "override", "--reason", "cli test", "--url", url)
    assert overridden.returncode == 0, overridden.stderr
    assert re.fullmatch(rf"{INSTANCE} stopped by emergency override at tick \d+\n", overridden.stdout)
    refused = soulfra_at(own.home, "whisper", "x", "--url", url)
    assert refused.returncode == 75, (refused.stdout, refused.stderr)
    assert refused.stdout == ""
    assert refused.stderr.startswith("soulfra: error:")
    assert "Traceback" not in refused.stderr
    halted = soulfra_at(own.home, "status", "--url", url)
    assert halted.returncode == 0, halted.stderr
    assert re.search(r"^  runtime\s+overridden", halted.stdout, re.MULTILINE)
    assert soulfra_at(own.home, "resume", "--url", url).returncode == 0
    again = soulfra_at(own.home, "whisper", "x", "--url", url)
    assert again.returncode == 0, again.stderr


def test_cli_without_a_server_exits_69() -> None:
    done = soulfra("status", "--url", "http://127.0.0.1:1")
    assert done.returncode == 69
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("soulfra: error:")
    assert "Traceback" not in done.stderr
