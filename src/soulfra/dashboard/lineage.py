"""The lineage graph's layout: instances as nodes in lanes, left to right by generation, with an edge from each parent
(fork and clone: one; merge: two). Pure: rows of the instance list in, positions out; the template draws the SVG.

A node's column is one past its furthest parent's (so a merge sits right of both), its lane is its first parent's
when that lane is still free at this column and a new one otherwise (as ``git log --graph`` keeps a branch on its
line). Parents outside the list (not visible to the caller) are left out: the child is drawn as a root.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["COLUMN", "ROW", "Edge", "Graph", "Node", "layout"]

COLUMN = 150  # px between generations
ROW = 64  # px between lanes (a node's name is written under it)
MARGIN_X = 70  # room for the first column's names, centred under their nodes
MARGIN_Y = 24
_KINDS = {"fork": "fork", "clone": "clone", "abandoned-branch": "branch"}  # a record's world.origin -> its kind


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    id: str
    x: int
    y: int
    status: str  # running, frozen, overridden, failed, abandoned, paused, stored
    kind: str  # root, fork, clone, merge, branch (abandoned by a revert), import
    tick: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Edge:
    parent: str
    child: str
    x1: int
    y1: int
    x2: int
    y2: int
    label: str  # "fork @ 18", "clone @ 40", "branch @ 52", "merge"
    second: bool  # a merge's second parent


@dataclass(frozen=True, slots=True, kw_only=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    width: int
    height: int


def status_of(row: Mapping[str, Any]) -> str:
    """What the dashboard calls an instance's status: abandoned if its record says so, else how it runs."""
    if row.get("status") == "abandoned":
        return "abandoned"
    if row.get("failure"):
        return "failed"
    return str(row.get("state") or row.get("status") or "stored")


def kind_of(row: Mapping[str, Any]) -> str:
    if row.get("merge_parent_id"):
        return "merge"
    world = row.get("world") or {}
    origin = world.get("origin") if isinstance(world, Mapping) else None
    if row.get("parent_id"):
        return _KINDS.get(str(origin), "fork")
    return "import" if isinstance(world, Mapping) and "imported" in world else "root"


def layout(rows: Sequence[Mapping[str, Any]]) -> Graph:
    """Positions for every instance of ``rows`` (the instance list) and the edges between them."""
    by_id = {str(row["id"]): row for row in rows}
    order = sorted(by_id, key=lambda i: (str(by_id[i].get("created_at") or ""), i))

    def parents(instance_id: str) -> list[str]:
        row = by_id[instance_id]
        found = [str(p) for p in (row.get("parent_id"), row.get("merge_parent_id")) if p]
        return [p for p in found if p in by_id and p != instance_id]

    column: dict[str, int] = {}

    def column_of(instance_id: str, seen: frozenset[str] = frozenset()) -> int:
        if instance_id not in column:
            ups = [p for p in parents(instance_id) if p not in seen]  # a cycle (never stored) cannot hang the layout
            column[instance_id] = 1 + max((column_of(p, seen | {instance_id}) for p in ups), default=-1)
        return column[instance_id]

    lane: dict[str, int] = {}
    lane_end: list[int] = []  # per lane: the last column it holds
    for instance_id in sorted(order, key=lambda i: (column_of(i), order.index(i))):
        col = column_of(instance_id)
        first = parents(instance_id)[:1]
        wanted = lane[first[0]] if first else None
        if wanted is not None and lane_end[wanted] < col:
            lane[instance_id] = wanted
            lane_end[wanted] = col
        else:
            lane[instance_id] = len(lane_end)
            lane_end.append(col)

    def place(instance_id: str) -> tuple[int, int]:
        return MARGIN_X + column_of(instance_id) * COLUMN, MARGIN_Y + lane[instance_id] * ROW

    nodes = []
    edges = []
    for instance_id in order:
        row = by_id[instance_id]
        x, y = place(instance_id)
        kind = kind_of(row)
        tick = row.get("fork_tick")
        nodes.append(
            Node(id=instance_id, x=x, y=y, status=status_of(row), kind=kind, tick=None if tick is None else int(tick))
        )
        for n, parent in enumerate(parents(instance_id)):
            px, py = place(parent)
            label = "merge" if kind == "merge" else f"{kind} @ {tick}" if tick is not None else kind
            edges.append(Edge(parent=parent, child=instance_id, x1=px, y1=py, x2=x, y2=y, label=label, second=n == 1))
    width = max((n.x for n in nodes), default=0) + MARGIN_X
    height = max((n.y for n in nodes), default=0) + ROW // 2 + MARGIN_Y // 2
    return Graph(nodes=tuple(nodes), edges=tuple(edges), width=width, height=height)
