"""What every god command passes before its handler runs: none of the instances it touches (``touches``, a method of
each command) under emergency override, and the writer lease of each stored one held for the command's length.

It decides nothing about what a command does, and never writes to a world.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence

from soulfra.errors import NotFoundError, OverrideActiveError
from soulfra.offload import off_loop
from soulfra.platforms.instance import FourPlatformInstance
from soulfra.store.ports import Store

__all__ = ["refuse_halted", "writer_of"]


def refuse_halted(live: Mapping[str, FourPlatformInstance], names: Sequence[str]) -> None:
    """A command that would touch an instance under emergency override is refused before it changes anything."""
    for name in names:
        instance = live.get(name)
        if instance is not None and instance.runtime.halted:
            raise OverrideActiveError(f"{name} is stopped by an emergency override; resume it first")


@contextlib.asynccontextmanager
async def writer_of(
    store: Store, live: Mapping[str, FourPlatformInstance], names: Sequence[str]
) -> AsyncIterator[None]:
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
