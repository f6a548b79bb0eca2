"""deploy/compose.yaml, checked offline (`docker compose config` needs an engine): every service has an image, waits
only for services that exist, and reports its health; nothing is published beyond loopback but the load balancer;
no secret is written in it; each Soulfra process runs the command and the NATS user of its job, and the NATS config
it mounts grants exactly what soulfra.bus.permissions says."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from soulfra.bus.permissions import ROLES, nats_authorization, password_variable, user_name

from .conftest import unavailable
from .deploy_support import COMPOSE_VARIABLE, DEPLOY, ROOT, env_example, interpolate, tool

COMPOSE = DEPLOY / "compose.yaml"
PLATFORMS = ("runtime", "surface", "protocol", "mirror")
SOULFRA = {"migrate", "meta", "api-1", "api-2", *PLATFORMS}
EXPECTED = SOULFRA | {"postgres", "nats", "lb", "prometheus", "grafana"}
ONE_SHOT = {"migrate"}
EVERY_INTERFACE = "0.0.0.0"  # noqa: S104 -- what the file must not publish on, by default


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))  # merge keys (<<) resolved, as compose does
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    resolved = interpolate(raw["services"], env_example())
    assert isinstance(resolved, dict)
    return resolved


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping"
    return {str(k): str(v) for k, v in env.items()}


def test_the_topology_has_every_service(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == EXPECTED


def test_every_service_has_an_image_and_soulfra_builds_its_own(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert service.get("image"), f"{name}: an image"
        assert ":" in service["image"] and not service["image"].endswith(":latest"), f"{name}: a pinned tag"
    for name in SOULFRA:
        build = services[name]["build"]
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == ROOT / "Dockerfile", name


def test_dependencies_exist_and_soulfra_waits_for_the_migration(services: dict[str, dict[str, Any]]) -> None:
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        for target, spec in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on a service that does not exist: {target}"
            assert spec["condition"] in conditions
            if spec["condition"] == "service_healthy":
                assert not services[target].get("healthcheck", {}).get("disable"), f"{target} reports no health"
    for name in SOULFRA - ONE_SHOT:
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
        assert services[name]["depends_on"]["nats"]["condition"] == "service_healthy", name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_every_long_running_service_reports_its_health(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service["restart"] == "no"
            continue
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and len(test) > 1, f"{name}: a healthcheck command"
        assert service["restart"] == "unless-stopped", name


def test_the_soulfra_processes_ask_healthz_on_the_port_they_serve(services: dict[str, dict[str, Any]]) -> None:
    for name in SOULFRA - ONE_SHOT:
        env = environment(services[name])
        port = env.get("SOULFRA_METRICS_PORT") or env["SOULFRA_PORT"]
        assert f"http://127.0.0.1:{port}/healthz" in " ".join(services[name]["healthcheck"]["test"]), name


def test_only_the_load_balancer_is_published_beyond_loopback(services: dict[str, dict[str, Any]]) -> None:
    published = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.count(":") == 2, f"{name}: HOST_IP:HOST_PORT:CONTAINER_PORT"
            published[name] = port.split(":")[0]
            if name != "lb":
                assert published[name] == "127.0.0.1", f"{name} is published on {published[name]}"
    assert set(published) == {"lb", "prometheus", "grafana"}
    assert published["lb"] == "127.0.0.1"  # by default; SOULFRA_PUBLISH_ADDRESS opens it on purpose
    opened = interpolate(_raw_service("lb")["ports"], {**env_example(), "SOULFRA_PUBLISH_ADDRESS": EVERY_INTERFACE})
    assert opened == [f"{EVERY_INTERFACE}:8000:8080"]


def _raw_service(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    service = loaded["services"][name]
    assert isinstance(service, dict)
    return service


def test_no_secret_is_written_in_the_file(raw: dict[str, Any]) -> None:
    """Every password is a required variable (compose refuses to start without it), listed in .env.example with a
    placeholder; and compose does refuse when one is missing."""
    example = env_example()
    for name, service in raw["services"].items():
        for key, value in environment(service).items():
            if "PASSWORD" in key or key == "SOULFRA_DB":
                assert re.search(r"\$\{\w+:\?", value), f"{name}: {key} must come from a required variable"
    lines = [line for line in COMPOSE.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#")]
    required = {m["name"] for m in COMPOSE_VARIABLE.finditer("\n".join(lines)) if m["op"] == ":?"}
    assert required and required <= set(example)
    assert all(example[name] == "change-me" for name in required)
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD is required"):
        interpolate(raw["services"], {k: v for k, v in example.items() if k != "POSTGRES_PASSWORD"})
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "/deploy/.env" in ignored
    assert (DEPLOY / "secrets" / ".gitignore").read_text(encoding="utf-8").splitlines()[1:] == ["*", "!.gitignore"]


def test_each_process_runs_its_job(services: dict[str, dict[str, Any]]) -> None:
    database = environment(services["meta"])["SOULFRA_DB"]
    assert services["migrate"]["command"] == ["db", "upgrade", "--db", database]
    meta = services["meta"]["command"]
    assert meta[:2] == ["serve", "meta"] and meta[meta.index("--leave") + 1] == "harbor"
    for name in ("api-1", "api-2"):
        assert services[name]["command"] == ["serve", "api"]
        env = environment(services[name])
        assert env["SOULFRA_INSECURE_HTTP"] == "true" and env["SOULFRA_HOST"] == EVERY_INTERFACE
        allowed = yaml.safe_load(env["SOULFRA_ALLOWED_HOST"])  # a JSON list, as the setting reads it
        assert name in allowed and "lb" in allowed
    for platform in PLATFORMS:
        command = services[platform]["command"]
        assert command[:4] == ["serve", platform, "--instance", "harbor"]
        assert ("--create" in command) is (platform == "runtime")
    for name in SOULFRA:
        assert services[name]["user"] == "10001:10001" and services[name]["read_only"] is True, name
        assert services[name]["cap_drop"] == ["ALL"], name
        assert environment(services[name])["SOULFRA_DB"].startswith("postgresql://soulfra:change-me@postgres/")


def test_each_process_is_its_own_nats_user_with_that_users_password(raw: dict[str, Any]) -> None:
    users = {"meta": "meta", "api-1": "control", "api-2": "control"} | {p: p for p in PLATFORMS}
    for name, role in users.items():
        env = environment(raw["services"][name])
        assert env["SOULFRA_NATS_USER"] == user_name(role), name
        assert env["SOULFRA_NATS_PASSWORD"].startswith("${" + password_variable(role) + ":?"), name
    nats_env = environment(raw["services"]["nats"])
    assert {password_variable(role) for role in ROLES} == set(nats_env)


def test_the_nats_authorization_is_what_soulfra_grants() -> None:
    """deploy/nats/soulfra-authorization.conf is nats_authorization()'s output, under its header comment."""
    text = (DEPLOY / "nats" / "soulfra-authorization.conf").read_text(encoding="utf-8")
    body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))
    assert body == nats_authorization()


