"""A benchmark's targets, each judged met or not met on a figure of the run (beside its peer where it has one).

Targets live in the JSON a benchmark writes (``{"target", "measured", "peer", "met"}``) and in one table it prints;
how each figure is measured is the benchmark's own business.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.table import Table


def target(wanted: str, measured: float, *, met: bool, peer: str = "") -> dict[str, Any]:
    """One target: what is wanted, the figure measured, what the peer measured in the same run (if anything)."""
    return {"target": wanted, "measured": measured, "peer": peer, "met": met}


def targets_table(targets: dict[str, dict[str, Any]], shown: Callable[[str, float], str]) -> Table:
    """The targets with their verdicts; ``shown`` formats a measured figure by the target's key."""
    table = Table(title="targets")
    for column in ("target", "wanted", "measured", "peer, same run", "verdict"):
        table.add_column(column, justify="left" if column in ("target", "verdict") else "right")
    for key, item in targets.items():
        table.add_row(
            key, item["target"], shown(key, item["measured"]), item["peer"], "met" if item["met"] else "not met"
        )
    return table
