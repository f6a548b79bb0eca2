"""Which token a client command sends: ``--token``, else ``SOULFRA_TOKEN``, else the file ``soulfra up`` keeps in
``SOULFRA_HOME``; none when there is none. A change is sent as JSON, ``{}`` when it has no body. The HTTP exchange
is replaced by a recorder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from soulfra.cli import main


@pytest.fixture(autouse=True)
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SOULFRA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SOULFRA_HOME", str(tmp_path / "home"))


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    requests: list[dict[str, Any]] = []

    def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
        requests.append({"method": method, "url": url, **kwargs})
        return httpx.Response(200, json={"default": "w", "tick": 3, "state": "paused"})

    monkeypatch.setattr(httpx, "request", request)
    return requests


def run(*args: str) -> int:
    with pytest.raises(SystemExit) as stopped:
        main(list(args))
    assert isinstance(stopped.value.code, int)
    return stopped.value.code


def authorization(request: dict[str, Any]) -> str | None:
    value = request["headers"].get("authorization")
    return None if value is None else str(value)


def test_the_flag_wins_over_the_variable_over_the_home_file(
    sent: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("pause", "--instance", "w") == 0
    assert authorization(sent[-1]) is None  # no token anywhere: none is sent
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "token").write_text("sft_home\n")
    assert run("pause", "--instance", "w") == 0
    assert authorization(sent[-1]) == "Bearer sft_home"
    monkeypatch.setenv("SOULFRA_TOKEN", "sft_env")
    assert run("pause", "--instance", "w") == 0
    assert authorization(sent[-1]) == "Bearer sft_env"
    assert run("pause", "--instance", "w", "--token", "sft_flag") == 0
    assert authorization(sent[-1]) == "Bearer sft_flag"
    assert run("pause", "--instance", "w") == 0
    assert authorization(sent[-1]) == "Bearer sft_env"  # a flag given once is not remembered by the next command


def test_a_change_without_a_body_is_sent_as_an_empty_json_object(sent: list[dict[str, Any]]) -> None:
    assert run("pause") == 0  # asks for the default instance first
    assert [(r["method"], r["url"].rsplit("/api/", 1)[1], r["json"]) for r in sent] == [
        ("GET", "instances", None),
        ("POST", "instances/w/pause", {}),
    ]
