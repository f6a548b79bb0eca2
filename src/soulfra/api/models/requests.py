"""Request bodies of the API's routes that take one (the god commands' are ``soulfra.meta.commands``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ActBody", "LicenceBody", "OverrideBody", "PossessBody", "RulesBody", "ValidateBody", "WhisperBody"]

Tone = Literal["gentle", "urgent", "playful", "solemn", "dark"]


class WhisperBody(BaseModel):
    text: str = Field(min_length=1, max_length=500)
    target: str = Field(default="*", min_length=1, max_length=64, description="an agent id, or * for every agent")
    tone: Tone = "gentle"
    tick: int | None = Field(default=None, ge=0, le=2**62, description="the tick to apply at; default the next")


class OverrideBody(BaseModel):
    reason: str = Field(default="", max_length=500)


class PossessBody(BaseModel):
    operator: str = Field(default="puppet-master", min_length=1, max_length=64)


class ActBody(BaseModel):
    action: Literal["post", "propose_ritual", "join_ritual", "bless", "refuse", "assign_task", "work", "rest"]
    text: str | None = Field(default=None, max_length=500)
    topic: str | None = Field(default=None, max_length=64)
    ritual: int | None = Field(default=None, ge=0, le=2**62)
    task: int | None = Field(default=None, ge=0, le=2**62)
    name: str | None = Field(default=None, max_length=64)
    participants: list[str] | None = Field(default=None, max_length=64)
    goal: str | None = Field(default=None, max_length=200)


class ValidateBody(BaseModel):
    subject: Literal["snapshot", "instance", "input", "fork", "export"]
    snapshot: int | None = Field(default=None, ge=0, le=2**62)
    tick: int | None = Field(default=None, ge=0, le=2**62)
    input: dict[str, Any] | None = None


class LicenceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fork: bool = True
    export: bool = True
    max_forks: int | None = Field(default=None, ge=0, le=100_000)


RuleName = Literal["snapshot-hash", "lineage", "agent-limit", "required-agents", "input-size", "licence"]


class RulesBody(BaseModel):
    """An instance's protocol rules and licence terms, replacing those it had (what is left out takes its default)."""

    model_config = ConfigDict(extra="forbid")

    max_agents: int = Field(default=100_000, ge=1, le=100_000)
    required_agents: list[str] = Field(default=["cal-riven", "arty", "agent-zero"], max_length=64)
    max_input_bytes: int = Field(default=4096, ge=1, le=1 << 20)
    max_lineage_depth: int = Field(default=64, ge=1, le=10_000)
    licence: LicenceBody = Field(default_factory=LicenceBody)
    rules: list[RuleName] | None = Field(default=None, description="The rules switched on (default: all)")
