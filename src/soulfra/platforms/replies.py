"""What the bridge's named calls hand back: one frozen dataclass per kind of runtime reply, instead of a dict.

The runtime builds its replies with ``to_json`` and the bridge reads them with ``from_json``, so the JSON on the bus
is written down once, here, and keeps its exact keys and order (the API passes some of these bodies on unchanged).
The generic ``CrossPlatformBridge.request`` stays a dict: it is the wire, for ops no caller needs typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["InputAck", "InstanceStatus", "Restored", "RunState", "UnifiedRecord"]


@dataclass(frozen=True, slots=True, kw_only=True)
class InputAck:
    """A stored input's acknowledgement: its sequence number in the log, the tick it applies at, and its type."""

    seq: int
    tick: int
    type: str

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> InputAck:
        """From the runtime's reply (``whisper``, or one of ``submit``'s ``acks``), which crosses the bus as JSON."""
        return cls(seq=int(obj["seq"]), tick=int(obj["tick"]), type=str(obj["type"]))

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "tick": self.tick, "type": self.type}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunState:
    """The runtime's answer to pause, resume and override: the instance, its tick then, and what the call changed.

    ``paused`` and ``overridden`` are None where the reply does not speak of them: a pause says nothing of an
    override, an override nothing of a pause (a resume clears both)."""

    instance: str
    tick: int
    paused: bool | None = None
    overridden: bool | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> RunState:
        paused, overridden = obj.get("paused"), obj.get("overridden")
        return cls(
            instance=str(obj["instance"]),
            tick=int(obj["tick"]),
            paused=None if paused is None else bool(paused),
            overridden=None if overridden is None else bool(overridden),
        )

    def to_json(self) -> dict[str, Any]:
        """The keys in the order the runtime has always sent them; a flag that is None is left out."""
        out: dict[str, Any] = {"instance": self.instance}
        if self.paused is not None:
            out["paused"] = self.paused
        if self.overridden is not None:
            out["overridden"] = self.overridden
        out["tick"] = self.tick
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceStatus:
    """An instance as ``FourPlatformInstance.status`` sees it: its world's seed and tick, and each platform's own
    status report (or the error that stood in for it), as ``CrossPlatformBridge.cross_platform_status`` gives them."""

    instance: str
    seed: int
    tick: int
    platforms: Mapping[str, Mapping[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance, "seed": self.seed, "tick": self.tick, "platforms": dict(self.platforms)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Restored:
    """A live world rebuilt from ``snapshot`` (at ``from_tick``) up to ``tick``; ``matches_live`` when the rebuilt
    state hash is the one the live world had."""

    snapshot: int
    from_tick: int
    tick: int
    state_hash: str
    matches_live: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot, "from_tick": self.from_tick, "tick": self.tick, "state_hash": self.state_hash,
            "matches_live": self.matches_live,
        }  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class UnifiedRecord:
    """A unified snapshot just taken by the mirror: the merged view of one tick and its hash, the conflicts and how
    each was settled, the four platforms' own views, the stored snapshot, how long the runtime was held
    (``pause_ns``) and the whole merge took (``took_ns``), and the record's id in the ritual log.

    The views, the merged view and the snapshot stay JSON objects: they are each platform's own report, passed on."""

    id: int
    instance: str
    tick: int
    system_hash: str
    merged: Mapping[str, Any]
    conflicts: tuple[Mapping[str, Any], ...]
    views: Mapping[str, Mapping[str, Any]]
    snapshot: Mapping[str, Any]
    pause_ns: int
    took_ns: int

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> UnifiedRecord:
        """From the mirror's reply to ``unified``."""
        return cls(
            id=int(obj["id"]), instance=str(obj["instance"]), tick=int(obj["tick"]),
            system_hash=str(obj["system_hash"]), merged=obj["merged"], conflicts=tuple(obj["conflicts"]),
            views=obj["views"], snapshot=obj["snapshot"], pause_ns=int(obj["pause_ns"]), took_ns=int(obj["took_ns"]),
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The keys in the order the mirror writes them."""
        return {
            "tick": self.tick, "system_hash": self.system_hash, "merged": self.merged,
            "conflicts": list(self.conflicts), "views": self.views, "instance": self.instance,
            "snapshot": self.snapshot, "pause_ns": self.pause_ns, "took_ns": self.took_ns, "id": self.id,
        }  # fmt: skip