def test_nats_server_accepts_the_config_only_with_every_password(tmp_path: Path) -> None:
    nats_server = tool("nats-server", why="Debian's nats-server package; .ci/run uses it")
    passwords = {password_variable(role): f"pw{role}0123" for role in ROLES}
    check = [nats_server, "-c", str(DEPLOY / "nats" / "nats.conf"), "-t"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOULFRA_NATS_")}
    done = subprocess.run(check, env=env | passwords, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    missing = dict(passwords)
    del missing[password_variable("mirror")]
    done = subprocess.run(check, env=env | missing, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0
    assert password_variable("mirror") in done.stderr


def test_the_load_balancer_round_robins_the_api_services(services: dict[str, dict[str, Any]]) -> None:
    conf = (DEPLOY / "lb" / "nginx.conf").read_text(encoding="utf-8")
    upstream = re.search(r"upstream soulfra_api \{(.*?)\}", conf, re.DOTALL)
    assert upstream is not None
    servers = re.findall(r"^\s*server ([\w.-]+:\d+)", upstream[1], re.MULTILINE)
    assert servers == ["api-1:8000", "api-2:8000"]
    assert all(server.split(":")[0] in services for server in servers)
    assert "proxy_buffering off;" in conf  # the live streams are server-sent events
    assert "listen 8080;" in conf and services["lb"]["ports"][0].endswith(":8080")
    assert "/lb-healthz" in " ".join(services["lb"]["healthcheck"]["test"])


def test_the_mounted_files_exist(services: dict[str, dict[str, Any]]) -> None:
    for name in ("nats", "lb"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name} mounts {source}"
    assert (DEPLOY / ".env.example").is_file()


def test_prometheus_and_grafana_mount_the_monitoring_config(services: dict[str, dict[str, Any]]) -> None:
    """deploy/prometheus/ and deploy/grafana/ are the monitoring work's (prometheus.yml, alerts.yml, provisioning,
    dashboards); this checks the mounts find what that work writes once it is in this checkout."""
    mounts = {v.split(":")[1]: v.split(":")[0] for n in ("prometheus", "grafana") for v in services[n]["volumes"]}
    assert mounts["/etc/prometheus"] == "./prometheus"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    assert mounts["/var/lib/grafana/dashboards"] == "./grafana/dashboards"
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    expected = [
        DEPLOY / "prometheus" / "prometheus.yml",
        DEPLOY / "prometheus" / "alerts.yml",
        DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml",
        DEPLOY / "grafana" / "provisioning" / "dashboards" / "soulfra.yml",
        DEPLOY / "grafana" / "dashboards" / "soulfra.json",
    ]
    missing = [str(path.relative_to(ROOT)) for path in expected if not path.is_file()]
    if missing:
        unavailable("the monitoring config", "not in this checkout yet: " + ", ".join(missing))
    scraped = (DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")
    for target in ("meta:9464", *(f"{p}:9464" for p in PLATFORMS), "api-1:8000", "api-2:8000"):
        assert target in scraped, f"prometheus.yml scrapes {target}"
    # The API's /metrics takes a viewer token: compose mounts deploy/secrets/ there for Prometheus.
    assert "/run/secrets/soulfra/prometheus-token" in scraped
    provider = (DEPLOY / "grafana" / "provisioning" / "dashboards" / "soulfra.yml").read_text(encoding="utf-8")
    assert "/var/lib/grafana/dashboards" in provider


def test_compose_command_lines_are_lists(raw: dict[str, Any]) -> None:
    """Commands are exec-form lists (no shell in between to mangle arguments or swallow signals)."""
    for name, service in raw["services"].items():
        if "command" in service:
            assert isinstance(service["command"], list), f"{name}: an exec-form command list"
