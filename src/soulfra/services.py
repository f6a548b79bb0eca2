"""The services topology's processes, all over NATS and one shared database (PostgreSQL):

- ``serve_platform``: one platform of one instance (``soulfra serve runtime|surface|protocol|mirror``);
- ``serve_meta``: the puppet master (``soulfra serve meta``), hosting the worlds with their four platforms each and
  answering the API's calls on the bus (``soulfra.meta.service``);
- ``api_app``: the HTTP API and dashboard (``soulfra serve api``), a gateway that keeps no state of its own, so that
  several can run behind a load balancer.

The processes with no API of their own serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``--metrics-port``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from soulfra.api import Gateway, create_app
from soulfra.api.meta import meta_router
from soulfra.api.operations import audit_watch
from soulfra.bus import NatsOptions, connect
from soulfra.bus.options import redact_url
from soulfra.bus.port import Bus, Handler, Responder, Subscription
from soulfra.durable import DurableWorld
from soulfra.errors import BusUnavailableError, ConfigError, NotFoundError, SoulfraError
from soulfra.language import open_asker
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.meta.keys import KeyRing
from soulfra.meta.package import Limits
from soulfra.meta.service import LocalPuppetMaster, MetaServer, RemotePuppetMaster, meta_subject
from soulfra.metrics import Metrics
from soulfra.offload import off_loop
from soulfra.platforms.base import PLATFORMS, Platform
from soulfra.platforms.bridge import CrossPlatformBridge
from soulfra.platforms.instance import InstanceSettings
from soulfra.platforms.mirror import MirrorPlatform
from soulfra.platforms.protocol import ProtocolPlatform
from soulfra.platforms.runtime import RuntimePlatform
from soulfra.platforms.surface import SurfacePlatform
from soulfra.security.audit import AuditRecorder
from soulfra.security.tokens import TokenService
from soulfra.serving import OpsServer, say
from soulfra.settings import ApiServeSettings, MetaServeSettings, PlatformServeSettings
from soulfra.store import SqlStore
from soulfra.store.lease import PUPPET_MASTER_LEASE
from soulfra.system import http_rules
from soulfra.world import DEFAULT_WORLD, WorldSpec

__all__ = ["PuppetSource", "api_app", "serve_meta", "serve_platform"]

log = logging.getLogger(__name__)

META_WAIT_S = 60.0  # how long an API process waits at its start for the puppet master to answer


def _stop_event() -> asyncio.Event:
    """Set by the first SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _ops(undo: AsyncExitStack, sock: socket.socket | None, metrics: Metrics, ready: Any, role: str) -> None:
    """Serve ``/metrics`` and the probes on ``sock``, if one was bound, until the process stops."""
    if sock is None:
        return
    ops = OpsServer(metrics, ready, role=role)
    await ops.start(sock)
    undo.push_async_callback(ops.stop)


