"""Settings: ``SOULFRA_*`` variables are read, a flag given on the command line wins over its variable, and a bad
value is one line naming its flag or variable, with exit code 2. The commands run in process through ``main``, with
the server itself (``listen``, ``run_embedded``, ``serve_platform``) or the HTTP exchange replaced by a recorder.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer

import soulfra.services
import soulfra.system
from soulfra.bus import NatsOptions
from soulfra.cli import EXIT_USAGE, app, main
from soulfra.cli import cluster as cli_cluster
from soulfra.cli import serve as cli_serve
from soulfra.cli import server as cli_server
from soulfra.errors import ConfigError
from soulfra.settings import (
    ApiServeSettings,
    ClientSettings,
    ClusterSettings,
    MetaServeSettings,
    ModelSettings,
    PlatformServeSettings,
    ServeSettings,
    SoulfraSettings,
    UpSettings,
)
from soulfra.system import EmbeddedSettings


@pytest.fixture(autouse=True)
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``SOULFRA_*`` variable of the machine's reaches a test; HOME is the test's own."""
    for name in list(os.environ):
        if name.startswith("SOULFRA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))


class Recorder:
    """Stands in for the server: records what ``soulfra up`` or ``soulfra serve`` would have started, and with what."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: dict[str, Any] = {}
        monkeypatch.setattr(cli_server, "configure_logging", self._logging)
        monkeypatch.setattr(cli_serve, "configure_logging", self._logging)
        monkeypatch.setattr(soulfra.system, "listen", self._listen)
        monkeypatch.setattr(soulfra.system, "run_embedded", self._run_embedded)
        monkeypatch.setattr(soulfra.services, "serve_platform", self._serve_platform)
        monkeypatch.setattr(soulfra.services, "serve_meta", self._serve_meta)

    def _logging(self, level: str, log_format: str = "auto") -> None:
        self.seen["log_level"] = level
        self.seen["log_format"] = log_format

    def _listen(self, host: str, port: int) -> socket.socket:
        self.seen["listen"] = (host, port)
        return socket.socket()  # never bound: what `up` is handed, and closes when it is done

    def _run_embedded(self, settings: EmbeddedSettings, sock: object, *, announce: Any = None) -> None:
        self.seen["embedded"] = settings

    async def _serve_platform(self, platform: str, settings: PlatformServeSettings, **kwargs: Any) -> None:
        self.seen["serve"] = {"platform": platform, "settings": settings, **kwargs}

    async def _serve_meta(self, settings: MetaServeSettings, **kwargs: Any) -> None:
        self.seen["meta"] = {"settings": settings, **kwargs}


def run(*args: str) -> int:
    """``soulfra ARGS`` in process; its exit code."""
    with pytest.raises(SystemExit) as stopped:
        main(list(args))
    assert isinstance(stopped.value.code, int)
    return stopped.value.code


def test_the_variables_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "SOULFRA_HOST": "10.0.0.5", "SOULFRA_PORT": "9001", "SOULFRA_DATA": str(tmp_path / "data"),
        "SOULFRA_SEED": "7", "SOULFRA_AGENTS": "20", "SOULFRA_RATE": "0", "SOULFRA_CYCLE_EVERY": "100",
        "SOULFRA_MAX_BODY": "256KiB", "SOULFRA_MAX_UPLOAD": "4GiB", "SOULFRA_BODY_TIMEOUT": "10",
        "SOULFRA_LOG_LEVEL": "DEBUG", "SOULFRA_HOME": str(tmp_path / "home"), "SOULFRA_DB": "sqlite:///x.db",
        "SOULFRA_NATS_URL": "nats://10.0.0.1:4222", "SOULFRA_URL": "http://10.0.0.1:9000",
        "SOULFRA_TEST_POSTGRES_URL": "postgresql://elsewhere",  # not a setting: left alone
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    up = UpSettings.load()
    assert (up.host, up.port, up.data, up.seed, up.agents) == ("10.0.0.5", 9001, tmp_path / "data", 7, 20)
    assert (up.rate, up.cycle_every, up.log_level, up.home) == (0.0, 100, "debug", tmp_path / "home")
    assert (up.max_body, up.max_upload, up.body_timeout) == (256 << 10, 4 << 30, 10.0)
    assert up.db == "sqlite:///x.db"  # soulfra up keeps its worlds there too
    serve = ServeSettings.load()
    assert (serve.db, serve.nats_url, serve.rate) == ("sqlite:///x.db", "nats://10.0.0.1:4222", 0.0)
    assert ClientSettings.load().url == "http://10.0.0.1:9000"


def test_the_home_is_soulfra_home_else_dot_soulfra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert SoulfraSettings.load().home == tmp_path / "user" / ".soulfra"
    monkeypatch.setenv("SOULFRA_HOME", "")  # set but empty: not set
    assert SoulfraSettings.load().home == tmp_path / "user" / ".soulfra"
    monkeypatch.setenv("SOULFRA_HOME", "~/elsewhere")
    assert SoulfraSettings.load().home == tmp_path / "user" / "elsewhere"


def test_up_takes_the_flags_over_the_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(monkeypatch)
    monkeypatch.setenv("SOULFRA_PORT", "9001")
    monkeypatch.setenv("SOULFRA_DATA", str(tmp_path / "from-env"))
    monkeypatch.setenv("SOULFRA_RATE", "0")
    monkeypatch.setenv("SOULFRA_LOG_LEVEL", "debug")
    monkeypatch.setenv("SOULFRA_LOG_FORMAT", "console")
    monkeypatch.setenv("SOULFRA_MAX_BODY", "1KiB")
    monkeypatch.setenv("SOULFRA_HOME", str(tmp_path / "home"))
    assert run("up", "--port", "9002", "--log-level", "warning", "--max-body", "2KiB", "--seed", "5") == 0
    assert recorder.seen["listen"] == ("127.0.0.1", 9002)  # the flag, over SOULFRA_PORT; the host's default
    assert (recorder.seen["log_level"], recorder.seen["log_format"]) == ("warning", "console")
    embedded = recorder.seen["embedded"]
    assert isinstance(embedded, EmbeddedSettings)
    assert (embedded.data, embedded.rate, embedded.seed, embedded.home) == (
        tmp_path / "from-env", None, 5, tmp_path / "home"
    )  # fmt: skip
    assert (embedded.limits.max_body, embedded.limits.max_upload) == (2 << 10, 1 << 30)
    assert run("up", "--log-format", "JSON") == 0  # the flag, over SOULFRA_LOG_FORMAT
    assert recorder.seen["log_format"] == "json"


def test_a_flag_given_with_its_default_value_still_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(monkeypatch)
    monkeypatch.setenv("SOULFRA_PORT", "9001")
    assert run("up", "--port", "8000") == 0
    assert recorder.seen["listen"] == ("127.0.0.1", 8000)


def test_serve_takes_its_database_and_nats_from_flags_over_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(monkeypatch)
    monkeypatch.setenv("SOULFRA_DB", "sqlite:///env.db")
    monkeypatch.setenv("SOULFRA_NATS_URL", "nats://10.0.0.1:4222")
    monkeypatch.setenv("SOULFRA_RATE", "5")
    monkeypatch.setenv("SOULFRA_CYCLE_EVERY", "50")
    assert run("serve", "runtime", "--instance", "world-0", "--nats", "nats://10.0.0.2:4222", "--rate", "0") == 0
    seen = recorder.seen["serve"]
    settings = seen["settings"]
    assert (seen["platform"], seen["instance_id"], seen["nats_options"], seen["ops_socket"]) == (
        "runtime", "world-0", NatsOptions(), None
    )  # fmt: skip
    assert (settings.db, settings.nats_url, settings.rate, settings.cycle_every) == (
        "sqlite:///env.db", "nats://10.0.0.2:4222", 0.0, 50
    )  # fmt: skip
    assert (recorder.seen["log_level"], recorder.seen["log_format"]) == ("info", "auto")
    assert run("serve", "runtime", "--instance", "world-0", "--log-format", "json") == 0
    assert recorder.seen["log_format"] == "json"


def test_an_unknown_log_format_is_one_line_naming_its_flag_or_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    Recorder(monkeypatch)
    assert run("up", "--log-format", "xml") == EXIT_USAGE
    assert capsys.readouterr().err.strip() == (
        "soulfra: error: invalid setting --log-format='xml': expected one of auto, json, console"
    )
    monkeypatch.setenv("SOULFRA_LOG_FORMAT", "plain")
    monkeypatch.setenv("SOULFRA_DB", "sqlite:///env.db")
    assert run("serve", "runtime", "--instance", "world-0") == EXIT_USAGE
    assert "SOULFRA_LOG_FORMAT='plain': expected one of auto, json, console" in capsys.readouterr().err


def test_up_with_a_ray_address_runs_the_cluster_with_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(monkeypatch)
    ran: dict[str, Any] = {}
    monkeypatch.setattr(cli_cluster, "run_cluster", lambda settings, address: ran.update(settings=settings, at=address))
    monkeypatch.setenv("SOULFRA_DB", "postgresql://db.lan/worlds")
    args = ["up", "--ray-address", "10.0.0.9:6379", "--nats", "nats://10.0.0.8:4222", "--seed", "3", "--port", "9001"]
    assert run(*args) == 0
    settings = ran["settings"]
    assert ran["at"] == "10.0.0.9:6379"
    assert (settings.db, settings.nats_url, settings.seed, settings.port) == (
        "postgresql://db.lan/worlds", "nats://10.0.0.8:4222", 3, 9001
    )  # fmt: skip
    assert "embedded" not in recorder.seen  # no embedded system was started


def test_the_cluster_s_hosts_are_given_the_model_and_its_language_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    """``up --ray-address`` takes the model flags (and the key from its variable) into the cluster's options: the
    endpoint its hosts ask, the generated agents of its default world made language agents of the model."""
    import soulfra.cluster.system  # noqa: PLC0415 -- the cluster stack loads only when a cluster runs
    import soulfra.serving  # noqa: PLC0415

    Recorder(monkeypatch)
    seen: dict[str, Any] = {}
    monkeypatch.setattr(soulfra.cluster.system, "cluster_puppet", lambda options: seen.update(options=options))
    monkeypatch.setattr(soulfra.serving, "listen", lambda host, port: socket.socket())
    monkeypatch.setattr(soulfra.services, "api_app", lambda settings, **kwargs: object())
    monkeypatch.setattr(soulfra.serving, "serve_app", lambda app, sock, **kwargs: None)
    monkeypatch.setenv("SOULFRA_MODEL_KEY", "sk-cluster")
    args = [
        "up", "--ray-address", "10.0.0.9:6379", "--db", "postgresql://db.lan/worlds", "--agents", "4",
        "--language-agents", "--model", "smol", "--model-url", "http://10.0.0.7:8080/v1", "--model-timeout", "3",
    ]  # fmt: skip
    assert run(*args) == 0
    options = seen["options"]
    minds = options.minds
    assert (minds.url, minds.model, minds.api_key, minds.budget.timeout) == ("http://10.0.0.7:8080/v1", "smol",
                                                                            "sk-cluster", 3.0)  # fmt: skip
    assert options.spec.generated_model == "smol" and options.agents == 4
    assert "sk-cluster" not in repr(minds)


def test_serve_meta_takes_its_world_and_the_instances_it_leaves(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(monkeypatch)
    monkeypatch.setenv("SOULFRA_DB", "sqlite:///env.db")
    monkeypatch.setenv("SOULFRA_LEAVE", '["harbor"]')
    assert run("serve", "meta", "--seed", "7", "--agents", "3") == 0
    settings = recorder.seen["meta"]["settings"]
    assert (settings.seed, settings.agents, settings.leave, settings.metrics_port) == (7, 3, ["harbor"], None)
    assert run("serve", "meta", "--leave", "a", "--leave", "b", "--log-format", "json") == 0
    assert recorder.seen["meta"]["settings"].leave == ["a", "b"]
    assert recorder.seen["log_format"] == "json"


def test_serve_takes_nats_credentials_and_tls_files_from_flags_over_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(monkeypatch)
    monkeypatch.setenv("SOULFRA_DB", "sqlite:///env.db")
    monkeypatch.setenv("SOULFRA_NATS_USER", "from-env")
    monkeypatch.setenv("SOULFRA_NATS_PASSWORD", "env-secret")
    monkeypatch.setenv("SOULFRA_NATS_CA", str(tmp_path / "env-ca.pem"))
    args = ["serve", "surface", "--instance", "w", "--nats", "tls://10.0.0.2:4222", "--nats-user", "soulfra-surface"]
    args += ["--nats-cert", str(tmp_path / "c.pem"), "--nats-key", str(tmp_path / "c.key")]
    assert run(*args) == 0
    assert recorder.seen["serve"]["nats_options"] == NatsOptions(
        user="soulfra-surface", password="env-secret", ca=tmp_path / "env-ca.pem",
        cert=tmp_path / "c.pem", key=tmp_path / "c.key",
    )  # fmt: skip


def test_nats_secrets_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOULFRA_NATS_USER", "soulfra-runtime")
    monkeypatch.setenv("SOULFRA_NATS_PASSWORD", "hunter2-password")
    monkeypatch.setenv("SOULFRA_NATS_TOKEN", "t0ken-value")
    settings = ServeSettings.load()
    options = NatsOptions(user="soulfra-runtime", password="hunter2-password")
    for shown in (repr(settings), str(settings), repr(options), repr(NatsOptions(token="t0ken-value"))):
        assert "hunter2-password" not in shown
        assert "t0ken-value" not in shown
    with pytest.raises(ConfigError) as raised:  # a user and a token both: refused, without showing either secret
        settings.nats_options()
    assert "--nats-user and --nats-token" in raised.value.detail
    assert "hunter2" not in raised.value.detail and "t0ken" not in raised.value.detail
    with pytest.raises(ConfigError) as raised:
        ServeSettings.load({"nats_password": 12})  # a bad secret value: named, never shown
    assert "--nats-password='**********'" in raised.value.detail


def test_serve_without_a_database_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    Recorder(monkeypatch)
    assert run("serve", "runtime", "--instance", "world-0") == EXIT_USAGE
    assert (
        capsys.readouterr().err == "soulfra: error: soulfra serve runtime needs a database: --db URL, or SOULFRA_DB\n"
    )
    for command in ("meta", "api"):
        assert run("serve", command) == EXIT_USAGE
        assert (
            capsys.readouterr().err
            == f"soulfra: error: soulfra serve {command} needs a database: --db URL, or SOULFRA_DB\n"
        )


class Server:
    """Stands in for the HTTP exchange of the client commands: records each URL, answers a tick."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.urls: list[str] = []
        monkeypatch.setattr(httpx, "request", self._request)

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        self.urls.append(url)
        return httpx.Response(200, json={"tick": 3}, request=httpx.Request(method, url))


def test_client_commands_take_url_over_soulfra_url(monkeypatch: pytest.MonkeyPatch) -> None:
    server = Server(monkeypatch)
    assert run("pause", "--instance", "w") == 0
    monkeypatch.setenv("SOULFRA_URL", "http://10.0.0.1:9000")
    assert run("pause", "--instance", "w") == 0
    assert run("override", "--instance", "w", "--url", "http://10.0.0.2:9000") == 0
    assert server.urls == [
        "http://127.0.0.1:8000/api/instances/w/pause",
        "http://10.0.0.1:9000/api/instances/w/pause",
        "http://10.0.0.2:9000/api/instances/w/override",
    ]


def test_a_bad_server_variable_does_not_stop_a_client_command(monkeypatch: pytest.MonkeyPatch) -> None:
    server = Server(monkeypatch)
    monkeypatch.setenv("SOULFRA_PORT", "not a port")
    monkeypatch.setenv("SOULFRA_LOG_LEVEL", "loud")
    assert run("resume", "--instance", "w") == 0
    assert server.urls == ["http://127.0.0.1:8000/api/instances/w/resume"]


@pytest.mark.parametrize(
    ("args", "variable", "value", "says"),
    [
        (("up",), "SOULFRA_PORT", "abc", "input should be a valid integer"),
        (("up",), "SOULFRA_PORT", "70000", "input should be less than or equal to 65535"),
        (("up",), "SOULFRA_MAX_BODY", "lots", "could not parse value and unit"),
        (("up",), "SOULFRA_RATE", "-1", "a rate is 0 (as fast as it goes) or 0.001 to 1e+09 ticks a second, not -1"),
        (("up",), "SOULFRA_LOG_LEVEL", "loud", "expected one of debug, info, warning, error"),
        (("serve", "mirror", "--instance", "w", "--db", "sqlite://"), "SOULFRA_CYCLE_EVERY", "often", "valid integer"),
        (("status",), "SOULFRA_URL", "localhost:8000", "expected an http:// or https:// URL"),
        (("keys", "show"), "SOULFRA_URL", "localhost:8000", None),  # a command that does not read it: no error
    ],
)
def test_a_bad_variable_is_one_line_naming_it_and_exit_2(
    args: tuple[str, ...],
    variable: str,
    value: str,
    says: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recorder = Recorder(monkeypatch)
    monkeypatch.setenv(variable, value)
    code = run(*args)
    err = capsys.readouterr().err
    if says is None:
        assert (code, err) == (0, "")
        return
    assert code == EXIT_USAGE
    assert err.startswith(f"soulfra: error: invalid setting {variable}={value!r}: ")
    assert says in err
    assert err.count("\n") == 1  # one line, no traceback
    assert recorder.seen == {}  # nothing was started


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("up", "--port", "0"), "--port"),
        (("up", "--max-upload", "0"), "--max-upload"),
        (("up", "--body-timeout", "0"), "--body-timeout"),
        (("up", "--agents", "100001"), "--agents"),
        (("serve", "surface", "--instance", "w", "--db", "sqlite://", "--nats", ""), "--nats"),
        (("status", "--url", "ftp://example.org"), "--url"),
    ],
)
def test_a_bad_flag_is_one_line_naming_the_flag(
    args: tuple[str, ...], flag: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder = Recorder(monkeypatch)
    assert run(*args) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"soulfra: error: invalid setting {flag}=")
    assert err.count("\n") == 1
    assert recorder.seen == {}


