"""``soulfra serve``: the services topology's processes, over NATS and one shared database. ``meta`` is the puppet
master (the worlds, god commands, packages), ``api`` the HTTP API and dashboard (stateless: run several), and
``runtime``, ``surface``, ``protocol``, ``mirror`` one platform of one instance each."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from soulfra.cli.options import (
    AgentsOption,
    AllowedHostOption,
    AuthFailuresOption,
    BodyTimeoutOption,
    CorsOriginOption,
    HostOption,
    InsecureHttpOption,
    LanguageAgentsOption,
    MaxBodyOption,
    MaxUploadOption,
    MetricsHostOption,
    MetricsPortOption,
    ModelInFlightOption,
    ModelJsonOption,
    ModelOption,
    ModelTimeoutOption,
    ModelUrlOption,
    NatsCaOption,
    NatsCertOption,
    NatsCredsOption,
    NatsKeyOption,
    NatsPasswordOption,
    NatsTokenOption,
    NatsUrlOption,
    NatsUserOption,
    PortOption,
    PrivateSurfaceOption,
    RateBurstOption,
    RateLimitOption,
    SeedOption,
    ServeDbOption,
    TlsCertOption,
    TlsKeyOption,
    WorldOption,
    env,
)
from soulfra.cli.server import (
    CycleOption,
    LogFormatOption,
    LogLevelOption,
    RateOption,
    crash_logged,
    load_settings,
    open_http,
)
from soulfra.logs import configure_logging

if TYPE_CHECKING:
    import socket

    from soulfra.settings import ServeSettings

__all__ = ["serve_app"]

serve_app = typer.Typer(
    help="Run one process of the services topology (NATS and a shared database): meta, api, or a platform.",
    no_args_is_help=True,
)

NATS_DEFAULT = "nats://127.0.0.1:4222"
NATS_HELP = "NATS credentials and TLS: see docs/nats-security.md."


def _ops_socket(settings: ServeSettings) -> socket.socket | None:
    """The bound socket of /metrics and the probes, when ``--metrics-port`` asks for them (bound first: a port in
    use is one clear error before anything is opened)."""
    if settings.metrics_port is None:
        return None
    from soulfra.serving import listen  # noqa: PLC0415 -- the server stack loads only here

    return listen(settings.metrics_host, settings.metrics_port)


def _spec(settings: Any) -> Any:
    from soulfra.cli.runner import load_world_file  # noqa: PLC0415
    from soulfra.world import DEFAULT_WORLD  # noqa: PLC0415

    return load_world_file(settings.world) if settings.world is not None else DEFAULT_WORLD


@serve_app.command("meta", epilog=NATS_HELP)
def meta_command(
    ctx: typer.Context,
    db: ServeDbOption = None,
    nats_url: NatsUrlOption = NATS_DEFAULT,
    nats_user: NatsUserOption = None,
    nats_password: NatsPasswordOption = None,
    nats_token: NatsTokenOption = None,
    nats_creds: NatsCredsOption = None,
    nats_ca: NatsCaOption = None,
    nats_cert: NatsCertOption = None,
    nats_key: NatsKeyOption = None,
    seed: SeedOption = 0,
    world: WorldOption = None,
    agents: AgentsOption = 0,
    language_agents: LanguageAgentsOption = False,
    model_url: ModelUrlOption = None,
    model: ModelOption = None,
    model_in_flight: ModelInFlightOption = 8,
    model_timeout: ModelTimeoutOption = 10.0,
    model_json: ModelJsonOption = "auto",
    rate: RateOption = 2.0,
    cycle_every: CycleOption = 0,
    leave: Annotated[
        list[str] | None,
        typer.Option(metavar="ID", help="An instance left to its own platform processes (repeatable)" + env("leave")),
    ] = None,
    metrics_host: MetricsHostOption = "127.0.0.1",
    metrics_port: MetricsPortOption = None,
    log_level: LogLevelOption = "info",
    log_format: LogFormatOption = "auto",
) -> None:
    """The puppet master: runs every stored instance (and a default one, made from --seed, --world and --agents
    when none is stored) with its four platforms, and answers the API processes' god commands, instances and
    packages over NATS. One per database."""
    from soulfra.settings import MetaServeSettings  # noqa: PLC0415 -- pydantic-settings loads only when a command runs

    settings = load_settings(ctx, MetaServeSettings)
    _run(settings, lambda options, sock: _serve_meta(settings, options, sock), "serve meta")


def _serve_meta(settings: Any, options: Any, sock: socket.socket | None) -> Any:
    from soulfra.services import serve_meta  # noqa: PLC0415 -- the server stack loads only here

    return serve_meta(settings, spec=_spec(settings), nats_options=options, ops_socket=sock)


@serve_app.command("api", epilog=NATS_HELP)
def api_command(
    ctx: typer.Context,
    db: ServeDbOption = None,
    nats_url: NatsUrlOption = NATS_DEFAULT,
    nats_user: NatsUserOption = None,
    nats_password: NatsPasswordOption = None,
    nats_token: NatsTokenOption = None,
    nats_creds: NatsCredsOption = None,
    nats_ca: NatsCaOption = None,
    nats_cert: NatsCertOption = None,
    nats_key: NatsKeyOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    private_surface: PrivateSurfaceOption = False,
    allowed_host: AllowedHostOption = None,
    cors_origin: CorsOriginOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    insecure_http: InsecureHttpOption = False,
    rate_limit: RateLimitOption = 20.0,
    rate_burst: RateBurstOption = 100,
    auth_failures: AuthFailuresOption = 10,
    max_body: MaxBodyOption = "64KiB",
    max_upload: MaxUploadOption = "1GiB",
    body_timeout: BodyTimeoutOption = 30.0,
    log_level: LogLevelOption = "info",
    log_format: LogFormatOption = "auto",
) -> None:
    """The HTTP API and dashboard as a stateless gateway: platform reads over NATS, god commands to `soulfra serve
    meta`, tokens and packages in the shared database. Run several behind a load balancer; /metrics, /healthz and
    /readyz are on its own port."""
    from soulfra.settings import ApiServeSettings  # noqa: PLC0415 -- pydantic-settings loads only when a command runs

    settings = load_settings(ctx, ApiServeSettings)
    if settings.db is None:
        from soulfra.errors import ConfigError  # noqa: PLC0415

        raise ConfigError("soulfra serve api needs a database: --db URL, or SOULFRA_DB")
    tls = open_http(settings, settings.log_level, settings.log_format)
    options = settings.nats_options()
    from soulfra.services import api_app  # noqa: PLC0415
    from soulfra.serving import listen  # noqa: PLC0415 -- the server stack loads only here
    from soulfra.serving import serve_app as serve_http  # noqa: PLC0415

    sock = listen(settings.host, settings.port)
    with crash_logged("serve api"), sock:
        app = api_app(settings, nats_options=options)
        Console(stderr=True, highlight=False).print(
            f"soulfra: api serving on {'https' if tls else 'http'}://{settings.host}:{settings.port}; Ctrl-C stops",
            markup=False,
            soft_wrap=True,
        )
        serve_http(app, sock, tls_cert=settings.tls_cert, tls_key=settings.tls_key)


def _platform_command(platform: str) -> Callable[..., None]:
    def command(
        ctx: typer.Context,
        instance: Annotated[str, typer.Option("--instance", help="The instance this platform belongs to")],
        db: ServeDbOption = None,
        nats_url: NatsUrlOption = NATS_DEFAULT,
        nats_user: NatsUserOption = None,
        nats_password: NatsPasswordOption = None,
        nats_token: NatsTokenOption = None,
        nats_creds: NatsCredsOption = None,
        nats_ca: NatsCaOption = None,
        nats_cert: NatsCertOption = None,
        nats_key: NatsKeyOption = None,
        create: Annotated[
            bool,
            typer.Option(
                help="Create the instance (--seed, --world, --agents) if it is not stored yet" + env("create")
            ),
        ] = False,
        seed: SeedOption = 0,
        world: WorldOption = None,
        agents: AgentsOption = 0,
        language_agents: LanguageAgentsOption = False,
        model_url: ModelUrlOption = None,
        model: ModelOption = None,
        model_in_flight: ModelInFlightOption = 8,
        model_timeout: ModelTimeoutOption = 10.0,
        model_json: ModelJsonOption = "auto",
        rate: RateOption = 2.0,
        cycle_every: CycleOption = 0,
        metrics_host: MetricsHostOption = "127.0.0.1",
        metrics_port: MetricsPortOption = None,
        log_level: LogLevelOption = "info",
        log_format: LogFormatOption = "auto",
    ) -> None:
        from soulfra.settings import PlatformServeSettings  # noqa: PLC0415

        settings = load_settings(ctx, PlatformServeSettings)

        def serve(options: Any, sock: socket.socket | None) -> Any:
            from soulfra.services import serve_platform  # noqa: PLC0415 -- the server stack loads only here

            return serve_platform(
                platform, settings, instance_id=instance, spec=_spec(settings), nats_options=options, ops_socket=sock
            )

        _run(settings, serve, f"serve {platform}")

    command.__doc__ = {
        "runtime": "The runtime of one instance: ticks the world at --rate and takes its inputs.",
        "surface": "The surface of one instance: vibe weather, echoes, traces and views, read-only.",
        "protocol": "The protocol of one instance: validation and permission of its inputs.",
        "mirror": "The mirror of one instance: unified snapshots every --cycle-every ticks, loop seeds, anomalies.",
    }[platform]
    return command


def _run(settings: Any, serve: Callable[[Any, socket.socket | None], Any], name: str) -> None:
    """Run ``serve``'s coroutine with the NATS options and the ops socket the settings give, logging configured."""
    import asyncio  # noqa: PLC0415

    if settings.db is None:
        from soulfra.errors import ConfigError  # noqa: PLC0415

        raise ConfigError(f"soulfra {name} needs a database: --db URL, or SOULFRA_DB")
    options = settings.nats_options()
    configure_logging(settings.log_level, settings.log_format)
    sock = _ops_socket(settings)
    with crash_logged(name):
        try:
            asyncio.run(serve(options, sock))
        finally:
            if sock is not None:
                sock.close()


for _platform in ("runtime", "surface", "protocol", "mirror"):
    serve_app.command(_platform, epilog=NATS_HELP)(_platform_command(_platform))
