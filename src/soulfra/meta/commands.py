"""The god-mode commands, as typed request schemas: one per command, told apart by ``type``.

These are the puppet master's edge: the API validates ``POST /api/god`` bodies against ``GodCommand`` and the CLI
builds the same objects. Each command names the existing instances it touches (``touches``), which the engine locks
and checks before the command runs; what each command does is ``PuppetMasterEngine.execute``'s job.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

__all__ = [
    "COMMAND_TYPES",
    "AgentPossession",
    "CloneInstance",
    "CrossInstanceCommunication",
    "ForkSpec",
    "FreezeTime",
    "GodCommand",
    "MergeInstances",
    "PuppetMasterIntervention",
    "RealityFork",
    "ThawTime",
    "TimelineRevert",
    "parse_command",
]

InstanceRef = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$", description="An instance id")]
Modification = Annotated[
    dict[str, Any],
    Field(description='An input without its tick, e.g. {"type": "whisper", "target": "arty", "text": "hello"}'),
]
MAX_FORKS = 64
BIG = 2**62  # ticks, snapshot ids, sequence numbers: beyond any real value, within every database's integers


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def touches(self, live: Collection[str]) -> tuple[str, ...]:
        """The existing instances this command reads or writes (not the ones it makes); ``live`` is every running
        instance, for the commands that default to all of them."""
        raise NotImplementedError


class FreezeTime(_Command):
    """Stop the ticks of some instances (all when ``instances`` is omitted) for ``duration`` seconds, or until
    thawed."""

    type: Literal["FREEZE_TIME"] = "FREEZE_TIME"
    instances: list[InstanceRef] | None = Field(default=None, max_length=10_000)
    duration: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)

    def touches(self, live: Collection[str]) -> tuple[str, ...]:
        return tuple(self.instances if self.instances is not None else live)


class ThawTime(_Command):
    """Let frozen instances tick again (all frozen ones when ``instances`` is omitted)."""

    type: Literal["THAW_TIME"] = "THAW_TIME"
    instances: list[InstanceRef] | None = Field(default=None, max_length=10_000)

    def touches(self, live: Collection[str]) -> tuple[str, ...]:
        return tuple(self.instances if self.instances is not None else live)


class CloneInstance(_Command):
    """A copy of ``source`` at its current tick (or ``tick``), with modifications applied from the next tick."""

    type: Literal["CLONE_INSTANCE"] = "CLONE_INSTANCE"
    source: InstanceRef
    id: InstanceRef | None = None
    name: str | None = Field(default=None, max_length=200)
    tick: int | None = Field(default=None, ge=0, le=BIG)
    modifications: list[Modification] = Field(default_factory=list, max_length=256)
    start: bool = True

    def touches(self, live: Collection[str]) -> tuple[str, ...]:
        return (self.source,)


class ForkSpec(_Command):
    id: InstanceRef | None = None
    modifications: list[Modification] = Field(default_factory=list, max_length=256)


class RealityFork(_Command):
    """N forks of ``source`` at one tick, each with its own modifications; each continues deterministically."""

    type: Literal["REALITY_FORK"] = "REALITY_FORK"
    source: InstanceRef
    tick: int | None = Field(default=None, ge=0, le=BIG)
    forks: list[ForkSpec] = Field(min_length=1, max_length=MAX_FORKS)
    start: bool = True

    def touches(self, live: Collection[str]) -> tuple[str, ...]:
        return (self.source,)


class MergeInstances(_Command):
    """Three-way merge of ``ours`` and ``theirs`` from their common ancestor into a new instance with two parents."""

    type: Literal["MERGE_INSTANCES"] = "MERGE_INSTANCES"
    ours: InstanceRef
    theirs: InstanceRef
    id: InstanceRef | None = None
    policies: dict[str, str] = Field(default_factory=dict)
    start: bool = True

    def touches(self, live: Collection[str]) -> tuple[str, ...]:
        return (self.ours, self.theirs)


class AgentPossession(_Command):
    """Take (``possess``), drive (``act``) or give back (``release``) one agent."""

    type: Literal["AGENT_POSSESSION"] = "AGENT_POSSESSION"
    instance: InstanceRef
    agent: str = Field(min_length=1, max_length=64)
    action: Literal["possess", "act", "release"] = "possess"
    operator: str = Field(default="puppet-master", min_length=1, max_length=100)
    act: dict[str, Any] | None = Field(default=None, description='For "act": {"action": "post", "text": ...}')

    def touches(self, live: Collection[str]) -> tuple[str, ...]:
        return (self.instance,)

    @model_validator(mode="after")
    def _act_needs_a_body(self) -> AgentPossession:
        if (self.action == "act") != (self.act is not None):
            raise ValueError("'act' is required with action 'act' and only then")
        return self


class TimelineRevert(_Command):
    """Move an instance back to a tick or snapshot; what came after is kept as an abandoned branch."""

    type: Literal["TIMELINE_REVERT"] = "TIMELINE_REVERT"
    instance: InstanceRef
    tick: int | None = Field(default=None, ge=0, le=BIG)
    snapshot: int | None = Field(default=None, ge=1, le=BIG)

    def touches(self, live: Collection[str]) -> tuple[str, ...]:
        return (self.instance,)

    @model_validator(mode="after")
    def _one_target(self) -> TimelineRevert:
        if (self.tick is None) == (self.snapshot is None):
            raise ValueError("give exactly one of 'tick' and 'snapshot'")
        return self


class CrossInstanceCommunication(_Command):
    """Link two instances, or let an agent of one whisper to (or post in a thread of) the other."""

    type: Literal["CROSS_INSTANCE_COMMUNICATION"] = "CROSS_INSTANCE_COMMUNICATION"
    action: Literal["link", "unlink", "whisper", "post"]
    source: InstanceRef
    target: InstanceRef
    agent: str | None = Field(default=None, min_length=1, max_length=64, description="The speaking agent in source")
    to: str = Field(default="*", min_length=1, max_length=64, description="The agent addressed in target (whisper)")
    thread: int | None = Field(default=None, ge=1, le=BIG, description="The thread of target posted in (post)")
    text: str | None = Field(default=None, min_length=1, max_length=400)
    tone: Literal["gentle", "urgent", "playful", "solemn", "dark"] = "gentle"

    def touches(self, live: Collection[str]) -> tuple[str, ...]:
        return (self.source, self.target)

    @model_validator(mode="after")
    def _message_fields(self) -> CrossInstanceCommunication:
        if self.source == self.target:
            raise ValueError("an instance cannot be linked to or message itself")
        if self.action in ("whisper", "post") and (self.agent is None or self.text is None):
            raise ValueError(f"a {self.action} needs 'agent' (who speaks in source) and 'text'")
        if self.action == "post" and self.thread is None:
            raise ValueError("a post needs 'thread' (an open thread of target)")
        return self


class PuppetMasterIntervention(_Command):
    """Modify a personality, inject a ritual, alter the vibe weather, or rewrite history as a new branch."""

    type: Literal["PUPPET_MASTER_INTERVENTION"] = "PUPPET_MASTER_INTERVENTION"
    instance: InstanceRef
    kind: Literal["personality", "ritual", "vibe", "rewrite"]
    agent: str | None = Field(default=None, max_length=64)
    traits: dict[str, float | str] | None = None
    name: str | None = Field(default=None, max_length=64)
    participants: list[str] | None = Field(default=None, max_length=12)
    blessed: bool = False
    condition: str | None = Field(default=None, max_length=32)
    intensity: float | str = 0.8
    duration: int = Field(default=20, ge=1, le=1_000_000)
    from_tick: int | None = Field(
        default=None, ge=0, le=BIG, description="rewrite: history from this tick is rewritten"
    )
    drop: list[Annotated[int, Field(ge=1, le=BIG)]] = Field(
        default_factory=list, max_length=10_000, description="rewrite: input seqs to leave out"
    )
    add: list[dict[str, Any]] = Field(default_factory=list, max_length=256, description="rewrite: inputs to add")
    id: InstanceRef | None = Field(default=None, description="rewrite: the new branch's id")

    def touches(self, live: Collection[str]) -> tuple[str, ...]:
        return (self.instance,)

    def as_input(self) -> dict[str, Any]:
        """The intervention as an input object (without its tick); not for ``rewrite``."""
        if self.kind == "personality":
            return {"type": "intervene", "kind": "personality", "agent": self.agent, "traits": self.traits}
        if self.kind == "ritual":
            return {
                "type": "intervene", "kind": "ritual", "name": self.name, "participants": self.participants,
                "blessed": self.blessed,
            }  # fmt: skip
        return {
            "type": "intervene", "kind": "vibe", "condition": self.condition, "intensity": str(self.intensity),
            "duration": self.duration,
        }  # fmt: skip

    @model_validator(mode="after")
    def _fields_for_kind(self) -> PuppetMasterIntervention:
        needed = {
            "personality": ("agent", "traits"),
            "ritual": ("name", "participants"),
            "vibe": ("condition",),
            "rewrite": ("from_tick",),
        }[self.kind]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind} intervention needs {', '.join(missing)}")
        return self


GodCommand = Annotated[
    FreezeTime
    | ThawTime
    | CloneInstance
    | RealityFork
    | MergeInstances
    | AgentPossession
    | TimelineRevert
    | CrossInstanceCommunication
    | PuppetMasterIntervention,
    Field(discriminator="type"),
]
COMMAND_TYPES = (
    "FREEZE_TIME", "THAW_TIME", "CLONE_INSTANCE", "REALITY_FORK", "MERGE_INSTANCES", "AGENT_POSSESSION",
    "TIMELINE_REVERT", "CROSS_INSTANCE_COMMUNICATION", "PUPPET_MASTER_INTERVENTION",
)  # fmt: skip
_ADAPTER: TypeAdapter[GodCommand] = TypeAdapter(GodCommand)


def parse_command(obj: object) -> GodCommand:
    """Validate one command object; pydantic's ``ValidationError`` on bad input (the edges turn it into theirs)."""
    return _ADAPTER.validate_python(obj)