def test_the_errors_of_several_bad_values_share_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOULFRA_SEED", "-1")
    with pytest.raises(ConfigError) as raised:
        UpSettings.load({"port": 0}, names={"port": "-p"})
    assert raised.value.detail.startswith("invalid setting ")
    assert "\n" not in raised.value.detail
    assert "-p=0: " in raised.value.detail  # the flag as the command spells it
    assert "SOULFRA_SEED='-1': " in raised.value.detail


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        (("up",), UpSettings), (("serve", "runtime"), PlatformServeSettings), (("serve", "meta"), MetaServeSettings),
        (("serve", "api"), ApiServeSettings), (("status",), ClientSettings), (("cluster", "local"), ClusterSettings),
        (("run",), ModelSettings),
    ],
)  # fmt: skip
def test_the_flags_defaults_are_the_settings_defaults(command: tuple[str, ...], kind: type[SoulfraSettings]) -> None:
    """What --help shows as a flag's default is what the command uses when neither flag nor variable is given, and
    the help names the flag's variable."""
    found: Any = typer.main.get_command(app)
    for name in command:
        found = found.commands[name]
    params = [param for param in found.params if param.name in kind.model_fields]
    assert len(params) >= (1 if kind is ClientSettings else 5)
    for param in params:
        name = str(param.name)
        assert getattr(kind.load({name: param.default}), name) == getattr(kind.load(), name), name
        assert f"(env {kind.env_name(name)})" in str(getattr(param, "help", "")), name  # --help names the variable


