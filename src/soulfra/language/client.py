"""A client of any OpenAI-compatible chat endpoint (``/v1/chat/completions``: llama.cpp's server, Ollama, vLLM, a
hosted API), over httpx. Every failure becomes an ``Answer`` with its outcome (timeout, rate-limited, server-error,
unreachable, refused, unparsed), never an exception: a model's trouble must never stop a world.

The API key is sent as a bearer token and is never logged or shown (``repr`` leaves it out).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx

from soulfra.language.prompt import REPLY_SCHEMA, Prompt

MAX_TOKENS = 160  # a decision is a short JSON object; a cap keeps a rambling model cheap


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What one call gave: ``outcome`` ``"reply"`` with the reply's text, or why there is none."""

    outcome: str
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0


class ChatClient(Protocol):
    """Asks a model one prompt. ``complete`` never raises for the model's failures: it returns them as an
    ``Answer``; it gives up after ``timeout`` seconds (outcome ``"timeout"``)."""

    async def complete(self, prompt: Prompt, *, timeout: float) -> Answer: ...

    async def aclose(self) -> None: ...


def chat_url(base: str) -> str:
    """``/v1/chat/completions`` under ``base`` (given as the server, its ``/v1``, or the full path)."""
    base = base.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if base.endswith("/v1"):
        return base + "/chat/completions"
    return base + "/v1/chat/completions"


class OpenAIChat:
    """``ChatClient`` over httpx. ``transport`` is for tests; ``clock`` gives seconds for the latency."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        max_in_flight: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.url = chat_url(url)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
        self._http = httpx.AsyncClient(headers=headers, limits=limits, transport=transport, trust_env=False)
        self._clock = clock

    def __repr__(self) -> str:
        return f"OpenAIChat({self.url!r})"

    async def complete(self, prompt: Prompt, *, timeout: float) -> Answer:
        body = {
            "model": prompt.model,
            "messages": prompt.to_messages(),
            "response_format": {"type": "json_object", "schema": REPLY_SCHEMA},  # llama.cpp refuses "json_schema"
            "max_tokens": MAX_TOKENS,
        }
        started = self._clock()
        try:
            response = await self._http.post(self.url, json=body, timeout=timeout)
        except httpx.TimeoutException:
            return Answer(outcome="timeout", latency_ms=self._since(started))
        except httpx.HTTPError:  # refused, reset, no route, a protocol error: nobody answered as a server would
            return Answer(outcome="unreachable", latency_ms=self._since(started))
        latency = self._since(started)
        if response.status_code == 429:
            return Answer(outcome="rate-limited", latency_ms=latency)
        if response.status_code >= 500:
            return Answer(outcome="server-error", latency_ms=latency)
        if response.status_code >= 400:
            return Answer(outcome="refused", latency_ms=latency)
        return _answer(response, latency)

    def _since(self, started: float) -> int:
        return max(0, round((self._clock() - started) * 1000))

    async def aclose(self) -> None:
        await self._http.aclose()


def _answer(response: httpx.Response, latency: int) -> Answer:
    """The reply's text and token usage from a chat completion (``unparsed`` if it is not one)."""
    try:
        data = response.json()
        text = data["choices"][0]["message"]["content"]
        usage = data.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens", 0))
        completion_tokens = int(usage.get("completion_tokens", 0))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return Answer(outcome="unparsed", text=response.text[:4000], latency_ms=latency)
    if not isinstance(text, str):
        return Answer(outcome="unparsed", latency_ms=latency)
    return Answer(
        outcome="reply", text=text, prompt_tokens=max(0, prompt_tokens), completion_tokens=max(0, completion_tokens),
        latency_ms=latency,
    )  # fmt: skip
