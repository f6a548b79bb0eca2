"""Language minds outside the core: prompts, an OpenAI-compatible client, a budget, and the asker that turns a
language agent's pending thought into a recorded ``MindReply`` input. The world never imports this package."""

from __future__ import annotations

from soulfra.language.asker import MindAsker, MindSettings, open_asker
from soulfra.language.budget import Budget
from soulfra.language.client import JSON_MODES, Answer, ChatClient, JsonMode, OpenAIChat
from soulfra.language.prompt import REPLY_SCHEMA, Prompt, build_prompt, read_reply

__all__ = [
    "JSON_MODES",
    "REPLY_SCHEMA",
    "Answer",
    "Budget",
    "ChatClient",
    "JsonMode",
    "MindAsker",
    "MindSettings",
    "OpenAIChat",
    "Prompt",
    "build_prompt",
    "open_asker",
    "read_reply",
]
