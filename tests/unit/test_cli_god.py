"""What `soulfra god merge` prints: a summary by domain a person reads, every field with --verbose (an agent's
fixed-point fields as decimals, the rest as JSON, never Python reprs), and the server's exact reply with --json."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from soulfra.cli import app
from soulfra.cli import god as cli_god

REPLY: dict[str, Any] = {
    "type": "MERGE_INSTANCES", "ok": True, "id": "a-merge", "parents": ["a", "b"], "tick": 40,
    "base": {"instance": "a", "tick": 12},
    "conflicts": [
        {"domain": "agents", "entity": "cal-riven", "field": "valence", "base": 90000, "ours": 99257,
         "theirs": 98225, "policy": "mean", "resolved": 98741},
        {"domain": "agents", "entity": "arty", "field": "energy", "base": 5, "ours": 6, "theirs": 7, "policy": "mean",
         "resolved": 6},
        {"domain": "vibe", "entity": "vibe", "field": "*", "base": {}, "ours": {"condition": "calm-bloom"},
         "theirs": {"condition": "chaos-bloom"}, "policy": "newest", "resolved": {"condition": "chaos-bloom"}},
    ],
}  # fmt: skip


@pytest.fixture(autouse=True)
def canned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_god, "_request", lambda method, url, path, body=None: REPLY)


def merge(*args: str) -> str:
    done = CliRunner().invoke(app, ["god", "merge", "a", "b", *args])
    assert done.exit_code == 0, done.output
    return done.output


def test_a_merge_is_summed_up_by_domain() -> None:
    assert merge().splitlines() == [
        "merged a + b into a-merge at tick 40 (from a at tick 12)",
        "  3 conflicts: agents 2 (mean), vibe 1 (newest)",
        "  (--verbose lists each one, --json gives the exact values)",
    ]


def test_verbose_lists_every_field_with_values_as_json() -> None:
    shown = merge("--verbose")
    assert "  agents/cal-riven.valence: ours 0.099257, theirs 0.098225 -> 0.098741 (mean)" in shown  # decimals
    assert "  agents/arty.energy: ours 0.000006, theirs 0.000007 -> 0.000006 (mean)" in shown
    assert '  vibe/vibe.*: ours {"condition": "calm-bloom"}, theirs {"condition": "chaos-bloom"}' in shown
    assert "{'condition'" not in shown  # no Python reprs


def test_json_is_the_reply_itself() -> None:
    assert json.loads(merge("--json")) == REPLY
