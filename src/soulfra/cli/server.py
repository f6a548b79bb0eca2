"""The CLI's server commands: ``up`` (the embedded system; ``serve`` is soulfra.cli.serve), and the client
commands that talk to a running server over HTTP (status, whisper, pause, resume, override, snapshot)."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from soulfra.cli.options import (
    RATE_HELP,
    AgentsOption,
    AllowedHostOption,
    AuthFailuresOption,
    BodyTimeoutOption,
    CorsOriginOption,
    HostOption,
    HostsPerNodeOption,
    InsecureHttpOption,
    LanguageAgentsOption,
    MaxBodyOption,
    MaxUploadOption,
    ModelInFlightOption,
    ModelJsonOption,
    ModelOption,
    ModelTimeoutOption,
    ModelUrlOption,
    NatsUrlOption,
    PortOption,
    PrivateSurfaceOption,
    RateBurstOption,
    RateLimitOption,
    SeedOption,
    TlsCertOption,
    TlsKeyOption,
    WorldOption,
)
from soulfra.errors import AuthenticationError, ConfigError, ServerUnavailableError, SoulfraError, error_for_code
from soulfra.logs import configure_logging

__all__ = ["register"]

if TYPE_CHECKING:
    import httpx

    from soulfra.settings import HttpSettings, SoulfraSettings

    Kind = TypeVar("Kind", bound=SoulfraSettings)

# The flags below that have a setting (soulfra.settings) name its variable in their help; what is not given on the
# command line comes from that variable, then from the setting's default. The defaults written here are the settings'
# own (tests/unit/test_settings.py holds them equal), so that --help shows them without loading pydantic-settings.
DEFAULT_URL = "http://127.0.0.1:8000"


def _given(ctx: typer.Context, name: str | None) -> bool:
    """True when the parameter ``name`` was given on the command line (not taken from its default)."""
    source = ctx.get_parameter_source(name) if name else None
    return source is not None and source.name == "COMMANDLINE"


def load_settings(ctx: typer.Context, kind: type[Kind]) -> Kind:
    """This command's settings: the flags given on its command line, over ``SOULFRA_*`` variables, over defaults."""
    given: dict[str, Any] = {}
    names: dict[str, str] = {}
    for param in ctx.command.params:
        if param.name in kind.model_fields and _given(ctx, param.name):
            given[param.name] = ctx.params[param.name]
            names[param.name] = param.opts[0]
    return kind.load(given, names=names)


def _server_url(ctx: typer.Context, param: typer.CallbackParam, value: str) -> str:
    """``--url`` when given, else ``SOULFRA_URL``, else the default: checked, for every client command."""
    from soulfra.settings import ClientSettings  # noqa: PLC0415 -- pydantic-settings loads only when a command runs

    return ClientSettings.load({"url": value} if _given(ctx, param.name) else {}).url


def _env(field: str) -> str:
    return f" (env SOULFRA_{field.upper()})"


UrlOption = Annotated[
    str,
    typer.Option("--url", callback=_server_url, help="The running server (soulfra up)" + _env("url")),
]

# The token a client command sends: --token, else SOULFRA_TOKEN, else the one `soulfra up` keeps in SOULFRA_HOME.
_TOKEN: contextvars.ContextVar[str | None] = contextvars.ContextVar("soulfra_cli_token", default=None)
HOW_TO_AUTHENTICATE = (
    "; pass --token TOKEN or set SOULFRA_TOKEN (a token from `soulfra token create`), or run where SOULFRA_HOME holds "
    "the server's own token file"
)


def _remember_token(value: str | None) -> str | None:
    """``--token``'s callback: remembered for this command's requests (every client command has the flag)."""
    _TOKEN.set(value or None)
    return value


TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", callback=_remember_token, show_default=False,
        help="API token to send (default: SOULFRA_TOKEN, else the token file in SOULFRA_HOME)",
    ),
]  # fmt: skip


