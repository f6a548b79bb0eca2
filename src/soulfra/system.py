"""The composition root: the one place that names concrete adapters and builds a running system from settings.

``embedded`` is ``soulfra up``: one process, SQLite in a data directory, the in-memory bus, the puppet master
running every stored instance (a default one first) with its four platforms, and the API. ``serve_platform`` is
one platform alone on NATS (``soulfra serve``).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI

from soulfra.api import Gateway, create_app
from soulfra.api.access import AccessSettings
from soulfra.api.limits import RequestLimits
from soulfra.api.meta import meta_router
from soulfra.api.operations import audit_watch
from soulfra.bus import InMemoryBus
from soulfra.durable import DurabilitySettings
from soulfra.errors import OutputError
from soulfra.language import MindSettings
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.meta.keys import KeyRing
from soulfra.meta.package import Limits
from soulfra.meta.service import LocalPuppetMaster
from soulfra.metrics import Metrics
from soulfra.offload import off_loop
from soulfra.platforms.instance import InstanceSettings
from soulfra.security.audit import AuditRecorder, head_file_for
from soulfra.security.identity import process_identity
from soulfra.security.local import LOCAL_ADMIN, ensure_local_admin
from soulfra.security.tokens import TokenService
from soulfra.serving import STOP_TIMEOUT_S, listen, serve_app
from soulfra.settings import HttpSettings, UpSettings, default_home
from soulfra.store import SqlStore
from soulfra.store.lease import PUPPET_MASTER_LEASE
from soulfra.world import DEFAULT_WORLD, WorldSpec

__all__ = ["EmbeddedSettings", "embedded_app", "http_rules", "listen", "run_embedded"]

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
    minds: MindSettings | None = None  # where language agents are asked (--model-url); None: they fall back

    @classmethod
    def from_settings(cls, settings: UpSettings, spec: WorldSpec) -> EmbeddedSettings:
        """The embedded system that ``settings`` describe, running ``spec`` (read from ``settings.world``)."""
        limits, access = http_rules(settings)
        return cls(
            access=access,
            tls_cert=settings.tls_cert,
            tls_key=settings.tls_key,
            data=settings.data,
            db=settings.db,
            seed=settings.seed,
            spec=settings.world_spec(spec),
            agents=settings.agents,
            minds=settings.mind_settings(),
            rate=settings.rate or None,
            cycle_every=settings.cycle_every,
            home=settings.home,
            limits=limits,
        )

    def database_url(self) -> str:
        """``db``, or the SQLite database in ``data`` (which still holds uploads as they arrive)."""
        return self.db if self.db is not None else f"sqlite:///{self.data / 'soulfra.db'}"


def http_rules(settings: HttpSettings) -> tuple[RequestLimits, AccessSettings]:
    """The request limits and access rules an API process's ``settings`` describe."""
    limits = RequestLimits(
        max_body=int(settings.max_body), max_upload=int(settings.max_upload), body_timeout=settings.body_timeout
    )
    access = AccessSettings.for_host(
        settings.host, settings.allowed_host or (), private_surface=settings.private_surface,
        cors_origins=tuple(settings.cors_origin or ()), mutation_rate=settings.rate_limit,
        mutation_burst=settings.rate_burst, auth_failures=settings.auth_failures,
    )  # fmt: skip
    return limits, access


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
    master = LocalPuppetMaster(engine, default.instance_id)
    gateway = Gateway(bus, default.instance_id, store=store, lister=master.list_instances, metrics=metrics)

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

    router = meta_router(master, gateway, keyring, Limits(), spool=settings.data)
    app = create_app(
        gateway, lifespan=lifespan, extra=[router], limits=settings.limits, tokens=tokens, recorder=recorder,
        access=settings.access, metrics=metrics, puppet=master,
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
            minds=settings.minds,
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
    serve_app(app, sock, tls_cert=settings.tls_cert, tls_key=settings.tls_key, stop_timeout=stop_timeout)
