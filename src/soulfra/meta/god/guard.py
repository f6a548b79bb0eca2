"""What every god command passes before its handler runs: which instances it touches, none of them under emergency
override, and the writer lease of each stored one held for the command's length.

It decides nothing about what a command does, and never writes to a world.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

from soulfra.errors import NotFoundError, OverrideActiveError
from soulfra.meta.commands import (
    CloneInstance,
    CrossInstanceCommunication,
    FreezeTime,
    GodCommand,
    MergeInstances,
    RealityFork,
    ThawTime,
)
from soulfra.offload import off_loop
from soulfra.platforms.instance import FourPlatformInstance
from soulfra.store.ports import Store

__all__ = ["refuse_halted", "touched", "writer_of"]


def touched(command: GodCommand, live: Mapping[str, FourPlatformInstance]) -> list[str]:
    """The existing instances a command reads or writes (a new fork, clone or merge is not among them)."""
    names: list[str | None]
    if isinstance(command, FreezeTime | ThawTime):
        names = list(command.instances) if command.instances is not None else list(live)
    elif isinstance(command, CloneInstance | RealityFork):
        names = [command.source]
    elif isinstance(command, MergeInstances):
        names = [command.ours, command.theirs]
    elif isinstance(command, CrossInstanceCommunication):
        names = [command.source, command.target]
    else:
        names = [command.instance]
    return [name for name in names if name]


def refuse_halted(live: Mapping[str, FourPlatformInstance], names: list[str]) -> None:
    """A command that would touch an instance under emergency override is refused before it changes anything."""
    for name in names:
        instance = live.get(name)
        if instance is not None and instance.runtime.halted:
            raise OverrideActiveError(f"{name} is stopped by an emergency override; resume it first")


@contextlib.asynccontextmanager
async def writer_of(store: Store, live: Mapping[str, FourPlatformInstance], names: list[str]) -> AsyncIterator[None]:
    """Hold the writer lease of every stored (not live) instance a command touches while it runs, so that one
    another process runs is refused before anything changes (a live one's lease is held already)."""
    taken: list[str] = []

    def take() -> None:
        for name in names:
            if name in live or name in store.leases.held():
                continue
            try:
                store.instances.get(name)
            except NotFoundError:
                continue  # the command itself says so
            store.leases.acquire(name)
            taken.append(name)

    def release() -> None:
        for name in taken:
            store.leases.release(name)

    try:
        await off_loop(take)
        yield
    finally:
        await off_loop(release)
