"""The short spelling of operator inputs on the command line (``soulfra.cli.specs``): ``god clone -m`` takes it or
JSON and sends the same input either way, in the grammar ``package edit`` takes; a bad spelling is one line."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from soulfra.cli import app, main
from soulfra.cli import god as cli_god
from soulfra.world import parse_input

SAME: list[tuple[str, dict[str, Any]]] = [
    ("whisper:cal-riven:hello: you?", {"type": "whisper", "target": "cal-riven", "text": "hello: you?"}),
    ("vibe:echo-storm", {"type": "intervene", "kind": "vibe", "condition": "echo-storm"}),
    ("vibe:echo-storm:0.7:10", {"type": "intervene", "kind": "vibe", "condition": "echo-storm", "intensity": "0.7",
                                "duration": 10}),
    ("personality:arty:warmth=0.9,chaos=0.1", {"type": "intervene", "kind": "personality", "agent": "arty",
                                               "traits": {"warmth": "0.9", "chaos": "0.1"}}),
    ("ritual:tide rite:arty,cal-riven:blessed", {"type": "intervene", "kind": "ritual", "name": "tide rite",
                                                 "participants": ["arty", "cal-riven"], "blessed": True}),
    ("possess:arty", {"type": "possess", "agent": "arty"}),
    ("release:arty", {"type": "release", "agent": "arty"}),
]  # fmt: skip


def cloned(monkeypatch: pytest.MonkeyPatch, *modify: str) -> list[dict[str, Any]]:
    """The modifications ``soulfra god clone north -m ...`` sends."""
    sent: list[dict[str, Any]] = []

    def request(method: str, url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        assert body is not None
        sent.append(body)
        return {"tick": 3, "id": "north-2"}

    monkeypatch.setattr(cli_god, "_request", request)
    done = CliRunner().invoke(app, ["god", "clone", "north", *(a for m in modify for a in ("-m", m))])
    assert done.exit_code == 0, done.output
    return list(sent[0]["modifications"])


@pytest.mark.parametrize(
    ("short", "as_json"), SAME, ids=[short.split(":")[0] + str(n) for n, (short, _) in enumerate(SAME)]
)
def test_the_short_form_and_json_send_the_same_input(
    monkeypatch: pytest.MonkeyPatch, short: str, as_json: dict[str, Any]
) -> None:
    assert cloned(monkeypatch, short) == cloned(monkeypatch, json.dumps(as_json)) == [as_json]
    assert parse_input({**as_json, "tick": 4}) == parse_input(
        {**cloned(monkeypatch, short)[0], "tick": 4}
    )  # a valid input


def test_several_modifications_keep_their_order(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cloned(monkeypatch, "vibe:calm-bloom", '{"type": "release", "agent": "arty"}') == [
        {"type": "intervene", "kind": "vibe", "condition": "calm-bloom"},
        {"type": "release", "agent": "arty"},
    ]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("whisper:arty", "takes whisper:TARGET:TEXT"),
        ("vibe:a:0.5:soon", "duration must be a whole number of ticks, not 'soon'"),
        ("personality:arty", "takes AGENT:TRAIT=V[,TRAIT=V]"),
        ("ritual:rite:arty:now", "takes NAME:AGENT,AGENT[:blessed]"),
        ("summon:arty", "takes KIND:SPEC (personality, ritual, vibe, whisper, possess or release)"),
        ("{oops", "is not valid JSON"),
        ("[1, 2]", "takes KIND:SPEC"),
    ],
)
def test_a_bad_spelling_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], spec: str, words: str
) -> None:
    monkeypatch.setattr(cli_god, "_request", lambda *args, **kwargs: pytest.fail("nothing is sent"))
    with pytest.raises(SystemExit) as stop:
        main(["god", "clone", "north", "-m", spec])
    assert stop.value.code == 65
    err = capsys.readouterr().err
    assert err.startswith("soulfra: error: --modify ") and err.count("\n") == 1 and words in err, err


def test_the_help_documents_the_short_form() -> None:
    shown = CliRunner().invoke(app, ["god", "clone", "--help"], env={"COLUMNS": "300"}).output
    assert "whisper:TARGET:TEXT" in shown and "vibe:CONDITION[:INTENSITY[:DURATION]]" in shown