def test_a_server_stopped_by_a_bug_logs_it_with_its_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder = Recorder(monkeypatch)

    def broken(settings: EmbeddedSettings, sock: object, *, announce: Any = None) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(soulfra.system, "run_embedded", broken)
    assert run("up") == 1
    assert recorder.seen["log_level"] == "info"
    [record] = [r for r in caplog.records if r.name == "soulfra.cli"]
    assert record.getMessage() == "soulfra up stopped by an unexpected error"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert capsys.readouterr().err == ""  # the log has it; no second copy from main


def test_the_access_settings_reach_the_embedded_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(monkeypatch)
    monkeypatch.setenv("SOULFRA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SOULFRA_RATE_LIMIT", "5")
    monkeypatch.setenv("SOULFRA_CORS_ORIGIN", '["https://ops.example"]')
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    args = ["up", "--private-surface", "--allowed-host", "soulfra.lan", "--allowed-host", "Box.Lan", "--rate-burst",
            "7", "--auth-failures", "3", "--tls-cert", str(cert), "--tls-key", str(key)]  # fmt: skip
    assert run(*args) == 0
    embedded = recorder.seen["embedded"]
    assert isinstance(embedded, EmbeddedSettings)
    access = embedded.access
    assert access.private_surface
    assert access.allowed_hosts == ("localhost", "127.0.0.1", "::1", "soulfra.lan", "box.lan")
    assert access.cors_origins == ("https://ops.example",)
    assert (access.mutation_rate, access.mutation_burst, access.auth_failures) == (5.0, 7, 3)
    assert (embedded.tls_cert, embedded.tls_key) == (cert, key)


def test_a_certificate_needs_its_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Recorder(monkeypatch)
    assert run("up", "--tls-cert", str(tmp_path / "c.pem")) == EXIT_USAGE


def test_the_client_token_comes_from_soulfra_token(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ClientSettings.load().token is None
    monkeypatch.setenv("SOULFRA_TOKEN", "sft_from-env")
    token = ClientSettings.load().token
    assert token is not None
    assert token.get_secret_value() == "sft_from-env"
    assert "sft_from-env" not in repr(ClientSettings.load())  # a secret: never printed


def test_up_takes_every_seed_a_world_takes() -> None:
    assert UpSettings.load({"seed": 2**64 - 1}).seed == 2**64 - 1  # as soulfra run and POST /api/instances do
    with pytest.raises(ConfigError, match="--seed=18446744073709551616"):
        UpSettings.load({"seed": 2**64})
