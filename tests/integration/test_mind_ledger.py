"""The language minds' ledger (``soulfra.language.ledger``) against a world that asked the fake model: the costs are
the sums of the recorded ``mind_reply`` inputs, an agent's calls are its own replies newest first, and every recorded
reply's prompt, rebuilt from the stored history with the server stopped, has the digest the reply names."""

from __future__ import annotations

import statistics

import pytest

from soulfra.bus import InMemoryBus
from soulfra.durable import DurableWorld, state_at
from soulfra.errors import NotFoundError, UnknownAgentError
from soulfra.language.ledger import MindLedger, agent_mind, instance_costs, rebuild_prompt, recorded_calls
from soulfra.meta.lineage import revert_record
from soulfra.metrics import Metrics
from soulfra.store import InMemoryStore
from soulfra.world import WorldSpec
from soulfra.world.genesis import DEFAULT_AGENTS
from soulfra.world.inputs import MindReply

from .fake_model import FakeModel
from .test_language_minds import lang_runtime, replies, run

pytestmark = pytest.mark.anyio


async def test_costs_and_calls_are_the_recorded_replies_and_every_prompt_rebuilds(bus: InMemoryBus) -> None:
    store, metrics = InMemoryStore(), Metrics()
    async with FakeModel() as fake:
        live, _ = await run(await lang_runtime(store, bus, fake.url, metrics), 24)
    recorded = replies(store, "lang")
    assert recorded
    costs = instance_costs(store, "lang")
    assert costs.calls == len(recorded) == metrics.mind_calls.labels("reply")._value.get()
    assert costs.outcomes["reply"] == len(recorded) and sum(costs.outcomes.values()) == len(recorded)
    assert costs.prompt_tokens == sum(r.prompt_tokens for r in recorded) > 0
    assert costs.completion_tokens == sum(r.completion_tokens for r in recorded) > 0
    latencies = [r.latency_ms for r in recorded]
    assert costs.latency_mean_ms == statistics.fmean(latencies)
    assert costs.latency_p50_ms == statistics.median(latencies)

    head = state_at(store, "lang", store.instances.get("lang").head_tick)
    for call in recorded_calls(store, "lang"):  # the prompt of every recorded reply, not only each agent's last
        rebuilt = rebuild_prompt(store, "lang", head.index[call.agent], call, first=0, head=head)
        assert rebuilt is not None and rebuilt.matches, call
        assert rebuilt.digest == call.prompt and rebuilt.tick == call.tick - 1  # the state after its thought began

    agent = recorded[-1].agent
    mind = agent_mind(store, "lang", agent, last=3)
    own = [r for r in recorded if r.agent == agent][::-1][:3]
    assert [(c.tick, c.prompt, c.reply) for c in mind.calls] == [(r.tick, r.prompt, r.reply) for r in own]
    assert mind.model == "fake-135m" and mind.prompt is not None and mind.prompt.digest == own[0].prompt
    assert mind.costs == costs and mind.tick == max(live)
    assert mind.due == head.thinking.get(head.index[agent])


async def test_a_ledger_reads_what_was_logged_since_and_again_after_a_revert(bus: InMemoryBus) -> None:
    store, metrics = InMemoryStore(), Metrics()
    async with FakeModel() as fake:
        await run(await lang_runtime(store, bus, fake.url, metrics), 20)
    ledger = MindLedger()
    first = ledger.costs(store, "lang")
    assert first == instance_costs(store, "lang") and first.calls == len(replies(store, "lang"))
    head = store.instances.get("lang").head_tick
    extra = MindReply(tick=head + 3, agent=replies(store, "lang")[0].agent, model="fake-135m", prompt="b2:00",
                      outcome="timeout", latency_ms=5000)  # fmt: skip
    store.inputs.append("lang", [extra])
    grown = ledger.costs(store, "lang")  # the one appended, read on top of the tally
    assert grown == instance_costs(store, "lang")
    assert (grown.calls, grown.outcomes["timeout"]) == (first.calls + 1, 1)
    ahead = ledger.agent(store, "lang", extra.agent)
    assert ahead.calls[0].outcome == "timeout" and ahead.calls[0].tick == head + 3
    # the newest reply is for a tick the durable head has not reached: the prompt shown is the one before it's
    assert ahead.prompt is not None and ahead.prompt.matches and ahead.prompt.digest == ahead.calls[1].prompt
    revert_record(store, store.instances.get("lang"), tick=10, branch_id="lang-branch")
    reverted = ledger.costs(store, "lang")  # the log lost inputs: tallied again
    assert reverted == instance_costs(store, "lang")
    assert reverted.calls == len(replies(store, "lang")) < first.calls


def test_an_agent_or_instance_that_does_not_exist_is_not_found() -> None:
    store = InMemoryStore()
    with pytest.raises(NotFoundError):
        instance_costs(store, "nowhere")
    DurableWorld.create(store, 1, WorldSpec(agents=DEFAULT_AGENTS), agents=3, instance_id="plain")
    with pytest.raises(UnknownAgentError, match="no agent 'nobody'"):
        agent_mind(store, "plain", "nobody")
    plain = agent_mind(store, "plain", "arty")  # no language agent: no model, no thought, nothing recorded
    assert (plain.model, plain.due, plain.calls, plain.prompt, plain.costs.calls) == (None, None, (), None, 0)
