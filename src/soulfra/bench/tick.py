"""``soulfra bench tick``: agent-steps per second, and decisions per second.

Two measurements per population size, each the best of ``repeats`` runs after a short warm-up:
the built-in minds (Cal Riven, Arty, Agent Zero plus generated agents), and the mood-contagion rule (each step an
agent moves its mood a tenth of the way toward a random other agent's, plus small noise) as a Soulfra mind beside
the same rule written the usual way for Mesa 3 (``mesa.Agent`` subclasses stepped with ``shuffle_do``).

An agent-step is one agent carried through one tick (its mood moves every tick); a decision is one agent whose mind
ran (about 512 agents' worth of attention is shared out per tick, so in a large world few decide each tick). Both
are reported, from the same runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

from rich.console import Group
from rich.table import Table

from soulfra.bench.targets import target, targets_table
from soulfra.errors import ConfigError
from soulfra.world import World, WorldSpec

SEED = 20261124
WARMUP_TICKS = 3
TARGET_AGENTS = 10_000
TARGET_DECISIONS_PER_S = 100_000

Step = Callable[[], int]  # one tick; returns how many agents decided in it


def _best_rates(agents: int, ticks: int, repeats: int, make: Callable[[], Step]) -> tuple[float, float]:
    """Agent-steps and decisions per second, of the fastest of ``repeats`` runs."""
    best = (0.0, 0.0)
    for _ in range(repeats):
        step = make()
        for _ in range(WARMUP_TICKS):
            step()
        decided = 0
        begun = time.perf_counter()
        for _ in range(ticks):
            decided += step()
        elapsed = time.perf_counter() - begun
        best = max(best, (agents * ticks / elapsed, decided / elapsed))
    return best


def _builtin(agents: int, acted: list[int]) -> Step:
    world = World.create(SEED, agents=max(0, agents - 3))

    def step() -> int:
        world.step()
        acted.append(world.acted)
        return world.acted

    return step


def _contagion(agents: int) -> Step:
    world = World.create(SEED, WorldSpec(agents=()), agents=agents, mind="contagion")

    def step() -> int:
        world.step()
        return world.acted

    return step


def _mesa(agents: int) -> Step:
    try:
        import mesa  # noqa: PLC0415 - a benchmark-only dependency, loaded only when measured
    except ImportError:
        raise ConfigError("Mesa is not installed; install the peer with: pip install 'soulfra[bench]'") from None

    class MoodAgent(mesa.Agent):  # type: ignore[misc]
        def __init__(self, model: Any, number: int, mood: float) -> None:
            super().__init__(model)
            self.number = number
            self.mood = mood

        def step(self) -> None:
            model = self.model
            pick = model.random.randrange(model.size - 1)
            other = model.roster[pick + 1 if pick >= self.number else pick]
            mood = self.mood + (other.mood - self.mood) / 10 + model.random.uniform(-0.005, 0.005)
            self.mood = -1.0 if mood < -1.0 else 1.0 if mood > 1.0 else mood

    class MoodModel(mesa.Model):  # type: ignore[misc]
        def __init__(self, size: int) -> None:
            super().__init__(seed=SEED)
            self.size = size
            self.roster = [MoodAgent(self, i, self.random.uniform(-0.5, 0.5)) for i in range(size)]

        def step(self) -> None:
            self.agents.shuffle_do("step")

    model = MoodModel(agents)

    def step() -> int:
        model.step()
        return agents  # every Mesa agent runs its rule every step

    return step


def run(sizes: list[int], *, ticks: int, repeats: int) -> dict[str, Any]:
    rows = []
    for agents in sizes:
        acted: list[int] = []
        builtin, decisions = _best_rates(agents, ticks, repeats, lambda a=agents, out=acted: _builtin(a, out))  # type: ignore[misc]
        contagion, _ = _best_rates(agents, ticks, repeats, lambda a=agents: _contagion(a))  # type: ignore[misc]
        peer, _ = _best_rates(agents, ticks, repeats, lambda a=agents: _mesa(a))  # type: ignore[misc]
        rows.append(
            {
                "agents": agents,
                "builtin_steps_per_s": round(builtin, 1),
                "builtin_decisions_per_s": round(decisions, 1),
                "builtin_deciding_per_tick": round(sum(acted) / len(acted), 1),
                "contagion_steps_per_s": round(contagion, 1),
                "mesa_contagion_steps_per_s": round(peer, 1),
                "contagion_vs_mesa": round(contagion / peer, 2),
            }
        )
    return {
        "benchmark": "tick",
        "ticks": ticks,
        "repeats": repeats,
        "mesa_version": metadata.version("mesa"),
        "rows": rows,
        "targets": _targets(rows),
    }


def _targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Decisions per second at 10,000 agents with the built-in minds (judged only when that size ran)."""
    for row in rows:
        if row["agents"] == TARGET_AGENTS:
            decisions = row["builtin_decisions_per_s"]
            return {
                "decisions_per_s_at_10000": target(
                    f">= {TARGET_DECISIONS_PER_S:,}", decisions, met=decisions >= TARGET_DECISIONS_PER_S,
                    peer=f"none ({row['builtin_steps_per_s']:,.0f} agent-steps/s)",
                )
            }  # fmt: skip
    return {}


def render(results: dict[str, Any]) -> Group:
    title = f"agent-steps and decisions per second (best of {results['repeats']} x {results['ticks']} ticks)"
    table = Table(title=title)
    mesa = f"contagion (Mesa {results['mesa_version']})"
    for column in (
        "agents", "built-in: agent-steps/s", "built-in: decisions/s", "deciding per tick", "contagion (Soulfra)", mesa,
        "ratio",
    ):  # fmt: skip
        table.add_column(column, justify="right")
    for row in results["rows"]:
        table.add_row(
            f"{row['agents']:,}",
            f"{row['builtin_steps_per_s']:,.0f}",
            f"{row['builtin_decisions_per_s']:,.0f}",
            f"{row['builtin_deciding_per_tick']:,.1f}",
            f"{row['contagion_steps_per_s']:,.0f}",
            f"{row['mesa_contagion_steps_per_s']:,.0f}",
            f"{row['contagion_vs_mesa']:.1f}x",
        )
    if not results["targets"]:
        return Group(table)
    return Group(table, targets_table(results["targets"], lambda _key, value: f"{value:,.0f}/s"))
