"""Response models of the puppet master's instance routes: the instance list, one instance with its lineage,
creation and deletion, and package imports."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from soulfra.api.models.base import Closed
from soulfra.api.models.runtime import Failure

__all__ = ["Branch", "Deleted", "ImportReply", "Imported", "InstanceDetail", "InstanceList", "InstanceSummary"]


class InstanceSummary(Closed):
    """An instance's stored record and how it runs. Only ``id`` is always there: a server without a puppet master
    lists stored records alone, and ``agents`` is there only for a live instance (the route leaves out what it
    was not given rather than sending it as null)."""

    id: str
    name: str | None = None
    seed: int | None = None
    status: str | None = Field(default=None, description="active, frozen or abandoned")
    head_tick: int | None = Field(default=None, description="The last tick stored")
    genesis_hash: str | None = None
    world: dict[str, Any] | None = Field(default=None, description="The world's description, as stored")
    parent_id: str | None = None
    fork_tick: int | None = None
    merge_parent_id: str | None = None
    created_at: str | None = None
    failure: Failure | None = None
    tick: int | None = Field(default=None, description="The tick it runs at (the stored head when not live)")
    state: str | None = Field(
        default=None,
        description="running, paused, frozen, overridden, failed, idle, stored; on a cluster also recovering (its "
        "node died and another takes it over)",
    )
    agents: int | None = Field(default=None, description="Live instances only")
    node: str | None = Field(default=None, description="On a cluster: the node it runs on (none while not running)")


class InstanceList(Closed):
    default: str = Field(description="The instance the public surface (/api/vibe/weather, ...) shows")
    instances: list[InstanceSummary]


class Branch(Closed):
    """An abandoned branch: the history a revert left behind."""

    id: str
    from_tick: int | None
    head_tick: int


class LineagePoint(Closed):
    instance: str
    tick: int


class InstanceDetail(InstanceSummary):
    children: list[str] = Field(description="Forks, clones and merges made from it")
    branches: list[Branch]
    lineage: list[LineagePoint] = Field(description="Every point of history it descends from, nearest first")
    links: list[str] = Field(description="The instances it is linked to")


class Deleted(Closed):
    deleted: str
    head_tick: int


class Imported(Closed):
    id: str
    from_: str = Field(alias="from", description="The instance's id in the package")
    head_tick: int
    state_hash: str
    inputs: int
    replayed: bool


class ImportReply(Closed):
    key_id: str = Field(description="The key the package was signed with")
    imported: list[Imported]
