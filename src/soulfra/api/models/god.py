"""Response models of the god-mode commands: one per kind of result (``soulfra.meta.results``), each with the
command's ``type`` and ``ok``. ``GodReply`` is any of them, for ``POST /api/god``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from soulfra.api.models.base import Closed
from soulfra.api.models.runtime import Ack

__all__ = [
    "CloneReply",
    "ForkReply",
    "FreezeReply",
    "GodReply",
    "InterventionReply",
    "LinkReply",
    "MergePreviewReply",
    "MergeReply",
    "MessageReply",
    "PossessionReply",
    "RevertReply",
    "RewriteReply",
    "ThawReply",
    "UnlinkReply",
]


class _Reply(Closed):
    type: str = Field(description="The command's type")
    ok: Literal[True] = True


class TickOf(Closed):
    instance: str
    tick: int


class FreezeReply(_Reply):
    type: Literal["FREEZE_TIME"]
    frozen: list[TickOf]
    until: str | None = Field(description="When a timed freeze ends (ISO 8601); None: until thawed")


class ThawReply(_Reply):
    type: Literal["THAW_TIME"]
    thawed: list[TickOf]


class ForkMade(Closed):
    id: str
    tick: int
    state_hash: str
    modifications: int = Field(description="How many modifications were applied")


class CloneReply(_Reply):
    type: Literal["CLONE_INSTANCE"]
    source: str
    tick: int
    id: str
    state_hash: str
    modifications: int = Field(description="How many modifications were applied")


class ForkReply(_Reply):
    type: Literal["REALITY_FORK"]
    source: str
    tick: int
    forks: list[ForkMade]


class MergeBase(Closed):
    instance: str
    tick: int


class MergeReply(_Reply):
    """The merged instance and its merge report (also kept as the instance's ``merge_report`` trace)."""

    type: Literal["MERGE_INSTANCES"]
    id: str
    parents: list[str]
    base: MergeBase = Field(description="Where the two histories last met")
    tick: int
    state_hash: str
    policies: dict[str, str]
    changes: dict[str, dict[str, int]]
    renumbered: dict[str, dict[str, int]]
    conflicts: list[dict[str, Any]]


class MergePreviewReply(_Reply):
    """What ``MERGE_INSTANCES`` would report if it ran now: the same fields as its reply but the new instance's id
    (nothing is made), and the tick each parent was read at (a running parent moves on: freeze both for a preview
    that stays exact)."""

    type: Literal["MERGE_PREVIEW"]
    parents: list[str]
    parent_ticks: list[int] = Field(description="The tick each parent's state was read at")
    base: MergeBase = Field(description="Where the two histories last met")
    tick: int
    state_hash: str = Field(description="The merged state's hash, as the merge would make it")
    policies: dict[str, str]
    changes: dict[str, dict[str, int]]
    renumbered: dict[str, dict[str, int]]
    conflicts: list[dict[str, Any]]


class PossessionReply(_Reply):
    type: Literal["AGENT_POSSESSION"]
    instance: str
    agent: str
    action: str
    ack: Ack


class LinkReply(_Reply):
    type: Literal["CROSS_INSTANCE_COMMUNICATION"]
    source: str
    target: str
    links: list[str]


class UnlinkReply(_Reply):
    type: Literal["CROSS_INSTANCE_COMMUNICATION"]
    source: str
    target: str
    removed: bool


class MessageReply(_Reply):
    type: Literal["CROSS_INSTANCE_COMMUNICATION"]
    source: str
    target: str
    action: str
    ack: Ack


class AbandonedBranch(Closed):
    id: str
    from_tick: int
    head_tick: int


class RevertReply(_Reply):
    type: Literal["TIMELINE_REVERT"]
    instance: str
    tick: int
    state_hash: str
    abandoned_branch: AbandonedBranch
    branches: list[str]


class InterventionReply(_Reply):
    type: Literal["PUPPET_MASTER_INTERVENTION"]
    instance: str
    kind: Literal["personality", "ritual", "vibe"]
    ack: Ack


class RewriteReply(_Reply):
    type: Literal["PUPPET_MASTER_INTERVENTION"]
    instance: str
    kind: Literal["rewrite"]
    branch: str
    from_tick: int
    dropped: int
    added: int
    tick: int
    state_hash: str
    source_state_hash: str


GodReply = (
    FreezeReply
    | ThawReply
    | CloneReply
    | ForkReply
    | MergeReply
    | PossessionReply
    | LinkReply
    | UnlinkReply
    | MessageReply
    | RevertReply
    | InterventionReply
    | RewriteReply
)
