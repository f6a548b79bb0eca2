"""Helpers the four platforms' unit tests share (``test_platforms_*``): a started ``FourPlatformInstance`` with typed
access to its parts, and a predicate made a condition ``wait_until`` can wait for."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from soulfra.platforms.bridge import CrossPlatformBridge
from soulfra.platforms.instance import FourPlatformInstance


def held(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return predicate()

    return check


class Running:
    """A started FourPlatformInstance with typed access to its parts."""

    def __init__(self, instance: FourPlatformInstance) -> None:
        self.instance = instance

    @property
    def bridge(self) -> CrossPlatformBridge:
        return self.instance.bridge

    @property
    def tick(self) -> int:
        return self.instance.world.tick

    @property
    def id(self) -> str:
        return self.instance.instance_id
