"""The flags the serving commands share (``up``, ``serve api``, ``serve meta``, ``serve <platform>``): written once,
each naming the ``SOULFRA_*`` variable that sets it too (soulfra.settings reads them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from soulfra.limits import MAX_GENERATED_AGENTS, RATE_RULE, rate_problem

__all__ = [
    "AgentsOption",
    "AllowedHostOption",
    "AuthFailuresOption",
    "BodyTimeoutOption",
    "CorsOriginOption",
    "HostOption",
    "HostsPerNodeOption",
    "InsecureHttpOption",
    "MaxBodyOption",
    "MaxUploadOption",
    "MetricsHostOption",
    "MetricsPortOption",
    "NatsCaOption",
    "NatsCertOption",
    "NatsCredsOption",
    "NatsKeyOption",
    "NatsPasswordOption",
    "NatsTokenOption",
    "NatsUrlOption",
    "NatsUserOption",
    "PortOption",
    "PrivateSurfaceOption",
    "RateBurstOption",
    "RateLimitOption",
    "SeedOption",
    "ServeDbOption",
    "TlsCertOption",
    "TlsKeyOption",
    "WorldOption",
    "env",
    "rate_rule",
]


def env(field: str) -> str:
    return f" (env SOULFRA_{field.upper()})"


def rate_rule(value: float | None) -> float | None:
    """A ``--rate`` callback: the rule every way into a world shares (``soulfra.limits``), refused as a
    usage error (one line, exit 2)."""
    if value is not None and (problem := rate_problem(value)) is not None:
        raise typer.BadParameter(problem)
    return value


AGENTS_HELP = f"Extra generated agents, 0 to {MAX_GENERATED_AGENTS}"
RATE_HELP = f"Ticks per second: {RATE_RULE}"


# -- a cluster -------------------------------------------------------------------------------------------------------
HostsPerNodeOption = Annotated[
    int,
    typer.Option(
        help="Host processes on each node of the cluster (a host runs many worlds on one core); 0: one per core of "
        "this machine, at most 8" + env("hosts_per_node")
    ),
]


# -- where and how an API listens ----------------------------------------------------------------------------------
HostOption = Annotated[str, typer.Option(help="Address to listen on (loopback by default)" + env("host"))]
PortOption = Annotated[int, typer.Option(help="Port to listen on, 1 to 65535" + env("port"))]
PrivateSurfaceOption = Annotated[
    bool, typer.Option(help="The public surface reads need a viewer token too" + env("private_surface"))
]
AllowedHostOption = Annotated[
    list[str] | None,
    typer.Option(metavar="HOST", help="Another Host name the API answers to (repeatable)" + env("allowed_host")),
]
CorsOriginOption = Annotated[
    list[str] | None,
    typer.Option(
        metavar="ORIGIN",
        help="A browser origin allowed to call the API (repeatable; none by default)" + env("cors_origin"),
    ),
]
TlsCertOption = Annotated[Path | None, typer.Option(help="TLS certificate (PEM): serve HTTPS" + env("tls_cert"))]
TlsKeyOption = Annotated[Path | None, typer.Option(help="The certificate's private key (PEM)" + env("tls_key"))]
InsecureHttpOption = Annotated[
    bool, typer.Option(help="Serve plain HTTP on a non-loopback address anyway (logs a warning)" + env("insecure_http"))
]
RateLimitOption = Annotated[float, typer.Option(help="A token's changes per second" + env("rate_limit"))]
RateBurstOption = Annotated[int, typer.Option(help="A token's changes in one burst" + env("rate_burst"))]
AuthFailuresOption = Annotated[
    int, typer.Option(help="Failed authentications a minute before an address must wait" + env("auth_failures"))
]
MaxBodyOption = Annotated[
    str, typer.Option(metavar="SIZE", help="Largest JSON request body: 65536, 64KiB, 1MB..." + env("max_body"))
]
MaxUploadOption = Annotated[
    str, typer.Option(metavar="SIZE", help="Largest package upload (POST /api/import)" + env("max_upload"))
]
BodyTimeoutOption = Annotated[
    float, typer.Option(help="Seconds a request body may pause before it is refused (408)" + env("body_timeout"))
]

# -- the default world -----------------------------------------------------------------------------------------------
SeedOption = Annotated[int, typer.Option(help="Seed of the default instance, 0 to 2**64-1" + env("seed"))]
WorldOption = Annotated[Path | None, typer.Option(help="World file (TOML) of the default instance" + env("world"))]
AgentsOption = Annotated[int, typer.Option(help=AGENTS_HELP + env("agents"))]  # bounded by soulfra.settings

# -- language minds: the endpoint the runtime asks (its API key: SOULFRA_MODEL_KEY, never on the command line) ------
ModelUrlOption = Annotated[
    str | None,
    typer.Option(
        metavar="URL", help="An OpenAI-compatible endpoint the language agents are asked at (http://HOST:PORT/v1; key "
        "in SOULFRA_MODEL_KEY)" + env("model_url"),
    ),
]  # fmt: skip
ModelOption = Annotated[
    str | None,
    typer.Option(help="The model name sent, over each agent's own; the model of --language-agents" + env("model")),
]
LanguageAgentsOption = Annotated[
    bool, typer.Option(help="The generated agents (--agents) are language agents of --model" + env("language_agents"))
]
ModelInFlightOption = Annotated[
    int, typer.Option(help="Model calls in flight at once, per instance" + env("model_in_flight"))
]
ModelTimeoutOption = Annotated[float, typer.Option(help="Seconds a model call may take" + env("model_timeout"))]
ModelJsonOption = Annotated[
    str,
    typer.Option(
        metavar="auto|schema|json-schema|object|none",
        help="How the reply is asked for as JSON: auto starts with llama.cpp's schema form and steps down "
        "(json-schema, object, none) when the server refuses it" + env("model_json"),
    ),
]  # fmt: skip

# -- the services topology: database, NATS, metrics ----------------------------------------------------------------
ServeDbOption = Annotated[
    str | None, typer.Option("--db", help="Database URL (PostgreSQL for several processes)" + env("db"))
]
NatsUrlOption = Annotated[str, typer.Option("--nats", help="NATS URL; tls://host:port for TLS" + env("nats_url"))]
NatsUserOption = Annotated[str | None, typer.Option("--nats-user", help="NATS user" + env("nats_user"))]
NatsPasswordOption = Annotated[
    str | None, typer.Option("--nats-password", help="NATS password; prefer the variable" + env("nats_password"))
]
NatsTokenOption = Annotated[
    str | None, typer.Option("--nats-token", help="NATS token; prefer the variable" + env("nats_token"))
]
NatsCredsOption = Annotated[
    Path | None, typer.Option("--nats-creds", help="NATS .creds or NKey seed file" + env("nats_creds"))
]
NatsCaOption = Annotated[
    Path | None, typer.Option("--nats-ca", help="CA of the NATS server's certificate; implies TLS" + env("nats_ca"))
]
NatsCertOption = Annotated[
    Path | None, typer.Option("--nats-cert", help="TLS client certificate for NATS" + env("nats_cert"))
]
NatsKeyOption = Annotated[
    Path | None, typer.Option("--nats-key", help="Key of the TLS client certificate" + env("nats_key"))
]
MetricsHostOption = Annotated[str, typer.Option(help="Address of /metrics, /healthz and /readyz" + env("metrics_host"))]
MetricsPortOption = Annotated[
    int | None,
    typer.Option(help="Port of /metrics, /healthz and /readyz (default: not served)" + env("metrics_port")),
]
