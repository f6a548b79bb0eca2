"""Gateway: what the API needs from the system: a bridge per known instance, the default instance, the audit trail.

It knows instances from the store's catalog when it has one, so an unknown id is a 404 rather than a bus timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from soulfra.bus.port import Bus
from soulfra.errors import NotFoundError, SoulfraError
from soulfra.offload import off_loop
from soulfra.platforms.base import check_instance_id
from soulfra.platforms.bridge import CrossPlatformBridge
from soulfra.security.audit import AuditLogger
from soulfra.store.ports import Store

__all__ = ["Gateway"]

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, bus: Bus, default_instance: str, *, store: Store | None = None, timeout: float = 5.0) -> None:
        self.bus = bus
        self.default_instance = check_instance_id(default_instance)
        self.store = store
        self.timeout = timeout
        self.closing = False
        self._audit = AuditLogger(store) if store is not None else None
        self._bridges: dict[str, CrossPlatformBridge] = {}
        self.lister: Callable[[], list[dict[str, Any]]] | None = None  # the puppet master's list, when there is one

    async def bridge(self, instance_id: str) -> CrossPlatformBridge:
        found = self._bridges.get(instance_id)
        if found is not None:
            return found
        if self.store is not None:
            await off_loop(self.store.instances.get, instance_id)  # NotFoundError for an unknown id
        elif instance_id != self.default_instance:
            raise NotFoundError(f"no instance {instance_id!r}")
        bridge = CrossPlatformBridge(self.bus, instance_id, timeout=self.timeout)
        self._bridges[instance_id] = bridge
        return bridge

    def forget(self, instance_id: str) -> None:
        """Drop a deleted instance's bridge, so its id answers 404 again."""
        self._bridges.pop(instance_id, None)

    async def list_instances(self) -> list[dict[str, Any]]:
        if self.lister is not None:
            return await off_loop(self.lister)
        if self.store is None:
            return [{"id": self.default_instance}]
        records = await off_loop(self.store.instances.list_instances)
        return [
            {"id": r.id, "name": r.name, "seed": r.seed, "head_tick": r.head_tick, "parent_id": r.parent_id}
            for r in records
        ]

    async def audit(self, actor: str, action: str, instance_id: str, detail: dict[str, Any]) -> None:
        if self._audit is None:
            return
        try:
            await off_loop(self._audit.record, actor=actor, action=action, instance_id=instance_id, detail=detail)
        except SoulfraError as exc:  # the change itself is done and acknowledged; losing its audit line is logged
            log.error("audit of %s on %s failed: %s", action, instance_id, exc.detail)
