"""The composition root: the one place that names concrete adapters and builds a running system from settings.

``embedded`` is ``soulfra up``: one process, SQLite in a data directory, the in-memory bus, the puppet master
running every stored instance (a default one first) with its four platforms, and the API. ``serve_platform`` is
one platform alone on NATS (``soulfra serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from soulfra.api import Gateway, create_app
from soulfra.api.access import AccessSettings
from soulfra.api.limits import RequestLimits
from soulfra.api.meta import meta_router
from soulfra.api.operations import audit_watch
from soulfra.api.stream import LiveStreams
from soulfra.bus import InMemoryBus, NatsOptions, connect
from soulfra.bus.options import redact_url
from soulfra.durable import DurabilitySettings, DurableWorld
from soulfra.errors import ConfigError, OutputError
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.meta.keys import KeyRing
from soulfra.meta.package import Limits
from soulfra.metrics import Metrics
from soulfra.offload import off_loop
from soulfra.platforms.base import PLATFORMS, Platform
from soulfra.platforms.instance import InstanceSettings
from soulfra.platforms.mirror import MirrorPlatform
from soulfra.platforms.protocol import ProtocolPlatform
from soulfra.platforms.runtime import RuntimePlatform
from soulfra.platforms.surface import SurfacePlatform
from soulfra.security.audit import AuditRecorder, head_file_for
from soulfra.security.identity import process_identity
from soulfra.security.local import LOCAL_ADMIN, ensure_local_admin
from soulfra.security.tokens import TokenService
from soulfra.settings import UpSettings, default_home
from soulfra.store import SqlStore
from soulfra.store.lease import PUPPET_MASTER_LEASE
from soulfra.world import DEFAULT_WORLD, WorldSpec

__all__ = ["EmbeddedSettings", "embedded_app", "listen", "run_embedded", "serve_platform"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddedSettings:
    """What the embedded system is built from, as the objects it needs (a world spec, request limits). ``soulfra
    up`` makes it from its ``UpSettings``; a benchmark or a test writes it directly (no environment is read)."""

    data: Path = Path("soulfra-data")
    db: str | None = None  # the database URL; None: SQLite in ``data``
    seed: int = 0
    spec: WorldSpec = DEFAULT_WORLD
    agents: int = 0
    rate: float | None = 2.0  # ticks per second; None as fast as possible
    cycle_every: int = 0
    snapshot_every: int = 20
    home: Path = field(default_factory=default_home)  # where the installation key and trusted keys live
    limits: RequestLimits = field(default_factory=RequestLimits)  # request bodies: sizes per route, read timeout
    access: AccessSettings = field(default_factory=AccessSettings)  # hosts, origins, rates, a private surface
    local_token: bool = True  # keep the home's admin token registered (soulfra.security.local)
    tls_cert: Path | None = None  # serve HTTPS with this certificate and key (PEM files)
    tls_key: Path | None = None

    @classmethod
    def from_settings(cls, settings: UpSettings, spec: WorldSpec) -> EmbeddedSettings:
        """The embedded system that ``settings`` describe, running ``spec`` (read from ``settings.world``)."""
        limits = RequestLimits(
            max_body=int(settings.max_body), max_upload=int(settings.max_upload), body_timeout=settings.body_timeout
        )
        access = AccessSettings.for_host(
            settings.host, settings.allowed_host or (), private_surface=settings.private_surface,
            cors_origins=tuple(settings.cors_origin or ()), mutation_rate=settings.rate_limit,
            mutation_burst=settings.rate_burst, auth_failures=settings.auth_failures,
        )  # fmt: skip
        return cls(
            access=access,
            tls_cert=settings.tls_cert,
            tls_key=settings.tls_key,
            data=settings.data,
            db=settings.db,
            seed=settings.seed,
            spec=spec,
            agents=settings.agents,
            rate=settings.rate or None,
            cycle_every=settings.cycle_every,
            home=settings.home,
            limits=limits,
        )

    def database_url(self) -> str:
        """``db``, or the SQLite database in ``data`` (which still holds uploads as they arrive)."""
        return self.db if self.db is not None else f"sqlite:///{self.data / 'soulfra.db'}"


def embedded_app(settings: EmbeddedSettings) -> FastAPI:
    """The whole embedded system as one ASGI app: the lifespan opens the store, the default instance and every
    other stored instance, under the puppet master."""
    try:
        settings.data.mkdir(parents=True, exist_ok=True, mode=0o700)  # the worlds and their history: owner only
    except OSError as exc:
        raise OutputError(f"cannot create the data directory {settings.data}: {exc.strerror}") from None
    store = SqlStore.open(settings.database_url())
    bus = InMemoryBus()
    # This system's registry: its runtimes, god commands, HTTP requests, streams, leases and data disk count there.
    metrics = Metrics(leases=store.leases.held, disk=settings.data)
    keyring = KeyRing(settings.home)
    tokens = TokenService(store)
    try:
        recorder = AuditRecorder(store, signer=keyring.signer(), head_file=head_file_for(settings.database_url()))
        engine = _engine(store, bus, settings, recorder, metrics)
    except BaseException:
        store.close()
        raise
    try:  # one server per database, and the default world its own: refused here, naming the holder, before serving
        store.leases.acquire(PUPPET_MASTER_LEASE)
        if settings.local_token:
            _local_admin(settings.home, tokens, recorder)
        default = engine.claim_default(settings.seed, settings.spec, settings.agents)
    except BaseException:
        store.close()
        raise
    gateway = Gateway(bus, default.instance_id, store=store, metrics=metrics)
    gateway.lister = engine.list_instances

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            await engine.open_default(settings.seed, settings.spec, settings.agents, claimed=default)
            await engine.start()
            async with audit_watch(recorder, metrics):  # soulfra_audit_last_verify_ok, without anyone asking
                yield
        finally:
            gateway.closing = True
            try:
                await engine.close()
            finally:
                await bus.close()
                try:
                    await off_loop(recorder.sign_head)  # the head as it is left, signed: a cut tail shows at once
                finally:
                    await off_loop(store.close)

    router = meta_router(engine, gateway, keyring, Limits(), spool=settings.data)
    app = create_app(
        gateway, lifespan=lifespan, extra=[router], limits=settings.limits, tokens=tokens, recorder=recorder,
        access=settings.access, metrics=metrics,
    )  # fmt: skip
    app.state.engine = engine
    app.state.tokens = tokens
    app.state.recorder = recorder
    return app


def _engine(
    store: SqlStore, bus: InMemoryBus, settings: EmbeddedSettings, recorder: AuditRecorder, metrics: Metrics
) -> PuppetMasterEngine:
    """The puppet master, auditing through the API's recorder (so a god command through the API is one row)."""
    engine_settings = EngineSettings(
        instance=InstanceSettings(
            rate=settings.rate,
            cycle_every=settings.cycle_every,
            durability=DurabilitySettings(snapshot_every=settings.snapshot_every),
            metrics=metrics,
        )
    )
    return PuppetMasterEngine(store, bus, engine_settings, recorder=recorder)


