"""How a language mind asks for JSON, against the fake server acting as each kind of OpenAI-compatible server: each
mode sends its own ``response_format``; ``auto`` steps down once per refused form (logged once, the key never
logged), keeps the form that worked, and every thought still gets exactly one recorded reply."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from soulfra.bus import InMemoryBus
from soulfra.durable import DurableWorld, state_at
from soulfra.language import REPLY_SCHEMA, Budget, JsonMode, MindSettings, OpenAIChat, build_prompt, open_asker
from soulfra.metrics import Metrics
from soulfra.platforms.runtime import RuntimePlatform
from soulfra.store import InMemoryStore
from soulfra.world import World, schedule
from soulfra.world.events import MindDecided

from .fake_model import FakeModel
from .test_language_minds import SEED, SPEC, first_divergence, replayed, replies, run

pytestmark = pytest.mark.anyio

SECRET = "sk-json-modes-do-not-show"
SHAPES: dict[str, dict[str, Any] | None] = {
    "schema": {"type": "json_object", "schema": REPLY_SCHEMA},
    "json-schema": {
        "type": "json_schema", "json_schema": {"name": "soulfra_decision", "schema": REPLY_SCHEMA, "strict": False}
    },
    "object": {"type": "json_object"},
    "none": None,
}  # fmt: skip
STEP_DOWN = "refused response_format"
IN_FLIGHT = 8


@pytest.mark.parametrize("mode", ["schema", "json-schema", "object", "none"])
async def test_each_mode_sends_its_own_response_format(mode: JsonMode) -> None:
    world = World.create(SEED, SPEC, agents=2)
    async with FakeModel() as fake:
        client = OpenAIChat(fake.url, json_mode=mode)
        try:
            answer = await client.complete(build_prompt(world.state, 3, 2), timeout=5.0)
        finally:
            await client.aclose()
    assert answer.outcome == "reply"
    [body] = fake.bodies
    assert body.get("response_format") == SHAPES[mode]
    assert ("response_format" in body) == (mode != "none")


async def test_a_mode_given_is_kept_even_when_the_server_refuses_it(bus: InMemoryBus) -> None:
    store, metrics = InMemoryStore(), Metrics()
    async with FakeModel(dialect="openai") as fake:
        runtime = await json_runtime(store, bus, fake.url, metrics, "schema")
        await run(runtime, 8)
    recorded = replies(store, "json")
    assert recorded and {r.outcome for r in recorded} == {"refused"}
    assert fake.refused == fake.requests  # never asked again in another form
    assert all(body["response_format"] == SHAPES["schema"] for body in fake.bodies)


@pytest.mark.parametrize(
    ("dialect", "tried"),
    [("llama", ["schema"]), ("openai", ["schema", "json-schema"]), ("object", ["schema", "json-schema", "object"]),
     ("plain", ["schema", "json-schema", "object", "none"])],
)  # fmt: skip
async def test_auto_steps_down_to_the_form_the_server_takes_and_every_thought_gets_one_reply(
    bus: InMemoryBus, caplog: pytest.LogCaptureFixture, dialect: str, tried: list[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    store, metrics = InMemoryStore(), Metrics()
    async with FakeModel(dialect=dialect) as fake:
        runtime = await json_runtime(store, bus, fake.url, metrics, "auto", api_key=SECRET)
        client = runtime.asker.client if runtime.asker else None
        live, thinking = await run(runtime, 16)
    assert isinstance(client, OpenAIChat) and client.form == tried[-1]  # the working form, kept
    # a request in each form tried, in order; every request the server took was in the working form, and each
    # refused form cost at most one request per call in flight when it was refused (later calls skip it)
    shapes = [body.get("response_format") for body in fake.bodies]
    forms = list(dict.fromkeys(next(m for m, s in SHAPES.items() if s == shape) for shape in shapes))
    assert forms == tried
    assert sum(shape == SHAPES[tried[-1]] for shape in shapes) == fake.requests - fake.refused
    assert fake.refused <= (len(tried) - 1) * IN_FLIGHT
    assert shapes[-1] == SHAPES[tried[-1]]
    # each step down logged once, though several calls were in flight when the server refused
    steps = [r for r in caplog.records if STEP_DOWN in r.getMessage()]
    assert len(steps) == len(tried) - 1
    assert SECRET not in caplog.text and fake.authorization == {f"Bearer {SECRET}"}
    # every thought due in the run got exactly one recorded reply, which parsed; none fell back for want of one
    recorded = replies(store, "json")
    keys = [(r.agent, r.tick) for r in recorded]
    assert recorded and len(keys) == len(set(keys))
    assert {r.outcome for r in recorded} == {"reply"} and all(r.decision is not None for r in recorded)
    assert len(recorded) <= fake.requests - fake.refused <= len(recorded) + thinking
    decided = decisions(store, "json", 16)
    assert decided and {d.outcome for d in decided} <= {"reply", "not-done"}
    assert sorted((d.agent, d.tick) for d in decided) == sorted(k for k in keys if k[1] < 16)
    assert first_divergence(live, replayed(store, "json", 16)) is None


async def json_runtime(
    store: InMemoryStore, bus: InMemoryBus, url: str, metrics: Metrics, mode: JsonMode, *, api_key: str | None = None
) -> RuntimePlatform:
    """A world of 12 agents (three named, nine language agents) whose asker is built as the settings build it."""
    world = DurableWorld.create(store, SEED, SPEC, agents=12, instance_id="json")
    settings = MindSettings(
        url=url, api_key=api_key, budget=Budget(timeout=5.0, max_in_flight=IN_FLIGHT), json_mode=mode
    )
    runtime = RuntimePlatform(world, bus, rate=None, metrics=metrics, asker=open_asker(settings, metrics))
    await runtime.start()
    return runtime


def decisions(store: InMemoryStore, instance_id: str, upto: int) -> list[MindDecided]:
    """The language agents' turns in a replay of the stored inputs (no server): each says what it acted on."""
    world = World(state_at(store, instance_id, 0))
    due = schedule((s.input for s in store.inputs.read(instance_id)), 0)
    turns: list[MindDecided] = []
    while world.tick < upto:
        turns += [e for e in world.step(due.get(world.tick, ())) if isinstance(e, MindDecided)]
    return turns
