"""The command lines and SOULFRA_* settings the deployment gives each process are ones this checkout's ``soulfra``
takes: every command of deploy/compose.yaml and of both rendered Kubernetes overlays parses (``--help`` appended,
so nothing runs), and every variable is a setting of the command it is given to, with a value that setting accepts.
A flag or variable renamed in the CLI fails here, not in a cluster."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from soulfra.cli import app
from soulfra.settings import (
    ApiServeSettings,
    MetaServeSettings,
    PlatformServeSettings,
    ServeSettings,
    SoulfraSettings,
    UpSettings,
)

from .deploy_support import DEPLOY, ROOT, env_example, interpolate, render

PLATFORMS = ("runtime", "surface", "protocol", "mirror")
# Values for what the kubelet or compose fill in at run time: secrets and the pod's own address.
PLACEHOLDERS = {
    "SOULFRA_DB": "postgresql://soulfra:secret@postgres/soulfra",
    "SOULFRA_NATS_PASSWORD": "pwsecret",
    "POD_IP": "10.1.2.3",
    "POD_NAMESPACE": "soulfra",
}


@dataclass(frozen=True)
class Process:
    where: str
    args: list[str]
    env: dict[str, str]


def settings_of(args: list[str]) -> type[ServeSettings] | None:
    """The settings class the command reads its SOULFRA_* variables into (None: it reads none of them)."""
    if args[:2] == ["serve", "meta"]:
        return MetaServeSettings
    if args[:2] == ["serve", "api"]:
        return ApiServeSettings
    if args[0] == "serve" and args[1] in PLATFORMS:
        return PlatformServeSettings
    assert args[:2] == ["db", "upgrade"], f"a command the deployment runs: {args}"
    return None


def compose_processes() -> list[Process]:
    raw = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    services = interpolate(raw["services"], env_example())
    return [
        Process(f"compose {name}", [str(a) for a in service["command"]], {**PLACEHOLDERS, **service["environment"]})
        for name, service in services.items()
        if service.get("build")
    ]


def expand(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], text)


def k8s_processes(overlay: str) -> list[Process]:
    objects = render(overlay)
    config = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    found = []
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            env = dict(PLACEHOLDERS)
            for source in container.get("envFrom", []):
                env.update(config[source["configMapRef"]["name"]])
            for variable in container.get("env", []):
                env[variable["name"]] = (
                    expand(variable["value"], env)
                    if "value" in variable
                    else env.get(variable["name"], "from-a-secret")
                )
            where = f"{overlay} {deployment['metadata']['name']}/{container['name']}"
            found.append(Process(where, [expand(a, env) for a in container["args"]], env))
    return found


def every_process() -> list[Process]:
    return compose_processes() + k8s_processes("dev") + k8s_processes("production")


@pytest.fixture(scope="module")
def processes() -> list[Process]:
    return every_process()


def test_every_command_line_parses(processes: list[Process]) -> None:
    runner = CliRunner()
    assert len(processes) >= 2 * 7 + 7  # both overlays' seven containers, compose's seven processes
    for process in processes:
        done = runner.invoke(app, [*process.args, "--help"])
        assert done.exit_code == 0, f"{process.where}: soulfra {' '.join(process.args)}: {done.output}"


def test_every_variable_is_a_setting_of_its_process_with_a_value_it_takes(
    processes: list[Process], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("a CA certificate\n", encoding="utf-8")
    for process in processes:
        kind = settings_of(process.args)
        if kind is None:
            continue
        given = {k: v for k, v in process.env.items() if k.startswith("SOULFRA_")}
        unknown = {k for k in given if k.removeprefix("SOULFRA_").lower() not in kind.model_fields}
        # A ConfigMap feeds every process: its variables need only be read by some of them.
        assert not {k for k in unknown if not _read_by_some_process(k)}, f"{process.where}: no setting reads {unknown}"
        with monkeypatch.context() as env:
            for name in [n for n in os.environ if n.startswith("SOULFRA_")]:
                env.delenv(name)
            for name, value in given.items():
                env.setenv(name, str(ca) if name == "SOULFRA_NATS_CA" else value)
            settings = kind.load()
            settings.nats_options()  # a user with a password, a CA that exists: one way to authenticate
        if isinstance(settings, ApiServeSettings):  # the Host names arrive as a JSON list, read as one
            assert settings.insecure_http
            assert settings.allowed_host and len(settings.allowed_host) >= 3, process.where


def _read_by_some_process(variable: str) -> bool:
    field = variable.removeprefix("SOULFRA_").lower()
    return any(field in kind.model_fields for kind in (MetaServeSettings, ApiServeSettings, PlatformServeSettings))


def test_the_images_variables_are_settings() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    final = text[text.rindex("\nFROM ") :]
    variables = set(re.findall(r"\b(SOULFRA_\w+)=", final))
    assert {"SOULFRA_HOME", "SOULFRA_HOST", "SOULFRA_METRICS_HOST"} <= variables
    kinds: tuple[type[SoulfraSettings], ...] = (UpSettings, MetaServeSettings, ApiServeSettings, PlatformServeSettings)
    for variable in variables:
        field = variable.removeprefix("SOULFRA_").lower()
        assert any(field in kind.model_fields for kind in kinds), (
            f"the Dockerfile sets {variable}, which no setting reads"
        )


def test_a_renamed_flag_would_fail_the_parse() -> None:
    """The parse above can fail: an option the command does not have is a usage error."""
    done = CliRunner().invoke(app, ["serve", "meta", "--leave-out", "harbor", "--help"])
    assert done.exit_code == 2
    assert "No such option" in done.output
