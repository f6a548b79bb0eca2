"""Settings: what Soulfra's commands are configured by, read in one place. A command-line flag wins over a
``SOULFRA_*`` environment variable, which wins over the default here.

Each kind of process reads only what it uses (``UpSettings``, ``ServeSettings``, ``ClientSettings``), so a bad
variable meant for the server never stops a client command. Nothing below this layer reads the environment: the
values are handed down. A bad value is a ConfigError naming the flag or variable it came from, in one line.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import ByteSize, Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from soulfra.errors import ConfigError
from soulfra.limits import MAX_GENERATED_AGENTS, RATE_RULE, rate_problem
from soulfra.logs import FORMATS, LEVELS

if TYPE_CHECKING:
    from soulfra.bus import NatsOptions
    from soulfra.language import MindSettings
    from soulfra.world import WorldSpec

__all__ = [
    "ENV_PREFIX",
    "ApiServeSettings",
    "ClientSettings",
    "ClusterSettings",
    "HttpSettings",
    "MetaServeSettings",
    "ModelSettings",
    "PlatformServeSettings",
    "ServeSettings",
    "ServingSettings",
    "SoulfraSettings",
    "UpSettings",
    "WorldSettings",
    "default_home",
]

ENV_PREFIX = "SOULFRA_"
MAX_AUTO_HOSTS = 8  # hosts per node a cluster starts by itself (hosts_per_node 0)


def default_home() -> Path:
    """Where the installation key and trusted keys live when ``SOULFRA_HOME`` does not say: ``~/.soulfra``."""
    return Path.home() / ".soulfra"


class SoulfraSettings(BaseSettings):
    """What every command shares: the installation's home (its signing key and the keys it trusts)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,  # SOULFRA_HOME= (set but empty) means "not set", as it did before
        frozen=True,
        extra="forbid",  # a flag handed to the wrong kind of settings is a bug, not something to drop
        validate_default=False,
    )

    SECRETS: ClassVar[frozenset[str]] = frozenset()  # fields whose value an error never shows

    home: Path = Field(default_factory=default_home, description="the installation key and trusted keys")

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @classmethod
    def load(cls, flags: Mapping[str, Any] | None = None, *, names: Mapping[str, str] | None = None) -> Self:
        """The settings from ``flags`` (the values given on the command line, by field name), then the environment,
        then the defaults. ``names`` gives each flag's spelling (``--nats``) for errors; by default ``--field-name``.
        Raises ConfigError with one line naming each bad value's flag or variable."""
        given = dict(flags or {})
        try:
            return cls(**given)
        except ValidationError as exc:
            problems = []
            for error in exc.errors(include_url=False):
                field = str(error["loc"][0]) if error["loc"] else ""
                if field in given:
                    source = (names or {}).get(field) or "--" + field.replace("_", "-")
                else:
                    source = cls.env_name(field)
                message = str(error["msg"]).removeprefix("Value error, ")
                shown = "'**********'" if field in cls.SECRETS else repr(error["input"])
                problems.append(f"{source}={shown}: {message[:1].lower()}{message[1:]}")
            raise ConfigError("invalid setting " + "; ".join(problems)) from None

    @staticmethod
    def env_name(field: str) -> str:
        """The environment variable that sets ``field``."""
        return ENV_PREFIX + field.upper()


class ClientSettings(SoulfraSettings):
    """The commands that talk to a running server (``status``, ``whisper``, ``god ...``, ``export`` ...)."""

    url: str = Field("http://127.0.0.1:8000", description="the running server the client commands talk to")
    token: SecretStr | None = Field(None, description="the API token sent (default: the one in SOULFRA_HOME)")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL, such as http://127.0.0.1:8000")
        return value


class ServingSettings(SoulfraSettings):
    """What both serving commands (``up`` and ``serve``) share: logging and the pace of the worlds."""

    log_level: str = Field("info", description="log records at this level and above")
    log_format: str = Field("auto", description="log lines as json or console; auto: console on a terminal")
    rate: float = Field(2.0, allow_inf_nan=False, description=f"ticks per second, {RATE_RULE}")
    cycle_every: int = Field(0, ge=0, description="ticks between unified snapshots; 0 for none")

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: float) -> float:
        if (problem := rate_problem(value)) is not None:
            raise ValueError(problem)
        return value

    @field_validator("log_level", "log_format")
    @classmethod
    def _known_choice(cls, value: str, info: ValidationInfo) -> str:
        choices = LEVELS if info.field_name == "log_level" else FORMATS
        if value.lower() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value.lower()


