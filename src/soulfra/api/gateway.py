"""Gateway: what the API needs from the system: a bridge per known instance and the default instance.

It knows instances from the store's catalog when it has one, so an unknown id is a 404 rather than a bus timeout.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from soulfra.bus.port import Bus
from soulfra.errors import NotFoundError
from soulfra.metrics import Metrics
from soulfra.offload import off_loop
from soulfra.platforms.base import check_instance_id
from soulfra.platforms.bridge import CrossPlatformBridge
from soulfra.store.ports import Store

__all__ = ["Gateway"]


class Gateway:
    def __init__(
        self,
        bus: Bus,
        default_instance: str,
        *,
        store: Store | None = None,
        timeout: float = 5.0,
        lister: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.bus = bus
        self.metrics = metrics  # where its bridges time their requests (None: nowhere)
        self.default_instance = check_instance_id(default_instance)
        self.store = store
        self.timeout = timeout
        self.closing = False
        self._bridges: dict[str, CrossPlatformBridge] = {}
        self.lister = lister  # the puppet master's list, when there is one

    async def bridge(self, instance_id: str) -> CrossPlatformBridge:
        found = self._bridges.get(instance_id)
        if found is not None:
            return found
        if self.store is not None:
            await off_loop(self.store.instances.get, instance_id)  # NotFoundError for an unknown id
        elif instance_id != self.default_instance:
            raise NotFoundError(f"no instance {instance_id!r}")
        # No identity of its own: a change reaches a platform only inside a request's audited action, which says who
        # sent it; one that escaped it would be refused by the platform rather than sent as this process.
        bridge = CrossPlatformBridge(self.bus, instance_id, timeout=self.timeout, identity=None, metrics=self.metrics)
        self._bridges[instance_id] = bridge
        return bridge

    async def request(
        self, instance_id: str, platform: str, op: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One op of one of ``instance_id``'s platforms, through its bridge (404 for an unknown instance)."""
        return await (await self.bridge(instance_id)).request(platform, op, body)

    async def surface_bytes(self, instance_id: str, op: str, body: dict[str, Any]) -> bytes:
        """A surface read as the bytes the surface encoded (it caches them between changes), to pass on as is."""
        return await (await self.bridge(instance_id)).request_raw("surface", op, body)

    def forget(self, instance_id: str) -> None:
        """Drop a deleted instance's bridge, so its id answers 404 again."""
        self._bridges.pop(instance_id, None)

    async def list_instances(self) -> list[dict[str, Any]]:
        if self.lister is not None:
            return await self.lister()
        if self.store is None:
            return [{"id": self.default_instance}]
        records = await off_loop(self.store.instances.list_instances)
        return [
            {"id": r.id, "name": r.name, "seed": r.seed, "head_tick": r.head_tick, "parent_id": r.parent_id}
            for r in records
        ]
