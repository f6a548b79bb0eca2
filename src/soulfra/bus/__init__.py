"""soulfra.bus: the message bus between platforms. ``InMemoryBus`` inside one process, ``NatsBus`` across processes.

``connect(url)`` is the one place that picks an adapter from a URL: ``memory://`` or ``nats://host:port``.
"""

from __future__ import annotations

from soulfra.bus.memory import InMemoryBus
from soulfra.bus.port import Bus, Handler, Message, Responder, Subscription

__all__ = ["Bus", "Handler", "InMemoryBus", "Message", "Responder", "Subscription", "connect"]


async def connect(url: str) -> Bus:
    """A connected bus for ``url``; ``BusUnavailableError`` if a NATS server cannot be reached."""
    if url in ("memory://", "memory"):
        return InMemoryBus()
    from soulfra.bus.nats import NatsBus  # noqa: PLC0415 -- nats-py loads only when a NATS URL is used

    return await NatsBus.connect(url)