def _local_admin(home: Path, tokens: TokenService, recorder: AuditRecorder) -> None:
    """Keep the home's admin token registered; a token made or registered here is audited as ``soulfra up``'s."""
    before = {r.name: r.token_hash for r in tokens.list() if r.revoked_at is None}
    ensure_local_admin(home, tokens)
    after = {r.name: r.token_hash for r in tokens.list() if r.revoked_at is None}
    if before.get(LOCAL_ADMIN) != after.get(LOCAL_ADMIN) and LOCAL_ADMIN in after:
        recorder.record(
            process_identity("soulfra-up"), "token.create", detail={"name": LOCAL_ADMIN, "role": "admin", "home": True}
        )


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


STOP_TIMEOUT_S = 10.0  # a stop that takes longer than this ends the process at once
SEND_BUFFER = 256 * 1024  # bytes the kernel holds for one connection (it doubles the figure for its bookkeeping)


class _StopGuard:
    """Makes every stop complete. It counts SIGINT and SIGTERM on a thread of its own, through the signal wakeup
    fd, so it acts even while the main thread is held (in a database call, say): at the second signal, or
    ``timeout`` seconds after the first, it ends the process at once with status 1. Nothing acknowledged is lost
    that way: inputs are stored before they are acknowledged, and the worlds replay their last ticks on start."""

    def __init__(self, timeout: float, *, exit: Callable[[int], object] = os._exit) -> None:
        self.timeout = timeout
        self._exit = exit
        self._lock = threading.Lock()
        self._first: float | None = None  # when the first signal came (monotonic)
        self._finished = False

    def install(self) -> bool:
        """Watch the signals from now on (main thread only); False where signals cannot be watched."""
        if threading.current_thread() is not threading.main_thread():
            return False
        read, write = os.pipe()
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, args=(read,), name="soulfra-stop", daemon=True).start()
        return True

    def signalled(self, sig: int) -> None:
        """One SIGINT or SIGTERM: the first starts the clock, a second one ends the process."""
        with self._lock:
            if self._finished:
                return  # the server has stopped; what is left is uvicorn raising the signal again for its caller
            if self._first is not None:
                self._force(f"{signal.Signals(sig).name} again while stopping")
                return
            self._first = time.monotonic()
        _say(f"soulfra: stopping; a second Ctrl-C or SIGTERM exits at once, as does a stop past {self.timeout:g} s")

    def finished(self) -> None:
        """The server has stopped; later signals are no longer counted (the deadline still bounds the exit)."""
        with self._lock:
            self._finished = True

    def remaining(self) -> float | None:
        """Seconds until the deadline, or None before the first signal."""
        with self._lock:
            return None if self._first is None else max(0.0, self._first + self.timeout - time.monotonic())

    def _watch(self, read: int) -> None:
        while True:
            ready, _, _ = select.select([read], [], [], self.remaining())
            if not ready:
                with self._lock:
                    self._force(f"the stop did not complete within {self.timeout:g} s")
                return
            for sig in os.read(read, 64):
                if sig in (signal.SIGINT, signal.SIGTERM):
                    self.signalled(sig)

    def _force(self, reason: str) -> None:
        _say(f"soulfra: {reason}: exiting now (every acknowledged input is stored)")
        self._exit(1)