async def serve_platform(
    platform: str,
    settings: PlatformServeSettings,
    *,
    instance_id: str,
    spec: WorldSpec = DEFAULT_WORLD,
    nats_options: NatsOptions | None = None,
    ops_socket: socket.socket | None = None,
) -> None:
    """Run one platform of one instance on NATS until SIGTERM or SIGINT. The runtime makes the instance first when
    ``settings.create`` says so and it is not stored yet (of ``settings.seed``, ``spec`` and ``settings.agents``)."""
    if platform not in PLATFORMS:
        raise ConfigError(f"unknown platform {platform!r}; expected one of {', '.join(PLATFORMS)}")
    if settings.db is None:
        raise ConfigError("soulfra serve needs a database: --db URL, or SOULFRA_DB")
    bus = await connect(settings.nats_url, nats_options)  # first: a bad TLS file or refused credentials is told at once
    metrics = Metrics()
    async with AsyncExitStack() as undo:
        undo.push_async_callback(bus.close)
        store = await off_loop(SqlStore.open, settings.db)
        undo.push_async_callback(off_loop, store.close)
        metrics.watch_leases(store.leases.held)
        stop = _stop_event()
        runtime: RuntimePlatform | None = None
        server: Platform
        if platform == "runtime":
            world = await off_loop(_runtime_world, store, instance_id, settings, spec)
            undo.push_async_callback(off_loop, world.close)
            minds = settings.mind_settings()
            asker = None if minds is None else open_asker(minds, metrics)
            runtime = server = RuntimePlatform(world, bus, rate=settings.rate or None, metrics=metrics, asker=asker)
        elif platform == "surface":
            server = SurfacePlatform(instance_id, bus)
        elif platform == "protocol":
            server = ProtocolPlatform(instance_id, bus, store)
        else:
            server = MirrorPlatform(instance_id, bus, store, cycle_every=settings.cycle_every)
        await server.start()
        undo.push_async_callback(runtime.shutdown if runtime is not None else server.stop)
        if runtime is not None:
            runtime.launch()
        bridge = CrossPlatformBridge(bus, instance_id, timeout=2.0, metrics=metrics)

        async def ready() -> None:
            await off_loop(store.instances.get, instance_id)  # the database answers (and knows the instance)
            await bridge.request(platform, "status")  # the bus answers, and this platform serves on it

        await _ops(undo, ops_socket, metrics, ready, platform)
        shown = redact_url(settings.nats_url)
        print(f"soulfra {platform} serving {instance_id} on {shown} (pid {os.getpid()})", flush=True)  # noqa: T201
        await stop.wait()


def _runtime_world(store: SqlStore, instance_id: str, settings: PlatformServeSettings, spec: WorldSpec) -> DurableWorld:
    try:
        return DurableWorld.open(store, instance_id)
    except NotFoundError:
        if not settings.create:
            raise
    spec = settings.world_spec(spec)
    return DurableWorld.create(store, settings.seed, spec, agents=settings.agents, instance_id=instance_id)


async def serve_meta(
    settings: MetaServeSettings,
    *,
    spec: WorldSpec = DEFAULT_WORLD,
    nats_options: NatsOptions | None = None,
    ops_socket: socket.socket | None = None,
) -> None:
    """Run the puppet master on NATS until SIGTERM or SIGINT: every stored instance (but those ``settings.leave``
    names) with its four platforms, a default instance of ``settings.seed``, ``spec`` and ``settings.agents`` (the
    oldest such root, or a new one), and the API's calls served on the bus. One per database (a lease says so)."""
    if settings.db is None:
        raise ConfigError("soulfra serve meta needs a database: --db URL, or SOULFRA_DB")
    bus = await connect(settings.nats_url, nats_options)
    metrics = Metrics()
    async with AsyncExitStack() as undo:
        undo.push_async_callback(bus.close)
        store = await off_loop(SqlStore.open, settings.db)
        undo.push_async_callback(off_loop, store.close)
        stop = _stop_event()
        await off_loop(store.leases.acquire, PUPPET_MASTER_LEASE)  # one puppet master per database, named if held
        metrics.watch_leases(store.leases.held)
        recorder = AuditRecorder(store, signer=KeyRing(settings.home).signer())
        undo.push_async_callback(off_loop, recorder.sign_head)  # the head as it is left, signed
        await undo.enter_async_context(audit_watch(recorder, metrics))  # the chain checked here, not by every gateway
        instance = InstanceSettings(
            rate=settings.rate or None, cycle_every=settings.cycle_every, metrics=metrics,
            minds=settings.mind_settings(),
        )  # fmt: skip
        engine = PuppetMasterEngine(
            store, bus, EngineSettings(instance=instance, leave=frozenset(settings.leave or ())), recorder=recorder
        )
        undo.push_async_callback(engine.close)
        default = await engine.open_default(settings.seed, settings.world_spec(spec), settings.agents)
        await engine.start()
        server = MetaServer(LocalPuppetMaster(engine, default), bus)
        await server.start()
        undo.push_async_callback(server.stop)

        async def ready() -> None:
            await off_loop(store.leases.held)  # the database answers
            await bus.request(meta_subject("default"), b"{}", timeout=2.0)  # the bus answers, and this serves on it

        await _ops(undo, ops_socket, metrics, ready, "meta")
        shown = redact_url(settings.nats_url)
        say(
            f"soulfra: meta serving on {shown}: {len(engine.live)} instance(s), default {default} "
            f"(pid {os.getpid()}); Ctrl-C stops"
        )
        await stop.wait()


