"""MindAsker: asks the model for each language agent's pending thought, under a budget, and hands back the answers
as ``mind_reply`` inputs for the ticks they are due at (the runtime submits them; the world applies them).

After every tick the runtime calls ``ask`` with the state: every thought pending in ``state.thinking`` that has no
ask yet gets one (so a restarted runtime or a fresh fork asks again for the thoughts its log holds no reply for).
Before a tick it calls ``collect``: the asks due at that tick are waited for, at most ``Budget.timeout`` seconds
in all, and become inputs: a parsed decision, an ``unparsed`` reply, or the failure (a call still under way when
the wait ends is a ``timeout``). An ask never sent (over budget) gives no input: the world records that no reply
came. Failures are counted in ``Metrics.mind_calls``; the world's ``mind_decided`` event is their event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from soulfra.durable import DurableWorld
from soulfra.language.budget import Budget, Limiter
from soulfra.language.client import MAX_TOKENS, Answer, ChatClient, JsonMode
from soulfra.language.prompt import Prompt, build_prompt, read_reply
from soulfra.metrics import Metrics
from soulfra.offload import off_loop
from soulfra.world.inputs import MAX_REPLY, MindReply, decision_to_json
from soulfra.world.model import WorldState

log = logging.getLogger(__name__)
TOKENS_PER_CHAR = 0.5  # a prompt's tokens guessed before any reply says (two characters a token: English gives ~4)


@dataclass(frozen=True, slots=True, kw_only=True)
class MindSettings:
    """Where a runtime's language agents are asked. ``model``, if set, is the name sent to the endpoint (and
    recorded) in place of each agent's own; ``wait``: whether a due tick waits (within the budget) for its asks;
    ``json_mode``: the form the reply is asked for as JSON in (``soulfra.language.client``)."""

    url: str
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never shown
    budget: Budget = field(default_factory=Budget)
    wait: bool = True
    json_mode: JsonMode = "auto"


@dataclass(slots=True)
class _Ask:
    prompt: Prompt
    task: asyncio.Task[Answer | None] | None = None
    sent: bool = False


class MindAsker:
    """One instance's asker; ``close`` cancels what is under way and closes the client."""

    def __init__(
        self,
        client: ChatClient,
        settings: MindSettings,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.limiter = Limiter(settings.budget, clock=clock)
        self._clock = clock
        self._asks: dict[tuple[str, int], _Ask] = {}  # (agent id, due tick) -> its ask
        self.asked = 0
        self._closed = False
        self._log_read = False  # whether ``between_ticks`` has read the world's log for replies already stored
        self._per_char: float | None = None  # the most prompt tokens per character a reply has reported

    @property
    def pending(self) -> int:
        return len(self._asks)

    def ask(self, state: WorldState, logged: Collection[tuple[str, int]] = ()) -> int:
        """Start an ask for each pending thought that has none (nor a reply ``logged`` already); how many began."""
        started = 0
        for agent, due in state.thinking.items():
            key = (state.specs[agent].id, due)
            if key in self._asks or key in logged:
                continue
            prompt = build_prompt(state, agent, due)
            if self.settings.model:
                prompt = Prompt(
                    agent=prompt.agent, model=self.settings.model, due=due, messages=prompt.messages,
                    digest=prompt.digest,
                )  # fmt: skip
            ask = self._asks[key] = _Ask(prompt)
            ask.task = asyncio.get_running_loop().create_task(self._call(ask))
            started += 1
        self.asked += started
        return started

    async def _call(self, ask: _Ask) -> Answer | None:
        budget = self.settings.budget
        chars = sum(len(content) for _, content in ask.prompt.messages)
        reserve = self.reserve(chars)
        if not await self.limiter.admit(self._clock() + budget.timeout, reserve):
            return None
        ask.sent = True
        answer = None
        try:
            answer = await self.client.complete(ask.prompt, timeout=budget.timeout)
            if answer.prompt_tokens > 0 and chars > 0:
                self._per_char = max(self._per_char or 0.0, answer.prompt_tokens / chars)
            return answer
        finally:
            self.limiter.spent(0 if answer is None else answer.prompt_tokens + answer.completion_tokens, reserve)

    def reserve(self, chars: int) -> int:
        """The most tokens a call of a prompt of ``chars`` characters may cost, as far as the replies so far tell:
        its prompt at the most tokens a character has cost yet (``TOKENS_PER_CHAR`` before any reply), and its
        reply at the cap the client asks for; never more than the minute's budget (such a call goes alone)."""
        prompt = math.ceil(chars * (TOKENS_PER_CHAR if self._per_char is None else self._per_char))
        return min(prompt + MAX_TOKENS, self.settings.budget.tokens_per_minute)

    async def collect(self, tick: int) -> list[dict[str, Any]]:
        """The inputs for the asks due at ``tick`` (waited for, within the budget); asks due earlier are dropped."""
        due: list[_Ask] = []
        for key in [key for key in self._asks if key[1] <= tick]:
            ask = self._asks.pop(key)
            if key[1] < tick:  # its tick went by without it (the runtime did not collect then): the fallback stands
                self._count("late")
                self._cancel(ask)
            else:
                due.append(ask)
        tasks = [ask.task for ask in due if ask.task is not None and not ask.task.done()]
        if tasks and self.settings.wait:
            await asyncio.wait(tasks, timeout=self.settings.budget.timeout)
        items = []
        for ask in due:
            item = self._input(ask)
            if item is not None:
                items.append(item)
        return items

    def _input(self, ask: _Ask) -> dict[str, Any] | None:
        task = ask.task
        answer: Answer | None
        if task is not None and task.done() and not task.cancelled() and task.exception() is None:
            answer = task.result()
        else:
            if task is not None and not task.done():
                task.cancel()
            elif task is not None and not task.cancelled() and task.exception() is not None:
                log.warning("asking the model for %s failed: %r", ask.prompt.agent, task.exception())
            answer = (
                Answer(outcome="timeout", latency_ms=round(self.settings.budget.timeout * 1000)) if ask.sent else None
            )
        if answer is None:
            self._count("skipped")
            return None
        decision = read_reply(answer.text) if answer.outcome == "reply" else None
        outcome = answer.outcome if answer.outcome != "reply" or decision is not None else "unparsed"
        self._count(outcome)
        if answer.latency_ms:
            self.metrics.mind_duration.observe(answer.latency_ms / 1000)
        self.metrics.mind_tokens.labels("prompt").inc(answer.prompt_tokens)
        self.metrics.mind_tokens.labels("completion").inc(answer.completion_tokens)
        prompt = ask.prompt
        return {
            "type": "mind_reply", "tick": prompt.due, "agent": prompt.agent, "model": prompt.model,
            "prompt": prompt.digest, "outcome": outcome, "reply": answer.text[:MAX_REPLY],
            "decision": None if decision is None else decision_to_json(decision),
            "prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
            "latency_ms": answer.latency_ms,
        }  # fmt: skip

    def reread_log(self) -> None:
        """Have the next ``between_ticks`` skip the thoughts whose reply the world's log already holds."""
        self._log_read = False

    async def between_ticks(
        self, world: DurableWorld, submit: Callable[[list[dict[str, Any]]], Awaitable[None]], *, collect: bool
    ) -> None:
        """Ask for the thoughts pending in ``world``; with ``collect`` (before a tick) ``submit`` the inputs due at
        it. Whatever fails here is logged and left out: the agents concerned fall back, and the world goes on."""
        try:
            logged = set() if self._log_read else await off_loop(logged_replies, world)
            self._log_read = True
            self.ask(world.world.state, logged)
            items = await self.collect(world.tick) if collect else []
            if items:
                await submit(items)
        except Exception:
            log.exception("asking the model for %s's language agents failed; they fall back", world.instance_id)

    def _count(self, outcome: str) -> None:
        self.metrics.mind_calls.labels(outcome).inc()

    @staticmethod
    def _cancel(ask: _Ask) -> None:
        if ask.task is not None and not ask.task.done():
            ask.task.cancel()

    def forget(self) -> None:
        """Drop every ask under way (the runtime's world was replaced: a revert asks again from its own state)."""
        for ask in self._asks.values():
            self._cancel(ask)
        self._asks.clear()
        self._log_read = False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        tasks = [ask.task for ask in self._asks.values() if ask.task is not None]
        self.forget()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.aclose()


def open_asker(settings: MindSettings, metrics: Metrics | None = None) -> MindAsker:
    """An asker of the endpoint ``settings`` name, over httpx (one per instance: the budget is per instance)."""
    from soulfra.language.client import OpenAIChat  # noqa: PLC0415 -- the client module imports httpx

    client = OpenAIChat(
        settings.url, api_key=settings.api_key, max_in_flight=settings.budget.max_in_flight,
        json_mode=settings.json_mode,
    )  # fmt: skip
    return MindAsker(client, settings, metrics=metrics)


def logged_replies(world: DurableWorld) -> set[tuple[str, int]]:
    """The (agent, tick) of every reply the world's log holds from its current tick on (not to be asked again)."""
    stored = world.store.inputs.read(world.instance_id, from_tick=world.tick)
    return {(s.input.agent, s.tick) for s in stored if isinstance(s.input, MindReply)}
