"""What `soulfra god merge` prints: a summary by domain a person reads, every field with --verbose (an agent's
fixed-point fields as decimals, the rest as JSON, never Python reprs), and the server's exact reply with --json."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from soulfra.cli import app
from soulfra.cli import god as cli_god
from soulfra.cli.conflicts import LONGEST_LIST
from soulfra.meta.engine import PuppetMasterEngine
from soulfra.world.fixed import to_decimal_str

from .meta_engine_support import WARM, create, god, settle

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


@pytest.mark.anyio
async def test_verbose_shows_a_real_merge_in_decimals_and_long_lists_by_length(
    engine: PuppetMasterEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create(engine, "x")
    at = (await settle(engine, ["x"], 6))["x"]
    cold = {**WARM, "traits": {"warmth": "0.2"}}
    storm = {"type": "intervene", "kind": "vibe", "condition": "echo-storm", "intensity": "0.9", "duration": 30}
    await god(engine, {"type": "REALITY_FORK", "source": "x", "forks": [
        {"id": "a", "modifications": [WARM]}, {"id": "b", "modifications": [cold, storm]},
    ]})  # fmt: skip
    await settle(engine, ["a", "b"], at + 60)
    reply = json.loads(
        json.dumps(await god(engine, {"type": "MERGE_INSTANCES", "ours": "a", "theirs": "b", "id": "m"}))
    )
    monkeypatch.setattr(cli_god, "_request", lambda method, url, path, body=None: reply)
    lines = merge("--verbose").splitlines()[2:]
    assert len(lines) == len(reply["conflicts"])
    by_domain = {
        (c["domain"], c["entity"], c["field"]): line for c, line in zip(reply["conflicts"], lines, strict=True)
    }
    kinds = {domain for domain, _, _ in by_domain}
    assert {"agents", "affinities", "vibe"} <= kinds  # the merge has the conflicts this test is about
    fixed_fields = ("warmth", "valence", "arousal", "energy", "focus")
    fixed = [
        (c, line)
        for c, line in zip(reply["conflicts"], lines, strict=True)
        if isinstance(c["ours"], int) and (c["domain"] == "affinities" or c["field"] in fixed_fields)
    ]
    assert any(c["domain"] == "affinities" for c, _ in fixed)
    for conflict, line in fixed:  # every fixed-point value as its decimal, never the raw integer
        ours, theirs = (to_decimal_str(conflict[side]) for side in ("ours", "theirs"))
        assert f": ours {ours}, theirs {theirs} -> {to_decimal_str(conflict['resolved'])} (" in line, line
    vibe = next(c for c in reply["conflicts"] if (c["entity"], c["field"]) == ("vibe", "*"))
    vibe_line = by_domain["vibe", "vibe", "*"]
    for key in ("temperature", "pressure", "wind"):
        assert f'"{key}": {to_decimal_str(vibe["ours"][key])}' in vibe_line, vibe_line
    assert any(vibe["ours"][key] not in (0, 1_000_000) for key in ("temperature", "pressure")), vibe  # decimals differ
    history = next(c for c in reply["conflicts"] if c["entity"] == "vibe_history")
    assert by_domain["vibe", "vibe_history", "*"] == (
        f"  vibe/vibe_history.*: ours {len(history['ours'])} entries, theirs {len(history['theirs'])} entries -> "
        f"{len(history['resolved'])} entries ({history['policy']})"
    )
    memories = [line for (domain, _, field), line in by_domain.items() if (domain, field) == ("agents", "memory")]
    assert memories and all(" entries" in line for line in memories)  # long lists by their length
    for conflict, line in zip(reply["conflicts"], lines, strict=True):  # no long list shown whole, at any depth
        for long_list in _long_lists([conflict[side] for side in ("ours", "theirs", "resolved")]):
            assert f"{len(long_list)} entries" in line, line


def _long_lists(value: Any) -> list[list[Any]]:
    """The lists longer than ``LONGEST_LIST`` in ``value``, at any depth (a record's fields, a list's items)."""
    if isinstance(value, dict):
        return [found for item in value.values() for found in _long_lists(item)]
    if isinstance(value, list):  # a long one is shown by its length alone, with nothing of what it holds
        return [value] if len(value) > LONGEST_LIST else [found for item in value for found in _long_lists(item)]
    return []
