"""Response models of the language minds' reads (``GET /api/instances/{id}/minds`` and
``GET /api/instances/{id}/agents/{agent_id}/mind``): an agent's mind, its last recorded replies, the prompt the
newest one answered, and the instance's model cost, all read back from the stored history."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from soulfra.api.models.base import Closed

__all__ = ["AgentMindReply", "MindCall", "MindCosts", "MindCostsReply", "PromptMessage", "RebuiltPrompt"]


class MindCosts(Closed):
    """What the instance's recorded replies cost (every ``mind_reply`` input its log holds, failures included)."""

    calls: int = Field(description="Recorded replies: answered calls and the failures that stood in for them")
    outcomes: dict[str, int] = Field(description="Recorded replies by outcome (reply, unparsed, timeout, ...)")
    prompt_tokens: int
    completion_tokens: int
    latency_mean_ms: float = Field(description="Mean latency of the recorded calls, in milliseconds")
    latency_p50_ms: float = Field(description="Median latency of the recorded calls, in milliseconds")


class MindCostsReply(Closed):
    instance: str
    costs: MindCosts


class MindCall(Closed):
    seq: int = Field(description="The input's number in the log")
    tick: int = Field(description="The tick the reply was due at: the agent acted on it, or fell back, then")
    model: str
    prompt: str = Field(description="The digest of the prompt it answered")
    outcome: str = Field(description="reply (with a decision), or why there is none: unparsed, timeout, ...")
    reply: str = Field(description="The model's text as recorded (empty for a failed call)")
    decision: dict[str, Any] | None = Field(description="The decision parsed from the reply")
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int


class PromptMessage(Closed):
    role: str
    content: str


class RebuiltPrompt(Closed):
    tick: int = Field(description="The tick of the state the prompt was rebuilt from")
    digest: str
    matches: bool = Field(description="Whether the rebuilt prompt's digest is the one the reply names")
    messages: list[PromptMessage]


class AgentMindReply(Closed):
    instance: str
    tick: int = Field(description="The durable head the agent's mind is read at")
    agent: str
    name: str
    mind: str = Field(description="The built-in mind (a language agent falls back to it)")
    language: bool = Field(description="Whether a language model decides for the agent")
    model: str | None
    due: int | None = Field(description="The tick its pending thought is due at (None: it is not thinking)")
    calls: list[MindCall] = Field(description="Its last recorded replies, newest first")
    prompt: RebuiltPrompt | None = Field(description="The prompt of the newest reply, rebuilt from the state")
    costs: MindCosts = Field(description="The instance's model cost")
