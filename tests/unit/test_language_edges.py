"""The language minds' edges, without a server: what a prompt holds and how a reply is read (structure, never
wording), the budget's limiter on a clock of the test's own, and the client's failures mapped to outcomes."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from soulfra.language import Budget, OpenAIChat, build_prompt, read_reply
from soulfra.language.budget import Limiter
from soulfra.language.client import chat_url
from soulfra.world import World, WorldSpec
from soulfra.world.genesis import DEFAULT_AGENTS
from soulfra.world.inputs import Decision, Whisper

pytestmark = pytest.mark.anyio


def test_a_prompt_holds_who_the_agent_is_and_what_is_around_it() -> None:
    world = World.create(4, WorldSpec(agents=DEFAULT_AGENTS, generated_model="tiny"), agents=6)
    for _ in range(15):
        world.step([Whisper(tick=world.tick, target="arty", text="light the lanterns")] if world.tick == 14 else [])
    arty = world.state.index["arty"]
    prompt = build_prompt(world.state, arty, world.tick + 2)
    system, user = (content for _, content in prompt.messages)
    assert "Arty" in system and "lyrical" in system and "lanterns" in system and "warmth" in system
    assert "You orchestrate" in system and '"action"' in system
    assert "vibe weather" in user and "Agents you could invite" in user
    assert ("What you did lately" in user) == bool(world.state.memory.get(arty))
    assert ("Your thread" in user) == bool(world.state.threads)
    assert prompt.digest.startswith("b2:") and prompt.digest == build_prompt(world.state, arty, world.tick + 2).digest
    assert prompt.digest != build_prompt(world.state, world.state.index["cal-riven"], world.tick + 2).digest


@pytest.mark.parametrize(
    ("text", "decision"),
    [
        ('{"action": "rest"}', Decision(action="rest")),
        ('```json\n{"action": "take_task", "task": 3}\n```', Decision(action="take_task", task=3)),
        ('{"action": "post", "topic": "tides", "text": "hi", "mood": "good", "ritual": null}',
         Decision(action="post", topic="tides", text="hi")),
        ('{"action": "dance"}', None),
        ('{"action": "bless", "ritual": "one"}', None),
        ("I shall rest.", None),
        ("[1, 2]", None),
    ],
)  # fmt: skip
def test_a_reply_is_read_into_a_decision_or_nothing(text: str, decision: Decision | None) -> None:
    assert read_reply(text) == decision


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_limiter_keeps_the_per_minute_budgets() -> None:
    clock = Clock()
    limiter = Limiter(Budget(max_in_flight=2, calls_per_minute=3, tokens_per_minute=100), clock=clock)
    assert await limiter.admit(clock.now + 1) and await limiter.admit(clock.now + 1)
    assert limiter.in_flight == 2
    assert not await limiter.admit(clock.now)  # two in flight already, and no time left to wait
    limiter.spent(10)
    assert await limiter.admit(clock.now + 1)  # the third call of the minute
    limiter.spent(10)
    limiter.spent(10)
    assert not await limiter.admit(clock.now + 59)  # a fourth fits only when the first call is a minute old
    clock.now += 60
    assert await limiter.admit(clock.now + 1)
    limiter.spent(200)  # over the minute's tokens: nothing more until they age out
    clock.now += 1
    assert not await limiter.admit(clock.now + 30)
    clock.now += 60
    assert await limiter.admit(clock.now + 1)
    assert limiter.in_flight == 1


async def test_the_limiter_holds_what_the_calls_in_flight_may_still_cost() -> None:
    clock = Clock()
    limiter = Limiter(Budget(max_in_flight=4, tokens_per_minute=100), clock=clock)
    assert await limiter.admit(clock.now + 1, 40) and await limiter.admit(clock.now + 1, 40)
    assert limiter.reserved == 80
    assert not await limiter.admit(clock.now + 0.05, 40)  # 80 reserved and 40 more: over, until a call gives back
    limiter.spent(15, 40)  # cost less than it reserved: its reservation goes back, its cost stays for the minute
    assert limiter.reserved == 40
    assert await limiter.admit(clock.now + 1, 40)  # 15 spent + 40 + 40 fit
    waiting = asyncio.ensure_future(limiter.admit(clock.now + 30, 30))  # 95 held, 30 more: waits for a call to end
    await asyncio.sleep(0)
    assert not waiting.done()
    limiter.spent(10, 40)
    assert await waiting  # 25 spent + 40 + 30
    limiter.spent(0, 40)
    limiter.spent(0, 30)
    assert limiter.reserved == 0 and limiter.in_flight == 0
    assert not await limiter.admit(clock.now + 59, 80)  # 25 spent: 80 more fits only when they age out
    assert not await limiter.admit(clock.now + 600, 200)  # more than a minute holds, and nothing in flight to wait for
    clock.now += 60
    assert await limiter.admit(clock.now + 1, 100)


@pytest.mark.parametrize(
    ("respond", "outcome"),
    [(lambda r: httpx.Response(429), "rate-limited"), (lambda r: httpx.Response(503), "server-error"),
     (lambda r: httpx.Response(401), "refused"), (lambda r: httpx.Response(200, text="<html>"), "unparsed"),
     (lambda r: httpx.Response(200, json={"choices": []}), "unparsed")],
)  # fmt: skip
async def test_the_client_maps_each_failure_to_an_outcome(respond: object, outcome: str) -> None:
    world = World.create(4, WorldSpec(agents=DEFAULT_AGENTS, generated_model="tiny"), agents=1)
    client = OpenAIChat("http://model.test", transport=httpx.MockTransport(respond))  # type: ignore[arg-type]
    try:
        answer = await client.complete(build_prompt(world.state, 3, 2), timeout=1.0)
    finally:
        await client.aclose()
    assert answer.outcome == outcome


def test_the_endpoint_may_be_given_as_the_server_its_v1_or_the_full_path() -> None:
    full = "http://h:8080/v1/chat/completions"
    assert chat_url("http://h:8080") == chat_url("http://h:8080/v1/") == chat_url(full) == full
    assert "sk-" not in repr(OpenAIChat("http://h:8080", api_key="sk-secret"))


def test_soulfra_up_settings_carry_the_endpoint_and_the_language_agents() -> None:
    from soulfra.settings import UpSettings  # noqa: PLC0415 -- the settings stack loads only here
    from soulfra.system import EmbeddedSettings  # noqa: PLC0415

    flags = {"model_url": "http://127.0.0.1:9/v1", "model": "smollm2", "language_agents": True, "agents": 5}
    embedded = EmbeddedSettings.from_settings(UpSettings.load(flags), WorldSpec(agents=DEFAULT_AGENTS))
    assert embedded.minds is not None and embedded.minds.url == "http://127.0.0.1:9/v1"
    assert embedded.spec.generated_model == "smollm2"
    world = World.create(1, embedded.spec, agents=embedded.agents)
    assert [s.model for s in world.state.specs] == [""] * 3 + ["smollm2"] * 5
    plain = EmbeddedSettings.from_settings(UpSettings.load({}), WorldSpec(agents=DEFAULT_AGENTS))
    assert plain.minds is None and plain.spec.generated_model == ""


def test_the_api_shows_a_language_agent_its_model_and_when_its_reply_is_due() -> None:
    from soulfra.projection import agent_json  # noqa: PLC0415

    world = World.create(4, WorldSpec(agents=DEFAULT_AGENTS, generated_model="tiny"), agents=6)
    while not world.state.thinking:
        world.step()
    thinker, due = next(iter(world.state.thinking.items()))
    assert agent_json(world.state, thinker) | {"model": "tiny", "due": due} == agent_json(world.state, thinker)
    assert "model" not in agent_json(world.state, 0)  # a built-in agent shows what it always showed


def test_the_json_mode_is_a_setting_every_language_runtime_gets(monkeypatch: pytest.MonkeyPatch) -> None:
    from typing import get_args  # noqa: PLC0415

    from soulfra.errors import ConfigError  # noqa: PLC0415
    from soulfra.language import JSON_MODES  # noqa: PLC0415
    from soulfra.settings import ModelSettings  # noqa: PLC0415

    assert get_args(ModelSettings.model_fields["model_json"].annotation) == JSON_MODES
    url = {"model_url": "http://127.0.0.1:9/v1"}
    minds = ModelSettings.load(url).mind_settings()
    assert minds is not None and minds.json_mode == "auto"
    monkeypatch.setenv("SOULFRA_MODEL_JSON", "json-schema")
    minds = ModelSettings.load(url).mind_settings()
    assert minds is not None and minds.json_mode == "json-schema"
    assert OpenAIChat(minds.url, json_mode=minds.json_mode).form == "json-schema"
    monkeypatch.setenv("SOULFRA_MODEL_JSON", "xml")
    with pytest.raises(ConfigError, match="SOULFRA_MODEL_JSON='xml'"):
        ModelSettings.load(url)
    with pytest.raises(ConfigError, match="--model-json='yaml'"):
        ModelSettings.load({**url, "model_json": "yaml"})
    with pytest.raises(ConfigError, match="unknown JSON mode 'xml'"):
        OpenAIChat("http://h:8080", json_mode="xml")  # type: ignore[arg-type]
