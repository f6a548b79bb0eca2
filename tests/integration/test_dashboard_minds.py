"""Language minds on the API and the dashboard, against a real ``soulfra up`` whose generated agents ask the fake
model server (on its own event loop in a thread): ``GET /api/instances/{id}/minds`` sums exactly the recorded
``mind_reply`` inputs; ``GET .../agents/{agent}/mind`` lists the agent's own replies newest first and the prompt the
newest answered, whose messages hash to the digest the reply names; and the world page, in a real Chromium, shows
the model cost line and a language agent's model, last reply and cost in its panel.

Chromium is Debian's (``/usr/bin/chromium``); without it the browser test skips locally and fails under ``CI=true``.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .fake_model import FakeModel, threaded
from .support import Server, running_server, wait_for
from .test_dashboard import Watched, browser, shots, sign_in, until, watched

__all__ = ["browser", "shots", "watched"]  # the shared fixtures, used here by name

pytestmark = [pytest.mark.xdist_group("test_dashboard_minds"), pytest.mark.timeout(180)]

DEFAULT = "world-0"
MODEL = "fake-135m"


@pytest.fixture(scope="module")
def model() -> Iterator[FakeModel]:
    with threaded() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model: FakeModel) -> Iterator[Server]:
    extra = ["--agents", "6", "--language-agents", "--model", MODEL, "--model-url", model.url, "--model-timeout", "5"]
    with running_server(tmp_path_factory.mktemp("minds"), rate="10", extra=extra) as running:
        yield running


def get(client: httpx.Client, path: str) -> dict[str, Any]:
    reply = client.get(path)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def recorded(client: httpx.Client, instance: str) -> list[dict[str, Any]]:
    """Every ``mind_reply`` input of the instance's log, oldest first (read a page at a time)."""
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = get(client, f"/api/instances/{instance}/inputs?after={after}&limit=1000")["inputs"]
        found += [{"seq": row["seq"], **row["input"]} for row in page if row["input"]["type"] == "mind_reply"]
        if len(page) < 1000:
            return found
        after = page[-1]["seq"]


def paused_with_replies(client: httpx.Client, at_least: int) -> list[dict[str, Any]]:
    """Wait for ``at_least`` recorded replies, pause the default instance, and return its replies once they hold
    still (two reads alike: a reply submitted as the pause came is in both)."""
    wait_for(lambda: len(recorded(client, DEFAULT)) >= at_least, timeout=60, what=f"{at_least} recorded replies")
    paused = client.post(f"/api/instances/{DEFAULT}/pause", json={})
    assert paused.status_code == 200, paused.text
    return wait_for(
        lambda: ((a := recorded(client, DEFAULT)) == recorded(client, DEFAULT) and a) or None, what="still replies"
    )


def digest(messages: list[dict[str, str]]) -> str:
    """The digest of a prompt's messages, computed as the recording names it (``soulfra.language.prompt``)."""
    pairs = [[m["role"], m["content"]] for m in messages]
    encoded = json.dumps(pairs, ensure_ascii=False, separators=(",", ":")).encode()
    return "b2:" + hashlib.blake2b(encoded, digest_size=16).hexdigest()


def test_the_mind_reads_are_the_recorded_replies(server: Server) -> None:
    with server.client() as client:
        try:
            replies = paused_with_replies(client, 8)
            costs = get(client, f"/api/instances/{DEFAULT}/minds")["costs"]
            agent = replies[-1]["agent"]
            mind = get(client, f"/api/instances/{DEFAULT}/agents/{agent}/mind?last=3")
            named = get(client, f"/api/instances/{DEFAULT}/agents/arty/mind")
            unknown = client.get(f"/api/instances/{DEFAULT}/agents/nobody/mind")
            no_instance = client.get("/api/instances/no-such-world/minds")
        finally:
            assert client.post(f"/api/instances/{DEFAULT}/resume", json={}).status_code == 200
    with server.client(anonymous=True) as anonymous:
        refused = anonymous.get(f"/api/instances/{DEFAULT}/minds")

    latencies = [r["latency_ms"] for r in replies]
    assert costs == {
        "calls": len(replies),
        "outcomes": {o: sum(r["outcome"] == o for r in replies) for o in costs["outcomes"]},
        "prompt_tokens": sum(r["prompt_tokens"] for r in replies),
        "completion_tokens": sum(r["completion_tokens"] for r in replies),
        "latency_mean_ms": statistics.fmean(latencies),
        "latency_p50_ms": statistics.median(latencies),
    }
    assert costs["outcomes"]["reply"] == len(replies) and costs["prompt_tokens"] > 0  # the fake model always answers

    own = [r for r in replies if r["agent"] == agent][::-1][:3]
    fields = ("seq", "tick", "model", "prompt", "outcome", "reply", "decision", "prompt_tokens", "completion_tokens",
              "latency_ms")  # fmt: skip
    assert [{k: c[k] for k in fields} for c in mind["calls"]] == [{k: r[k] for k in fields} for r in own]
    assert (mind["language"], mind["model"], mind["costs"]) == (True, MODEL, costs)
    prompt = mind["prompt"]
    assert prompt["matches"] and prompt["digest"] == own[0]["prompt"] == digest(prompt["messages"])
    assert prompt["tick"] == own[0]["tick"] - 1  # the state after the tick the thought began at
    assert [m["role"] for m in prompt["messages"]] == ["system", "user"] and agent in prompt["messages"][0]["content"]

    assert (named["language"], named["model"], named["calls"], named["prompt"]) == (False, None, [], None)
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_agent"
    assert no_instance.status_code == 404 and no_instance.json()["code"] == "not_found"
    assert refused.status_code == 401


def test_the_world_page_shows_a_language_agent_s_mind_and_the_model_cost(
    watched: Watched, server: Server, shots: Path
) -> None:
    with server.client() as client:
        wait_for(lambda: len(recorded(client, DEFAULT)) >= 4, timeout=60, what="a few recorded replies")
        agent = recorded(client, DEFAULT)[-1]["agent"]
    page = watched.page
    sign_in(watched, server.token)
    page.goto(f"{server.url}/worlds/{DEFAULT}")
    until(page, "document.getElementById('model-cost').textContent.includes('calls')")
    assert re.fullmatch(r"\d+ calls · 0 fell back · \d+ tokens · p50 \d+ ms", page.inner_text("#model-cost"))
    page.click(f"#agent-list button[data-agent='{agent}']")
    page.wait_for_selector("#mind-panel", timeout=15_000)
    with server.client() as client:  # what the panel showed, read back (the world runs on: read the same tick's)
        mind = get(client, f"/api/instances/{DEFAULT}/agents/{agent}/mind")
    panel = page.inner_text("#mind-panel")
    assert MODEL in panel and "falls back to" in panel and "calls (" in panel and "tokens" in panel
    shown = page.locator("#mind-panel .mind-reply").first.inner_text()
    assert shown in [call["reply"] for call in mind["calls"]]  # one of its recorded replies, the newest when shown
    assert "digest matches the recorded one" in page.inner_text("#mind-panel .mind-prompt summary")
    page.screenshot(path=str(shots / "agent-mind.png"))
    page.click("#agent-list button[data-agent='arty']")  # a built-in mind: no mind section
    until(page, "document.getElementById('agent-body').dataset.mind === 'arty'")
    assert page.locator("#mind-panel").count() == 0
    watched.assert_clean()
