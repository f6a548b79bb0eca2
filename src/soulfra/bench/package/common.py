"""What every part of ``soulfra bench package`` shares: the run's seed and world settings, the timing helpers,
and the one durable instance that the package and fork parts both measure. No measurement of its own lives here."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from rich.progress import Progress

from soulfra.durable import DurabilitySettings, DurableWorld
from soulfra.store import SqlStore
from soulfra.world import DEFAULT_WORLD, Whisper

SEED = 20261126
BUILTIN_AGENTS = len(DEFAULT_WORLD.agents)  # Cal Riven, Arty, Agent Zero
SNAPSHOT_EVERY = DurabilitySettings().snapshot_every  # periodic snapshots, as a durable world keeps them
WHISPER_EVERY = 5
MB = 1_000_000

T = TypeVar("T")


class _Laps:
    """Named durations, one sample per repeat; the median is what is reported."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def measure(self, name: str, action: Callable[[], T]) -> T:
        begun = time.perf_counter()
        result = action()
        self.samples.setdefault(name, []).append(time.perf_counter() - begun)
        return result

    def add(self, name: str, *parts: str) -> None:
        """``name``'s samples: the sum of ``parts``' samples of the same repeat."""
        self.samples[name] = [sum(lap) for lap in zip(*(self.samples[part] for part in parts), strict=True)]

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


# -- the instance every package and fork measurement starts from ------------------------------------------------


@dataclass(slots=True)
class _Source:
    store: SqlStore
    path: Path
    instance_id: str
    build_s: float


def _build(workdir: Path, agents: int, ticks: int, progress: Progress) -> _Source:
    """A durable instance of ``agents`` agents run for ``ticks`` ticks, whispered to every few ticks."""
    path = workdir / "source.db"
    store = SqlStore.open(f"sqlite:///{path}")
    task = progress.add_task(f"building {agents:,} agents x {ticks} ticks", total=ticks)
    begun = time.perf_counter()
    durable = DurableWorld.create(
        store, SEED, DEFAULT_WORLD, agents=agents - BUILTIN_AGENTS, instance_id="source",
        settings=DurabilitySettings(snapshot_every=SNAPSHOT_EVERY),
    )  # fmt: skip
    while durable.tick < ticks:
        if durable.tick % WHISPER_EVERY == 0:
            text = f"whisper {durable.tick}"
            durable.submit([Whisper(tick=durable.tick, target="arty", text=text, tone="gentle")])
        durable.step()
        progress.advance(task)
    durable.close()
    progress.remove_task(task)
    return _Source(store=store, path=path, instance_id=durable.instance_id, build_s=time.perf_counter() - begun)