def _say(line: str) -> None:
    """One line on stderr, written without a lock (the main thread may be held anywhere)."""
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode())


class _Server(uvicorn.Server):
    """uvicorn's server with a stop that always completes. At the first SIGINT or SIGTERM the live streams end at
    once (a client that reads nothing is disconnected), requests in flight finish and every world is flushed; a
    second signal, or a stop longer than the guard's timeout, ends the process at once (``_StopGuard``)."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway, streams: LiveStreams, guard: _StopGuard) -> None:
        super().__init__(config)
        self._gateway = gateway
        self._streams = streams
        self._guard = guard
        self._loop: asyncio.AbstractEventLoop | None = None
        streams.disconnect = self._disconnect

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._guard.finished()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._gateway.closing = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._streams.close)  # a signal handler must not touch the loop itself
        super().handle_exit(sig, frame)

    def _disconnect(self, scope: MutableMapping[str, Any]) -> bool:
        """Drop the connection of the request ``scope`` at once, unsent bytes and all (a client that reads nothing
        would otherwise hold its buffers, and the stop, for as long as it stays connected)."""
        client = scope.get("client")
        if client is None:
            return False
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if getattr(connection, "client", None) == tuple(client) and transport is not None:
                transport.abort()
                return True
        return False


def run_embedded(
    settings: EmbeddedSettings,
    sock: socket.socket,
    *,
    stop_timeout: float = STOP_TIMEOUT_S,
    announce: Callable[[], None] | None = None,
) -> None:
    """Serve the embedded system on a bound socket (``listen``) until SIGINT or SIGTERM; a second signal, or a stop
    that takes longer than ``stop_timeout`` seconds, ends the process at once. ``announce`` is called once the
    database is claimed (a second server on it is refused before anything is announced)."""
    app = embedded_app(settings)
    if announce is not None:
        announce()
    # The asyncio loop: the stop guard needs the signal wakeup fd, which uvloop would take for itself.
    # log_config=None: uvicorn's records (a request that raised, with its traceback) go through the one handler that
    # soulfra.logs installed, formatted like every other record, instead of through handlers of uvicorn's own.
    tls: dict[str, Any] = {}
    if settings.tls_cert is not None and settings.tls_key is not None:
        tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
    config = uvicorn.Config(
        app, log_level="warning", log_config=None, lifespan="on", timeout_graceful_shutdown=3, loop="asyncio", **tls
    )
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again for the handler it found installed:
    # make that handler "ignore", so a requested stop ends the process with status 0 rather than by the signal.
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Every connection inherits this send buffer. The kernel's own grows to 4 MiB on loopback, and a stream client
    # that reads nothing would make the server write all of that before it is held back.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    guard = _StopGuard(stop_timeout)
    guard.install()
    try:
        _Server(config, app.state.gateway, app.state.streams, guard).run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)


async def serve_platform(
    platform: str,
    *,
    instance_id: str,
    db_url: str,
    nats_url: str,
    rate: float | None,
    cycle_every: int = 0,
    nats_options: NatsOptions | None = None,
) -> None:
    """Run one platform of one instance on NATS (with ``nats_options``' credentials and TLS) until SIGTERM or SIGINT."""
    if platform not in PLATFORMS:
        raise ConfigError(f"unknown platform {platform!r}; expected one of {', '.join(PLATFORMS)}")
    bus = await connect(nats_url, nats_options)  # first: a bad TLS file or refused credentials is told at once
    try:
        store = await off_loop(SqlStore.open, db_url)
    except BaseException:
        await bus.close()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runtime: RuntimePlatform | None = None
    server: Platform | None = None
    try:
        if platform == "runtime":
            world = await off_loop(DurableWorld.open, store, instance_id)
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
        shown = redact_url(nats_url)
        print(f"soulfra {platform} serving {instance_id} on {shown} (pid {os.getpid()})", flush=True)  # noqa: T201
        await stop.wait()
    finally:
        try:
            if runtime is not None:
                try:
                    await runtime.shutdown()
                finally:
                    await off_loop(runtime.world.close)
            elif server is not None:
                await server.stop()
        finally:
            await bus.close()
            await off_loop(store.close)
