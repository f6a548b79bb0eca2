"""What each god-mode command returns: one frozen dataclass per kind of result, each naming the instances it touched.

These are core objects, not API schemas: the handlers in ``soulfra.meta.god`` build them, ``PuppetMasterEngine``
audits them and the API turns them into its response models (``soulfra.api.models``) through ``reply()``. Frozen
dataclasses rather than pydantic models because the meta layer holds no pydantic outside its request schemas
(``soulfra.meta.commands``): a result is built from values the handler has already checked, so validating it again
would only cost time, and its JSON form is one explicit function (``to_json``) the API validates at its edge.

``subject`` is the one instance an audit record files a result under (None for freeze and thaw, which may touch
many); ``instances()`` is every instance the command read, wrote or made, in the order the result names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from soulfra.platforms.replies import InputAck  # an input's ack is the runtime's reply; results carry it as is

__all__ = [
    "AbandonedBranch",
    "CloneResult",
    "ForkMade",
    "ForkResult",
    "FreezeResult",
    "GodResult",
    "InputAck",  # re-exported: defined with the other bus replies in soulfra.platforms.replies
    "InterventionResult",
    "LinkResult",
    "MergeBase",
    "MergePreview",
    "MergeResult",
    "MessageResult",
    "PossessionResult",
    "RevertResult",
    "RewriteResult",
    "ThawResult",
    "TickOf",
    "UnlinkResult",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class GodResult:
    """The base of every result: ``command`` is the type of the command that made it."""

    command: ClassVar[str]

    @property
    def subject(self) -> str | None:
        """The one instance the audit log files this result under."""
        raise NotImplementedError

    def instances(self) -> tuple[str, ...]:
        """Every instance the command touched (read, changed or made)."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """The result's own fields, as the API and the audit log show them."""
        raise NotImplementedError

    def reply(self) -> dict[str, Any]:
        """The whole answer to the command: its type, ``ok``, and the result's fields."""
        return {"type": self.command, "ok": True, **self.to_json()}


@dataclass(frozen=True, slots=True, kw_only=True)
class TickOf:
    """An instance and the tick it stood at when a freeze or thaw reached it."""

    instance: str
    tick: int

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance, "tick": self.tick}


@dataclass(frozen=True, slots=True, kw_only=True)
class FreezeResult(GodResult):
    command: ClassVar[str] = "FREEZE_TIME"
    frozen: tuple[TickOf, ...]
    until: str | None  # the wall-clock end of a timed freeze (ISO 8601), None until thawed

    @property
    def subject(self) -> str | None:
        return None

    def instances(self) -> tuple[str, ...]:
        return tuple(f.instance for f in self.frozen)

    def to_json(self) -> dict[str, Any]:
        return {"frozen": [f.to_json() for f in self.frozen], "until": self.until}


@dataclass(frozen=True, slots=True, kw_only=True)
class ThawResult(GodResult):
    command: ClassVar[str] = "THAW_TIME"
    thawed: tuple[TickOf, ...]

    @property
    def subject(self) -> str | None:
        return None

    def instances(self) -> tuple[str, ...]:
        return tuple(t.instance for t in self.thawed)

    def to_json(self) -> dict[str, Any]:
        return {"thawed": [t.to_json() for t in self.thawed]}


@dataclass(frozen=True, slots=True, kw_only=True)
class ForkMade:
    """One new instance of a clone or fork: its id, the tick it starts at, its state hash and modification count."""

    id: str
    tick: int
    state_hash: str
    modifications: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "tick": self.tick, "state_hash": self.state_hash, "modifications": self.modifications}


