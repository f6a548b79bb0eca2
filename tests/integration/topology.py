"""The processes of a services deployment started by a test (``soulfra serve ...``, ``soulfra cluster local``), each
logging to a file of its own and stopped by its PID; the fixtures that make one live in conftest.py."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from .support import wait_for

__all__ = [
    "Topology",
    "admin_token",
    "nats_server",
    "nats_server_binary",
    "ok",
    "require_ray",
    "start_cluster_local",
    "stop_process",
]


@dataclass
class Topology:
    """The processes of one services deployment, each logging to a file of its own; stopped by their PIDs."""

    db_url: str
    nats_url: str
    where: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    files: list[IO[bytes]] = field(default_factory=list)

    def start(self, name: str, *args: str) -> None:
        log = (self.where / f"{name}.log").open("wb")
        self.files.append(log)
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "soulfra", "serve", *args, "--db", self.db_url, "--nats", self.nats_url],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env,
        )  # fmt: skip

    def log(self, name: str) -> str:
        return (self.where / f"{name}.log").read_text(errors="replace")

    def ready(self, name: str, url: str, *, timeout: float = 60.0) -> None:
        def answered() -> bool:
            proc = self.procs[name]
            if proc.poll() is not None:
                pytest.fail(f"soulfra serve {name} exited with {proc.returncode}:\n{self.log(name)}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200
            return False

        wait_for(answered, timeout=timeout, what=f"{name} to be ready")

    def stop(self) -> dict[str, int | None]:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes[name] = None
        for file in self.files:
            file.close()
        return codes


def require_ray() -> None:
    """Skip a cluster test where Ray is not installed (fail it under ``CI=true``)."""
    if importlib.util.find_spec("ray") is None:  # looked up, not imported: Ray loads only in the cluster's processes
        if os.environ.get("CI") == "true":
            pytest.fail("the cluster tests need Ray under CI=true: pip install 'soulfra[ray]'")
        pytest.skip("the cluster tests need Ray: pip install 'soulfra[ray]'")


def start_cluster_local(topology: Topology, port: int, *args: str) -> None:
    """``soulfra cluster local`` with ``args`` (``--nodes``, ``--rate``...) on the topology's database and NATS,
    serving on ``port``, logging to ``cluster.log``, ready."""
    log = (topology.where / "cluster.log").open("wb")
    topology.files.append(log)
    topology.procs["cluster"] = subprocess.Popen(
        [sys.executable, "-m", "soulfra", "cluster", "local", *args, "--db", topology.db_url,
         "--nats", topology.nats_url, "--port", str(port)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=topology.env,
    )  # fmt: skip
    topology.ready("cluster", f"http://127.0.0.1:{port}", timeout=240.0)  # Ray's nodes and a host on each


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM by its PID, then SIGKILL if it has not ended within ``timeout`` seconds."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def admin_token(topology: Topology) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "soulfra", "token", "create", "--db", topology.db_url, "--name", "ops", "--role",
         "admin", "--json"],
        capture_output=True, text=True, env=topology.env, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    token: str = json.loads(made.stdout)["token"]
    return token


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (response.request.url, response.text)
    return response.json()


NATS_SERVER = "nats-server"
NATS_READY_S = 15.0


def nats_server_binary() -> str:
    from .conftest import unavailable  # noqa: PLC0415 -- conftest imports this module

    found = shutil.which(NATS_SERVER) or shutil.which(NATS_SERVER, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        unavailable("nats-server", "no nats-server executable on PATH or in /usr/sbin")
    return found


@contextlib.contextmanager
def nats_server(binary: str, config: Path, env: Mapping[str, str]) -> Iterator[None]:
    """nats-server with ``config`` (and ``env`` beside the environment), ready; stopped by its PID afterwards."""
    log = config.with_suffix(".log")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "-c", str(config)], stdin=subprocess.DEVNULL, stdout=out, stderr=out, env={**os.environ, **env}
        )
    try:
        deadline = time.monotonic() + NATS_READY_S
        while "Server is ready" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"nats-server did not start (exit {proc.poll()}):\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        yield
    finally:
        stop_process(proc)
