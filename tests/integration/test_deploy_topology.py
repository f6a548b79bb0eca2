"""deploy/compose.yaml's topology run without containers: nats-server with deploy/nats's config (its per-process users
and JetStream), then each Soulfra service of the compose file as a process of this machine, with the compose file's
own command line and environment; only what a container network changes is changed (PostgreSQL and NATS on
loopback, free ports, one SOULFRA_HOME). The migration, meta, harbor's four platforms and both API gateways come up
ready, and a whisper through either gateway reaches harbor's runtime: the users, passwords and flags fit together."""

from __future__ import annotations

import functools
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import yaml

from .deploy_support import DEPLOY, env_example, interpolate, tool
from .support import free_port, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]

START_DEADLINE_S = 120.0  # several processes starting at once on a loaded 2-core machine


@dataclass
class Topology:
    logs: Path
    database: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    _files: list[IO[bytes]] = field(default_factory=list)

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        out = (self.logs / f"{name}.log").open("wb")
        self._files.append(out)
        self.procs[name] = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)

    def output(self, name: str) -> str:
        return f"--- {name} ---\n" + (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]

    def get(self, name: str, path: str, **headers: str) -> httpx.Response | None:
        """``path`` on the process's HTTP port; None while nothing answers (a process that died fails the test)."""
        if self.procs[name].poll() is not None:
            pytest.fail(f"{name} exited with {self.procs[name].returncode}\n{self.output(name)}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.ports[name]}{path}", headers=headers, timeout=5)
        except httpx.TransportError:
            return None

    def answers(self, name: str, path: str, **headers: str) -> bool:
        reply = self.get(name, path, **headers)
        return reply is not None and reply.status_code == 200

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for file in self._files:
            file.close()


def nats_config(directory: Path, port: int) -> Path:
    """deploy/nats's config with what a container network changes: loopback, this test's port and store."""
    text = (DEPLOY / "nats" / "nats.conf").read_text(encoding="utf-8")
    text = text.replace("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{port}").replace("http_port: 8222\n", "")
    text = text.replace('"/data/jetstream"', f'"{directory / "jetstream"}"')
    (directory / "soulfra-authorization.conf").write_text(
        (DEPLOY / "nats" / "soulfra-authorization.conf").read_text(encoding="utf-8"), encoding="utf-8"
    )
    assert f"127.0.0.1:{port}" in text and "jetstream" in text
    config = directory / "nats.conf"
    config.write_text(text, encoding="utf-8")
    return config


@pytest.fixture
def topology(pg_url: str, tmp_path: Path) -> Iterator[tuple[Topology, dict[str, Any]]]:
    nats_server = tool("nats-server", why="Debian's nats-server package; .ci/run uses it")
    variables = {name: f"pw{secrets.token_hex(12)}" for name in env_example()}  # letters first, as NATS needs
    services = interpolate(yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))["services"], variables)
    running = Topology(tmp_path, pg_url)
    nats_port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("SOULFRA_")}
    base["SOULFRA_HOME"] = str(tmp_path / "home")
    nats_env = {**base, **{k: str(v) for k, v in services["nats"]["environment"].items()}}
    running.start("nats", [nats_server, "-c", str(nats_config(tmp_path, nats_port))], nats_env)
    compose_url = services["meta"]["environment"]["SOULFRA_DB"]

    def run(name: str) -> None:
        service = services[name]
        env = {**base, **{k: str(v) for k, v in service["environment"].items()}}
        env |= {"SOULFRA_DB": pg_url, "SOULFRA_NATS_URL": f"nats://127.0.0.1:{nats_port}", "SOULFRA_RATE": "20"}
        if "SOULFRA_METRICS_PORT" in env:
            env |= {"SOULFRA_METRICS_HOST": "127.0.0.1", "SOULFRA_METRICS_PORT": str(free_port())}
            running.ports[name] = int(env["SOULFRA_METRICS_PORT"])
        if "SOULFRA_PORT" in env:
            env |= {"SOULFRA_HOST": "127.0.0.1", "SOULFRA_PORT": str(free_port())}
            running.ports[name] = int(env["SOULFRA_PORT"])
        command = [pg_url if arg == compose_url else str(arg) for arg in service["command"]]
        running.start(name, [sys.executable, "-m", "soulfra", *command], env)

    try:
        run("migrate")
        assert running.procs["migrate"].wait(timeout=START_DEADLINE_S) == 0, running.output("migrate")
        for name in ("meta", "runtime", "surface", "protocol", "mirror", "api-1", "api-2"):
            run(name)
        yield running, services
    finally:
        running.stop()


def test_the_compose_topology_comes_up_and_a_whisper_crosses_either_gateway(
    topology: tuple[Topology, dict[str, Any]],
) -> None:
    running, services = topology

    for name in ("meta", "runtime", "api-1", "api-2"):
        host = {"host": name} if name.startswith("api") else {}  # what Prometheus sends, scraping api-1:8000
        wait_for(
            functools.partial(running.answers, name, "/readyz", **host),
            timeout=START_DEADLINE_S, what=f"{name} ready",
        )  # fmt: skip
    for name in ("surface", "protocol", "mirror"):
        wait_for(
            functools.partial(running.answers, name, "/healthz"),
            timeout=START_DEADLINE_S, what=f"{name} alive",
        )  # fmt: skip

    # An operator's token, made the way deploy/.env.example says, and a whisper to harbor through each gateway.
    done = subprocess.run(
        [sys.executable, "-m", "soulfra", "token", "create", "--db", running.database, "--name", "ops",
         "--role", "admin"],
        capture_output=True, text=True, timeout=60, check=True,
        env={**os.environ, "SOULFRA_HOME": str(running.logs / "home")},
    )  # fmt: skip
    token = done.stdout.strip()
    for name in ("api-1", "api-2"):
        port = running.ports[name]
        reply = httpx.post(
            f"http://127.0.0.1:{port}/api/instances/harbor/whispers",
            json={"text": f"through {name}", "target": "*", "tone": "gentle"},
            headers={"host": "lb", "authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert reply.status_code == 202, f"{name}: {reply.text}\n{running.output(name)}"  # stored, applies later
        assert reply.json()["instance"] == "harbor"
    assert services["api-1"]["environment"]["SOULFRA_INSECURE_HTTP"] == "true"

    # Each platform process is ready too: its readiness asks its own `status` op over the bus, as its NATS user.
    not_ready = {}
    for name in ("surface", "protocol", "mirror"):
        answer = running.get(name, "/readyz")
        if answer is None or answer.status_code != 200:
            not_ready[name] = None if answer is None else answer.json()
    assert not_ready == {}