@dataclass(frozen=True, slots=True, kw_only=True)
class CloneResult(GodResult):
    command: ClassVar[str] = "CLONE_INSTANCE"
    source: str
    made: ForkMade

    @property
    def subject(self) -> str | None:
        return self.source

    def instances(self) -> tuple[str, ...]:
        return (self.source, self.made.id)

    def to_json(self) -> dict[str, Any]:
        made = self.made
        return {
            "source": self.source, "tick": made.tick, "id": made.id, "state_hash": made.state_hash,
            "modifications": made.modifications,
        }  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class ForkResult(GodResult):
    command: ClassVar[str] = "REALITY_FORK"
    source: str
    tick: int
    forks: tuple[ForkMade, ...]

    @property
    def subject(self) -> str | None:
        return self.source

    def instances(self) -> tuple[str, ...]:
        return (self.source, *(f.id for f in self.forks))

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "tick": self.tick, "forks": [f.to_json() for f in self.forks]}


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeBase:
    """Where the two merged histories last met."""

    instance: str
    tick: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeResult(GodResult):
    command: ClassVar[str] = "MERGE_INSTANCES"
    id: str
    parents: tuple[str, str]
    base: MergeBase
    tick: int
    report: Mapping[str, Any]  # ``soulfra.meta.merge.MergeResult.to_json()``: also stored as the merge's trace

    @property
    def subject(self) -> str | None:
        return self.id

    def instances(self) -> tuple[str, ...]:
        return (self.id, *self.parents)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "parents": list(self.parents),
            "base": {"instance": self.base.instance, "tick": self.base.tick},
            "tick": self.tick,
            **self.report,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class MergePreview:
    """What MERGE_INSTANCES would report if it ran now (``preview_merge``): the same report, nothing made. Not a
    ``GodResult``: no command made it, and nothing is audited as one (only the request that asked for it)."""

    parents: tuple[str, str]
    parent_ticks: tuple[int, int]  # the tick each parent's state was read at: a running parent moves on
    base: MergeBase
    tick: int
    report: Mapping[str, Any]  # ``soulfra.meta.merge.MergeResult.to_json()``, as the merge would store it

    def reply(self) -> dict[str, Any]:
        """The API's answer (``MergePreviewReply``): ``MERGE_INSTANCES``'s reply without the new id."""
        return {
            "type": "MERGE_PREVIEW",
            "ok": True,
            "parents": list(self.parents),
            "parent_ticks": list(self.parent_ticks),
            "base": {"instance": self.base.instance, "tick": self.base.tick},
            "tick": self.tick,
            **self.report,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class _OfInstance(GodResult):
    """A result about one instance, ``instance``, that the audit files it under."""

    instance: str

    @property
    def subject(self) -> str | None:
        return self.instance

    def instances(self) -> tuple[str, ...]:
        return (self.instance,)


@dataclass(frozen=True, slots=True, kw_only=True)
class PossessionResult(_OfInstance):
    command: ClassVar[str] = "AGENT_POSSESSION"
    agent: str
    action: str
    ack: InputAck

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance, "agent": self.agent, "action": self.action, "ack": self.ack.to_json()}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Across(GodResult):
    """A cross-instance result: ``source`` speaks or links, ``target`` hears or is linked."""

    command: ClassVar[str] = "CROSS_INSTANCE_COMMUNICATION"
    source: str
    target: str

    @property
    def subject(self) -> str | None:
        return self.source

    def instances(self) -> tuple[str, ...]:
        return (self.source, self.target)


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkResult(_Across):
    links: tuple[str, ...]  # every link of source afterwards

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "links": list(self.links)}


@dataclass(frozen=True, slots=True, kw_only=True)
class UnlinkResult(_Across):
    removed: bool  # False when the two were not linked

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "removed": self.removed}


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageResult(_Across):
    action: str  # whisper or post
    ack: InputAck  # of the input stored in target

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "action": self.action, "ack": self.ack.to_json()}


@dataclass(frozen=True, slots=True, kw_only=True)
class AbandonedBranch:
    """The old head a revert kept: the branch's id, the tick it splits off at and the head it had."""

    id: str
    from_tick: int
    head_tick: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RevertResult(_OfInstance):
    command: ClassVar[str] = "TIMELINE_REVERT"
    tick: int
    state_hash: str
    abandoned_branch: AbandonedBranch
    branches: tuple[str, ...]  # every abandoned branch of the instance afterwards

    def instances(self) -> tuple[str, ...]:
        return (self.instance, self.abandoned_branch.id)

    def to_json(self) -> dict[str, Any]:
        branch = self.abandoned_branch
        return {
            "instance": self.instance,
            "tick": self.tick,
            "state_hash": self.state_hash,
            "abandoned_branch": {"id": branch.id, "from_tick": branch.from_tick, "head_tick": branch.head_tick},
            "branches": list(self.branches),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class InterventionResult(_OfInstance):
    """A personality, ritual or vibe intervention, stored as an input of the instance."""

    command: ClassVar[str] = "PUPPET_MASTER_INTERVENTION"
    kind: str
    ack: InputAck

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance, "kind": self.kind, "ack": self.ack.to_json()}


@dataclass(frozen=True, slots=True, kw_only=True)
class RewriteResult(_OfInstance):
    """History of ``instance`` rewritten from ``from_tick`` into the new branch ``branch``."""

    command: ClassVar[str] = "PUPPET_MASTER_INTERVENTION"
    branch: str
    from_tick: int
    dropped: int
    added: int
    tick: int  # the branch's tick when it was written: the source's head
    state_hash: str  # the branch's, at ``tick``
    source_state_hash: str  # the source's, at ``tick``

    def instances(self) -> tuple[str, ...]:
        return (self.instance, self.branch)

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "kind": "rewrite",
            "branch": self.branch,
            "from_tick": self.from_tick,
            "dropped": self.dropped,
            "added": self.added,
            "tick": self.tick,
            "state_hash": self.state_hash,
            "source_state_hash": self.source_state_hash,
        }
