"""soulfra.bus: the message bus between platforms. ``InMemoryBus`` inside one process, ``NatsBus`` across processes.

``connect(url, options)`` is the one place that picks an adapter from a URL: ``memory://``, or ``nats://host:port``
(``tls://host:port`` for TLS) with the connection's credentials and TLS files in ``NatsOptions``.
"""

from __future__ import annotations

from soulfra.bus.memory import InMemoryBus
from soulfra.bus.options import NatsOptions
from soulfra.bus.port import Bus, Handler, Message, Responder, RoutingBus, Subscription
from soulfra.errors import ConfigError

__all__ = ["Bus", "Handler", "InMemoryBus", "Message", "NatsOptions", "Responder", "Subscription", "connect"]


async def connect(url: str, options: NatsOptions | None = None) -> RoutingBus:
    """A connected bus for ``url``; ``BusUnavailableError`` if a NATS server cannot be reached or refuses the
    credentials, ``ConfigError`` if a file named in ``options`` cannot be read."""
    if url in ("memory://", "memory"):
        if options is not None and (options.secured or options.uses_tls(url)):
            raise ConfigError("the in-memory bus takes no NATS credentials or TLS files")
        return InMemoryBus()
    from soulfra.bus.nats import NatsBus  # noqa: PLC0415 -- nats-py loads only when a NATS URL is used

    return await NatsBus.connect(url, options)