class HttpSettings(SoulfraSettings):
    """What the processes that serve the HTTP API (``up``, ``serve api``) share: where and how they listen, and the
    limits and access rules of their requests."""

    host: str = Field("127.0.0.1", min_length=1, description="the address the API listens on")
    port: int = Field(8000, ge=1, le=65535, description="the port the API listens on")
    max_body: ByteSize = Field(ByteSize(64 << 10), description="the largest JSON request body")
    max_upload: ByteSize = Field(ByteSize(1 << 30), description="the largest package upload")
    body_timeout: float = Field(30.0, ge=0.001, allow_inf_nan=False, description="seconds a body may pause")
    private_surface: bool = Field(False, description="the public surface reads need a viewer token too")
    allowed_host: list[str] | None = Field(None, description="more Host names the API answers to")
    cors_origin: list[str] | None = Field(None, description="browser origins allowed to call the API")
    tls_cert: Path | None = Field(None, description="the TLS certificate (PEM) to serve HTTPS with")
    tls_key: Path | None = Field(None, description="the TLS certificate's private key (PEM)")
    insecure_http: bool = Field(False, description="serve plain HTTP on a non-loopback address anyway")
    rate_limit: float = Field(20.0, gt=0, allow_inf_nan=False, description="a token's changes per second")
    rate_burst: int = Field(100, ge=1, description="a token's changes in one burst")
    auth_failures: int = Field(10, ge=1, description="failed authentications a minute before an address waits")

    @model_validator(mode="after")
    def _tls_pair(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        return self

    def loopback(self) -> bool:
        """Whether the API listens on this machine only."""
        return self.host in ("127.0.0.1", "::1", "localhost") or self.host.startswith("127.")

    @field_validator("max_body", "max_upload")
    @classmethod
    def _positive_size(cls, value: ByteSize) -> ByteSize:
        if value < 1:
            raise ValueError("a size must be at least 1 byte, such as 65536, 64KiB or 1GiB")
        return value


class WorldSettings(SoulfraSettings):
    """The world a serving process makes when it finds none stored: its seed, world file and extra agents."""

    MAX_SEED: ClassVar[int] = 2**64 - 1  # as every world takes (soulfra run, POST /api/instances)

    seed: int = Field(0, ge=0, le=MAX_SEED, description="the default instance's seed")
    world: Path | None = Field(None, description="the default instance's world file (TOML)")
    agents: int = Field(0, ge=0, le=MAX_GENERATED_AGENTS, description="extra generated agents in the default instance")


class ModelSettings(SoulfraSettings):
    """Language minds: the OpenAI-compatible endpoint each runtime asks for its language agents, and the budget of
    each instance. The key is read from the environment (``SOULFRA_MODEL_KEY``) and never shown or logged."""

    SECRETS: ClassVar[frozenset[str]] = frozenset({"model_key"})

    model_url: str | None = Field(None, description="an OpenAI-compatible endpoint (http://127.0.0.1:8080/v1)")
    model: str | None = Field(
        None, min_length=1, max_length=128, description="the model name sent, over each agent's own; with "
        "language_agents, the generated agents' model",
    )  # fmt: skip
    model_key: SecretStr | None = Field(None, description="the endpoint's API key (prefer the variable)")
    model_in_flight: int = Field(8, ge=1, le=4096, description="model calls in flight at once, per instance")
    model_timeout: float = Field(10.0, gt=0, le=600, allow_inf_nan=False, description="seconds a model call may take")
    model_calls_per_minute: int = Field(600, ge=1, description="model calls a minute, per instance")
    model_tokens_per_minute: int = Field(200_000, ge=1, description="model tokens a minute, per instance")
    language_agents: bool = Field(False, description="the generated agents (agents) are language agents of model")
    # the same modes as soulfra.language.client.JSON_MODES (a test holds them equal; that module loads httpx)
    model_json: Literal["auto", "schema", "json-schema", "object", "none"] = Field(
        "auto", description="how the reply is asked for as JSON: auto (llama.cpp's schema form, stepping down to "
        "json-schema, object, none as the server refuses), schema, json-schema, object or none",
    )  # fmt: skip

    @field_validator("model_url")
    @classmethod
    def _http_model_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _language_needs_a_model(self) -> Self:
        if self.language_agents and self.model is None:
            raise ValueError("language_agents needs a model name (--model)")
        return self

    def mind_settings(self) -> MindSettings | None:
        """Where the runtimes ask their language agents, or None (no endpoint: language agents fall back)."""
        if self.model_url is None:
            return None
        from soulfra.language import Budget, MindSettings  # noqa: PLC0415 -- httpx loads only when it is used

        budget = Budget(
            max_in_flight=self.model_in_flight, timeout=self.model_timeout,
            calls_per_minute=self.model_calls_per_minute, tokens_per_minute=self.model_tokens_per_minute,
        )  # fmt: skip
        key = None if self.model_key is None else self.model_key.get_secret_value()
        return MindSettings(url=self.model_url, model=self.model, api_key=key, budget=budget, json_mode=self.model_json)

    def world_spec(self, spec: WorldSpec) -> WorldSpec:
        """``spec``, its generated agents made language agents of ``model`` when ``language_agents`` says so."""
        if not self.language_agents or self.model is None:
            return spec
        return dataclasses.replace(spec, generated_model=self.model)


class UpSettings(ServingSettings, HttpSettings, WorldSettings, ModelSettings):
    """``soulfra up``: the embedded system in one process, and its HTTP API."""

    data: Path = Field(Path("soulfra-data"), description="the data directory (the SQLite database, uploads)")
    db: str | None = Field(None, description="the database URL (default: SQLite in the data directory)")


class ServeSettings(ServingSettings):
    """``soulfra serve``: one platform of one instance as its own process, on NATS and a shared database."""

    SECRETS: ClassVar[frozenset[str]] = frozenset({"nats_password", "nats_token"})

    db: str | None = Field(None, description="the database URL (PostgreSQL for several processes)")
    nats_url: str = Field("nats://127.0.0.1:4222", min_length=1, description="the NATS server (tls:// for TLS)")
    nats_user: str | None = Field(None, min_length=1, description="the NATS user (with nats_password)")
    nats_password: SecretStr | None = Field(None, description="the NATS user's password")
    nats_token: SecretStr | None = Field(None, description="a NATS authentication token")
    nats_creds: Path | None = Field(None, description="a NATS .creds file or NKey seed file")
    nats_ca: Path | None = Field(None, description="the CA that signed the NATS server's certificate (implies TLS)")
    nats_cert: Path | None = Field(None, description="this process's TLS client certificate for NATS")
    nats_key: Path | None = Field(None, description="the key of the TLS client certificate")
    metrics_host: str = Field("127.0.0.1", min_length=1, description="the address /metrics and the probes listen on")
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="the port of /metrics, /healthz and /readyz (none: not served)"
    )

    @field_validator("nats_creds", "nats_ca", "nats_cert", "nats_key")
    @classmethod
    def _expand_path(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()

    def nats_options(self) -> NatsOptions:
        """The NATS connection's credentials and TLS files; ConfigError for a combination that cannot be used."""
        from soulfra.bus import NatsOptions  # noqa: PLC0415 -- a client command's settings load no bus code

        return NatsOptions(
            user=self.nats_user,
            password=None if self.nats_password is None else self.nats_password.get_secret_value(),
            token=None if self.nats_token is None else self.nats_token.get_secret_value(),
            creds=self.nats_creds,
            ca=self.nats_ca,
            cert=self.nats_cert,
            key=self.nats_key,
        )


class PlatformServeSettings(ServeSettings, WorldSettings, ModelSettings):
    """``soulfra serve runtime|surface|protocol|mirror``: one platform of one instance; ``create`` makes the
    instance (of ``seed``, ``world`` and ``agents``) when it is not stored yet."""

    SECRETS: ClassVar[frozenset[str]] = ServeSettings.SECRETS | ModelSettings.SECRETS

    create: bool = Field(False, description="create the instance when it is not stored yet (runtime)")


class MetaServeSettings(ServeSettings, WorldSettings, ModelSettings):
    """``soulfra serve meta``: the puppet master, hosting the worlds; ``leave`` names instances it does not run
    (their own platform processes do)."""

    SECRETS: ClassVar[frozenset[str]] = ServeSettings.SECRETS | ModelSettings.SECRETS

    leave: list[str] | None = Field(None, description="instances the puppet master leaves to their own processes")


class ApiServeSettings(ServeSettings, HttpSettings):
    """``soulfra serve api``: the HTTP API and dashboard as a stateless gateway to the puppet master and the
    platforms over NATS; several may run behind a load balancer."""


class ClusterSettings(ApiServeSettings, WorldSettings, ModelSettings):
    """The cluster topology (``soulfra up --ray-address``, ``soulfra cluster local``): this process the cluster's
    puppet master and an API gateway, the worlds in Ray actors across the nodes, PostgreSQL and NATS shared; the
    hosts ask the model endpoint for their worlds' language agents."""

    SECRETS: ClassVar[frozenset[str]] = ApiServeSettings.SECRETS | ModelSettings.SECRETS

    ray_address: str | None = Field(None, min_length=1, description="the Ray cluster to join (host:port)")
    nodes: int = Field(2, ge=1, le=16, description="the nodes of a local cluster (soulfra cluster local)")
    hosts_per_node: int = Field(
        0, ge=0, le=64, description="host processes per node; 0: one per core of this machine, at most 8"
    )

    def hosts_on_each_node(self) -> int:
        """``hosts_per_node``, or for 0 one host per core of this machine (up to 8): a host's Python runs on one
        core, and a node that takes over a lost one's worlds needs all of its own."""
        return self.hosts_per_node or min(os.cpu_count() or 1, MAX_AUTO_HOSTS)
