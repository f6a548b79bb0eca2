"""The composition root: the one place that names concrete adapters and builds a running system from settings.

``embedded`` is ``soulfra up``: one process, SQLite in a data directory, the in-memory bus, the puppet master
running every stored instance (a default one first) with its four platforms, and the API. ``serve_platform`` is
one platform alone on NATS (``soulfra serve``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import uvicorn
from fastapi import FastAPI

from soulfra.api import Gateway, create_app
from soulfra.api.limits import RequestLimits
from soulfra.api.meta import meta_router
from soulfra.bus import InMemoryBus, connect
from soulfra.durable import DurabilitySettings, DurableWorld
from soulfra.errors import ConfigError, OutputError
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.meta.keys import KeyRing, default_home
from soulfra.meta.package import Limits
from soulfra.platforms.base import PLATFORMS, Platform
from soulfra.platforms.mirror import MirrorPlatform
from soulfra.platforms.protocol import ProtocolPlatform
from soulfra.platforms.runtime import RuntimePlatform
from soulfra.platforms.surface import SurfacePlatform
from soulfra.store import SqlStore
from soulfra.store.lease import PUPPET_MASTER_LEASE
from soulfra.world import DEFAULT_WORLD, WorldSpec

__all__ = ["EmbeddedSettings", "embedded_app", "listen", "run_embedded", "serve_platform"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddedSettings:
    data: Path = Path("soulfra-data")
    seed: int = 0
    spec: WorldSpec = DEFAULT_WORLD
    agents: int = 0
    rate: float | None = 2.0
    cycle_every: int = 0
    snapshot_every: int = 20
    home: Path | None = None  # where the installation key and trusted keys live; None: $SOULFRA_HOME or ~/.soulfra
    limits: RequestLimits = field(default_factory=RequestLimits)  # request bodies: sizes per route, read timeout

    def database_url(self) -> str:
        return f"sqlite:///{self.data / 'soulfra.db'}"


def embedded_app(settings: EmbeddedSettings) -> FastAPI:
    """The whole embedded system as one ASGI app: the lifespan opens the store, the default instance and every
    other stored instance, under the puppet master."""
    try:
        settings.data.mkdir(parents=True, exist_ok=True, mode=0o700)  # the worlds and their history: owner only
    except OSError as exc:
        raise OutputError(f"cannot create the data directory {settings.data}: {exc.strerror}") from None
    store = SqlStore.open(settings.database_url())
    bus = InMemoryBus()
    engine = PuppetMasterEngine(
        store,
        bus,
        EngineSettings(
            rate=settings.rate,
            cycle_every=settings.cycle_every,
            durability=DurabilitySettings(snapshot_every=settings.snapshot_every),
        ),
    )
    try:  # one server per database, and the default world its own: refused here, naming the holder, before serving
        store.leases.acquire(PUPPET_MASTER_LEASE)
        default = engine.claim_default(settings.seed, settings.spec, settings.agents)
    except BaseException:
        store.close()
        raise
    gateway = Gateway(bus, default.instance_id, store=store)
    gateway.lister = engine.list_instances
    keyring = KeyRing(settings.home or default_home())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            await engine.open_default(settings.seed, settings.spec, settings.agents, claimed=default)
            await engine.start()
            yield
        finally:
            gateway.closing = True
            try:
                await engine.close()
            finally:
                await bus.close()
                store.close()

    router = meta_router(engine, gateway, keyring, Limits(), spool=settings.data)
    app = create_app(gateway, lifespan=lifespan, extra=[router], limits=settings.limits)
    app.state.engine = engine
    return app


def listen(host: str, port: int) -> socket.socket:
    """Bind the server's socket first, so a port in use is one clear error before anything is opened."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY only then
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, telling the gateway at the signal, so live streams end before the grace period runs out."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self._gateway = gateway

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._gateway.closing = True
        super().handle_exit(sig, frame)


def run_embedded(
    settings: EmbeddedSettings, sock: socket.socket, *, announce: Callable[[], None] | None = None
) -> None:
    """Serve the embedded system on a bound socket (``listen``) until SIGINT or SIGTERM; ``announce`` is called
    once the database is claimed (a second server on it is refused before anything is announced)."""
    app = embedded_app(settings)
    if announce is not None:
        announce()
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=3)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again for the handler it found installed:
    # make that handler "ignore", so a requested stop ends the process with status 0 rather than by the signal.
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        _Server(config, app.state.gateway).run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)


async def serve_platform(
    platform: str, *, instance_id: str, db_url: str, nats_url: str, rate: float | None, cycle_every: int = 0
) -> None:
    """Run one platform of one instance on NATS until SIGTERM or SIGINT."""
    if platform not in PLATFORMS:
        raise ConfigError(f"unknown platform {platform!r}; expected one of {', '.join(PLATFORMS)}")
    store = SqlStore.open(db_url)
    bus = await connect(nats_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runtime: RuntimePlatform | None = None
    server: Platform | None = None
    try:
        if platform == "runtime":
            world = DurableWorld.open(store, instance_id)
            runtime = RuntimePlatform(world, bus, rate=rate)
            server = runtime
        elif platform == "surface":
            server = SurfacePlatform(instance_id, bus)
        elif platform == "protocol":
            server = ProtocolPlatform(instance_id, bus, store)
        else:
            server = MirrorPlatform(instance_id, bus, store, cycle_every=cycle_every)
        await server.start()
        if runtime is not None:
            runtime.launch()
        print(f"soulfra {platform} serving {instance_id} on {nats_url} (pid {os.getpid()})", flush=True)  # noqa: T201
        await stop.wait()
    finally:
        try:
            if runtime is not None:
                try:
                    await runtime.shutdown()
                finally:
                    runtime.world.close()
            elif server is not None:
                await server.stop()
        finally:
            await bus.close()
            store.close()