def auth_headers() -> dict[str, str]:
    """The ``Authorization`` header a client command sends (none when no token is known)."""
    token = _TOKEN.get()
    if token is None:
        from soulfra.security.local import read_home_token  # noqa: PLC0415 -- loads only when a command runs
        from soulfra.settings import ClientSettings  # noqa: PLC0415

        settings = ClientSettings.load()
        token = settings.token.get_secret_value() if settings.token is not None else read_home_token(settings.home)
    return {} if not token else {"authorization": f"Bearer {token}"}


def server_error(code: str, detail: str) -> SoulfraError:
    """The error a server's refusal names; a missing or refused token says how to pass one."""
    error = error_for_code(code, detail)
    if isinstance(error, AuthenticationError):
        return AuthenticationError(detail + HOW_TO_AUTHENTICATE)
    return error


InstanceOption = Annotated[
    str | None, typer.Option("--instance", "-i", help="Instance id; default: the server's default instance")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's reply as JSON")]
# a command with no server involved, or one that does the work itself with --db (the result is not the server's)
LocalJsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON")]
LogLevelOption = Annotated[
    str,
    typer.Option(
        "--log-level", help="Log records at this level and above: debug, info, warning, error" + _env("log_level")
    ),
]
LogFormatOption = Annotated[
    str,
    typer.Option(
        "--log-format",
        help="Log lines as json or console; auto: console on a terminal, json otherwise" + _env("log_format"),
    ),
]
RateOption = Annotated[float, typer.Option(help=RATE_HELP + _env("rate"))]  # bounded by soulfra.settings
CycleOption = Annotated[int, typer.Option(help="Ticks between unified snapshots; 0 for none" + _env("cycle_every"))]


@contextlib.contextmanager
def crash_logged(command: str) -> Iterator[None]:
    """A server that stops on a failure that is not one of Soulfra's own (a bug) logs it with its traceback, in the
    log's format, and exits with status 1; Soulfra's errors stay one line with their exit code (``main``)."""
    try:
        yield
    except SoulfraError:
        raise
    except Exception:
        logging.getLogger("soulfra.cli").exception("soulfra %s stopped by an unexpected error", command)
        raise typer.Exit(1) from None


def open_http(settings: HttpSettings, log_level: str, log_format: str = "auto") -> bool:
    """Check that an API may listen where ``settings`` say, and configure logging; whether it serves HTTPS. Plain
    HTTP beyond loopback is refused unless asked for (``--insecure-http``), and then logged."""
    tls = settings.tls_cert is not None
    if not settings.loopback() and not tls and not settings.insecure_http:
        raise ConfigError(
            f"--host {settings.host} would open the API to the network in plain HTTP: give --tls-cert and --tls-key, "
            "or --insecure-http to do it anyway"
        )
    configure_logging(log_level, log_format)
    if not settings.loopback() and not tls:
        logging.getLogger("soulfra.cli").warning(
            "serving plain HTTP on %s (--insecure-http): tokens cross the network unencrypted", settings.host
        )
    return tls


def up_command(
    ctx: typer.Context,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    data: Annotated[Path, typer.Option(help="Data directory: the SQLite database lives here" + _env("data"))] = Path(
        "soulfra-data"
    ),
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database URL: sqlite:///PATH or postgresql://USER@HOST/DB (default: SQLite in --data)" + _env("db"),
        ),
    ] = None,
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
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Run the worlds across this Ray cluster (host:port) instead, with --db PostgreSQL and --nats"
            + _env("ray_address")
        ),
    ] = None,
    nats_url: NatsUrlOption = "nats://127.0.0.1:4222",
    hosts_per_node: HostsPerNodeOption = 0,
) -> None:
    """Run Soulfra in one process: the default instance ticking, its four platforms, and the HTTP API. With
    --ray-address, the worlds run across a Ray cluster's nodes and this process is their puppet master and API."""
    from soulfra.settings import ClusterSettings, UpSettings  # noqa: PLC0415 -- pydantic-settings loads only here

    if ray_address is not None:
        from soulfra.cli.cluster import run_cluster  # noqa: PLC0415

        run_cluster(load_settings(ctx, ClusterSettings), ray_address)
        return
    settings = load_settings(ctx, UpSettings)
    tls = open_http(settings, settings.log_level, settings.log_format)
    from soulfra.cli.runner import load_world_file  # noqa: PLC0415 -- the server stack loads only here
    from soulfra.system import EmbeddedSettings, listen, run_embedded  # noqa: PLC0415
    from soulfra.world import DEFAULT_WORLD  # noqa: PLC0415

    spec = load_world_file(settings.world) if settings.world is not None else DEFAULT_WORLD
    embedded = EmbeddedSettings.from_settings(settings, spec)
    sock = listen(settings.host, settings.port)

    where = f"data in {settings.data}" if settings.db is None else f"database {shown_url(settings.db)}"

    def announce() -> None:
        Console(stderr=True, highlight=False).print(
            f"soulfra: serving on {'https' if tls else 'http'}://{settings.host}:{settings.port} ({where}); "
            "Ctrl-C stops",
            markup=False,
            soft_wrap=True,  # one line, however long the database's URL
        )

    with crash_logged("up"), sock:  # closed however the server ends (a database refused before serving, say)
        run_embedded(embedded, sock, announce=announce)


