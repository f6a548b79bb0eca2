"""A client of any OpenAI-compatible chat endpoint (``/v1/chat/completions``: llama.cpp's server, Ollama, vLLM, a
hosted API), over httpx. Every failure becomes an ``Answer`` with its outcome (timeout, rate-limited, server-error,
unreachable, refused, unparsed), never an exception: a model's trouble must never stop a world.

The reply is asked for as JSON in the form ``json_mode`` names, as servers differ (``JSON_MODES``): ``schema``
(``{"type": "json_object", "schema": ...}``, llama.cpp's server; the hosted OpenAI API refuses it), ``json-schema``
(``{"type": "json_schema", ...}``: OpenAI, vLLM; llama.cpp's server refuses it), ``object`` (``{"type":
"json_object"}`` alone) or ``none`` (no ``response_format``). ``auto`` starts with ``schema`` and, when a server
answers 400 or 422 naming ``response_format`` or a schema, steps down to the next form (``json-schema``, then
``object``, then ``none``) and asks again within the same call's timeout; the client keeps the form that worked for
its life and logs each step once. Whatever the form, the reply is read by our own parser (``read_reply``).

The API key is sent as a bearer token and is never logged or shown (``repr`` leaves it out).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

import httpx

from soulfra.errors import ConfigError
from soulfra.language.prompt import REPLY_SCHEMA, Prompt

MAX_TOKENS = 160  # a decision is a short JSON object; a cap keeps a rambling model cheap
JsonMode = Literal["auto", "schema", "json-schema", "object", "none"]
JSON_MODES: tuple[JsonMode, ...] = get_args(JsonMode)
STEPS: tuple[JsonMode, ...] = ("schema", "json-schema", "object", "none")  # what ``auto`` tries, in this order
SCHEMA_NAME = "soulfra_decision"
_FORMAT_WORDS = ("response_format", "schema")  # a refusal naming one of these is a refusal of the form asked in

log = logging.getLogger(__name__)


def parse_json_mode(value: str) -> JsonMode:
    """``value`` as a JSON mode; ConfigError for one that is not."""
    for mode in JSON_MODES:
        if value == mode:
            return mode
    raise ConfigError(f"unknown JSON mode {value!r}; expected one of {', '.join(JSON_MODES)}")


def response_format(mode: JsonMode) -> dict[str, Any] | None:
    """The ``response_format`` a request in ``mode`` carries (None: none at all; ``auto`` asks in ``schema`` first).
    ``json-schema`` is not ``strict``: OpenAI's strict mode needs every property required, and a decision's are
    optional."""
    match mode:
        case "auto" | "schema":
            return {"type": "json_object", "schema": REPLY_SCHEMA}
        case "json-schema":
            return {
                "type": "json_schema",
                "json_schema": {"name": SCHEMA_NAME, "schema": REPLY_SCHEMA, "strict": False},
            }
        case "object":
            return {"type": "json_object"}
        case "none":
            return None


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
        json_mode: JsonMode = "auto",
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        mode = parse_json_mode(json_mode)  # ConfigError before anything is opened
        self.url = chat_url(url)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
        self._http = httpx.AsyncClient(headers=headers, limits=limits, transport=transport, trust_env=False)
        self._clock = clock
        self.auto = mode == "auto"
        self.form: JsonMode = "schema" if self.auto else mode  # the form asked in now (``auto``: the one that works)

    def __repr__(self) -> str:
        return f"OpenAIChat({self.url!r})"

    async def complete(self, prompt: Prompt, *, timeout: float) -> Answer:
        started = self._clock()
        while True:
            form = self.form
            body: dict[str, Any] = {"model": prompt.model, "messages": prompt.to_messages(), "max_tokens": MAX_TOKENS}
            if (shape := response_format(form)) is not None:
                body["response_format"] = shape
            left = timeout - (self._clock() - started)  # a step down asks again within the same timeout
            if left <= 0:
                return Answer(outcome="timeout", latency_ms=self._since(started))
            try:
                response = await self._http.post(self.url, json=body, timeout=left)
            except httpx.TimeoutException:
                return Answer(outcome="timeout", latency_ms=self._since(started))
            except httpx.HTTPError:  # refused, reset, no route, a protocol error: nobody answered as a server would
                return Answer(outcome="unreachable", latency_ms=self._since(started))
            if not (self.auto and form != "none" and _refuses_the_form(response)):
                return self._outcome(response, self._since(started))
            self._step_down(form)

    def _step_down(self, refused: JsonMode) -> None:
        """``refused`` was refused: the next form from now on, once (calls in flight at the step ask again in it)."""
        if self.form != refused:
            return  # another call stepped down from it already
        self.form = STEPS[STEPS.index(refused) + 1]
        log.warning(
            "the model endpoint %s refused response_format in the %r form; asking in the %r form from now on",
            self.url, refused, self.form,
        )  # fmt: skip

    def _outcome(self, response: httpx.Response, latency: int) -> Answer:
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


def _refuses_the_form(response: httpx.Response) -> bool:
    """Whether ``response`` refuses the request for its ``response_format``: a 400 (or a validating server's 422)
    whose body names it or a schema."""
    if response.status_code not in (400, 422):
        return False
    text = response.text.lower()
    return any(word in text for word in _FORMAT_WORDS)


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