class _LateBus:
    """The bus of an API process, connected in its app's lifespan (on uvicorn's event loop, where the connection
    must live) after the app that holds it was built."""

    def __init__(self) -> None:
        self.bus: Bus | None = None

    def _connected(self) -> Bus:
        if self.bus is None:
            raise BusUnavailableError("this API process is not connected to NATS yet")
        return self.bus

    async def publish(self, subject: str, payload: bytes) -> None:
        await self._connected().publish(subject, payload)

    async def subscribe(self, subject: str, handler: Handler) -> Subscription:
        return await self._connected().subscribe(subject, handler)

    async def serve(self, subject: str, responder: Responder) -> Subscription:
        return await self._connected().serve(subject, responder)

    async def request(self, subject: str, payload: bytes, *, timeout: float) -> bytes:
        return await self._connected().request(subject, payload, timeout=timeout)

    async def close(self) -> None:
        if self.bus is not None:
            await self.bus.close()


async def _wait_for_meta(master: RemotePuppetMaster, wait: float) -> str:
    """The puppet master's default instance, asked until it answers or ``wait`` seconds have passed."""
    deadline = time.monotonic() + wait
    said = False
    while True:
        try:
            return await master.default_instance()
        except SoulfraError as exc:
            if time.monotonic() >= deadline:
                raise BusUnavailableError(f"no puppet master answered within {wait:g} s: {exc.detail}") from None
            if not said:
                log.warning("waiting for the puppet master (soulfra serve meta): %s", exc.detail)
                said = True
            await asyncio.sleep(0.5)


# How an API process reaches its puppet master: the master it asks, and what runs while it serves (yielding the
# default instance's id). By default another process's, over the bus (``soulfra serve meta``); a cluster's is its own.
PuppetSource = Callable[
    [Bus, SqlStore, Metrics], tuple[RemotePuppetMaster, Callable[[], AbstractAsyncContextManager[str]]]
]


def api_app(
    settings: ApiServeSettings,
    *,
    nats_options: NatsOptions | None = None,
    wait: float = META_WAIT_S,
    puppet: PuppetSource | None = None,
) -> FastAPI:
    """The HTTP API and dashboard as a gateway: reads go to the platforms over NATS, the puppet master's calls to
    ``soulfra serve meta`` (or to ``puppet``'s), packages and tokens to the shared database; it holds no world of
    its own."""
    if settings.db is None:
        raise ConfigError("soulfra serve api needs a database: --db URL, or SOULFRA_DB")
    store = SqlStore.open(settings.db)
    try:
        keyring = KeyRing(settings.home)
        recorder = AuditRecorder(store, signer=keyring.signer())
    except BaseException:
        store.close()
        raise
    late = _LateBus()
    metrics = Metrics()
    running: Callable[[], AbstractAsyncContextManager[str]]
    if puppet is None:
        master = RemotePuppetMaster(late, store, metrics=metrics)

        @asynccontextmanager
        async def waiting() -> AsyncIterator[str]:
            yield await _wait_for_meta(master, wait)

        running = waiting

    else:
        master, running = puppet(late, store, metrics)
    gateway = Gateway(late, "world-0", store=store, lister=master.list_instances, metrics=metrics)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            late.bus = await connect(settings.nats_url, nats_options)
            async with running() as default:
                gateway.default_instance = default
                yield
        finally:
            gateway.closing = True
            try:
                await late.close()
            finally:
                try:
                    await off_loop(recorder.sign_head)
                finally:
                    await off_loop(store.close)

    limits, access = http_rules(settings)
    router = meta_router(master, gateway, keyring, Limits())
    return create_app(
        gateway, lifespan=lifespan, extra=[router], limits=limits, tokens=TokenService(store), recorder=recorder,
        access=access, metrics=metrics, puppet=master,
    )  # fmt: skip