def shown_url(url: str) -> str:
    """A database URL as it may be printed: its password hidden."""
    import sqlalchemy as sa  # noqa: PLC0415 -- only a server loads the storage stack

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


REQUEST_TIMEOUT = 15.0  # seconds a client command waits for the server's reply


def unreachable(url: str, exc: httpx.HTTPError, *, hint: str = "") -> ServerUnavailableError:
    """The error for an exchange with ``url`` that failed: only a refused or unanswered connection means no server;
    a server that took the connection and then went silent or broke off is reported as that."""
    import httpx  # noqa: PLC0415 -- the HTTP client loads only when a command talks to a server

    kind = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return ServerUnavailableError(f"no Soulfra server at {url} ({kind}){hint}")
    if isinstance(exc, httpx.TimeoutException):
        return ServerUnavailableError(f"the server at {url} took the connection but did not answer in time ({kind})")
    return ServerUnavailableError(f"the exchange with the server at {url} failed ({kind}: {exc})")


def _request(method: str, url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    if body is None and method in ("POST", "PUT"):
        body = {}  # a JSON route's empty body: the API takes only application/json for a change
    import httpx  # noqa: PLC0415 -- the HTTP client loads only when a command talks to a server

    try:
        response = httpx.request(
            method, url.rstrip("/") + path, json=body, timeout=REQUEST_TIMEOUT, headers=auth_headers()
        )
    except httpx.HTTPError as exc:
        raise unreachable(url, exc, hint=START_ONE) from None
    return read_reply(url, response)


START_ONE = "; start one with `soulfra up`"


def read_reply(url: str, response: httpx.Response) -> dict[str, Any]:
    """The JSON object a server at ``url`` answered; its refusal (``{code, detail}``) as the error the code names."""
    try:
        reply = response.json()
    except ValueError:
        raise ServerUnavailableError(
            f"{url} answered {response.status_code} without JSON; is it a Soulfra server?"
        ) from None
    if response.status_code >= 400:
        raise server_error(str(reply.get("code", "error")), str(reply.get("detail", response.text)))
    return dict(reply)


def _instance(url: str, instance: str | None) -> str:
    if instance is not None:
        return instance
    return str(_request("GET", url, "/api/instances")["default"])


def _print(reply: dict[str, Any], as_json: bool, line: str) -> None:
    if as_json:
        typer.echo(json.dumps(reply))
    else:
        typer.echo(line)


def status_command(
    url: UrlOption = DEFAULT_URL,
    instance: InstanceOption = None,
    as_json: JsonOption = False,
    _token: TokenOption = None,
) -> None:
    """Every platform's status, as the server's bridge sees it."""
    target = _instance(url, instance)
    reply = _request("GET", url, f"/api/instances/{target}/status")
    if as_json:
        typer.echo(json.dumps(reply))
        return
    typer.echo(f"instance {target}")
    for name, report in reply["platforms"].items():
        if "error" in report:
            typer.echo(f"  {name:<9} DOWN  {report['error']['code']}: {report['error']['detail']}")
            continue
        state = "overridden" if report.get("halted") else report.get("state", "running")
        tick = f"tick {report['tick']}" if "tick" in report else "(no ticks of its own)"  # the protocol keeps none
        typer.echo(f"  {name:<9} {state:<10} {tick}{failure_note(report.get('failure'))}")


def failure_note(failure: Any) -> str:
    """What stopped a failed instance, for a status line (empty when it has not failed)."""
    if not isinstance(failure, dict):
        return ""
    return f"  (failed at tick {failure.get('tick')}: {failure.get('type')}: {failure.get('message')})"


def whisper_command(
    text: Annotated[str, typer.Argument(help="What to whisper")],
    to: Annotated[str, typer.Option("--to", help="Agent id, or * for every agent")] = "*",
    tone: Annotated[str, typer.Option(help="gentle, urgent, playful, solemn or dark")] = "gentle",
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    instance: InstanceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Whisper to an agent; prints the acknowledgement once the whisper is stored."""
    target = _instance(url, instance)
    ack = _request("POST", url, f"/api/instances/{target}/whispers", {"text": text, "target": to, "tone": tone})
    _print(ack, as_json, f"whisper {ack['seq']} stored; applies at tick {ack['tick']}")


def _control(url: str, instance: str | None, as_json: bool, op: str, done: str) -> None:
    target = _instance(url, instance)
    reply = _request("POST", url, f"/api/instances/{target}/{op}")
    _print(reply, as_json, f"{target} {done} at tick {reply['tick']}")


def pause_command(
    url: UrlOption = DEFAULT_URL,
    instance: InstanceOption = None,
    as_json: JsonOption = False,
    _token: TokenOption = None,
) -> None:
    """Stop the instance's ticks (the other platforms go on serving)."""
    _control(url, instance, as_json, "pause", "paused")


def resume_command(
    url: UrlOption = DEFAULT_URL,
    instance: InstanceOption = None,
    as_json: JsonOption = False,
    _token: TokenOption = None,
) -> None:
    """Lift a pause or an emergency override."""
    _control(url, instance, as_json, "resume", "resumed")


def override_command(
    reason: Annotated[str, typer.Option(help="Why, for the audit log")] = "",
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    instance: InstanceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Emergency override: every platform of the instance stops until `soulfra resume`."""
    target = _instance(url, instance)
    reply = _request("POST", url, f"/api/instances/{target}/override", {"reason": reason})
    _print(reply, as_json, f"{target} stopped by emergency override at tick {reply['tick']}")


def snapshot_command(
    unified: Annotated[bool, typer.Option(help="A unified snapshot of all four platforms")] = False,
    url: UrlOption = DEFAULT_URL,
    _token: TokenOption = None,
    instance: InstanceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Take a snapshot now (manual, or unified with --unified)."""
    target = _instance(url, instance)
    if unified:
        reply = _request("POST", url, f"/api/instances/{target}/unified-snapshots")
        line = (
            f"unified snapshot {reply['id']} at tick {reply['tick']}: system hash {reply['system_hash'][:16]}, "
            f"{len(reply['conflicts'])} conflicts, runtime paused {reply['pause_ns'] / 1e6:.2f} ms"
        )
    else:
        reply = _request("POST", url, f"/api/instances/{target}/snapshots")
        line = f"snapshot {reply['id']} at tick {reply['tick']}: {reply['state_hash']}"
    _print(reply, as_json, line)


def register(app: typer.Typer) -> None:
    app.command("up")(up_command)
    for name, command in (
        ("status", status_command),
        ("whisper", whisper_command),
        ("pause", pause_command),
        ("resume", resume_command),
        ("override", override_command),
        ("snapshot", snapshot_command),
    ):
        app.command(name)(command)
