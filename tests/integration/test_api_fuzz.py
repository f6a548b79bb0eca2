"""Property-based fuzzing of the HTTP API of a real ``soulfra up`` from its own OpenAPI document: no generated
request, valid or not, may make the server answer with a 5xx."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.schemas import APIOperation, BaseSchema

READY_DEADLINE_S = 30.0
STOP_DEADLINE_S = 20.0
# The live event streams never end; a request to them would hang the fuzzer.
EXAMPLES = 25  # per operation: the whole file runs in well under a minute
Operation = APIOperation[Any, Any, Any, Any]
FuzzCase = Case[Operation]
STREAMS = r"^/api/stream$|^/api/instances/\{instance_id\}/events$"


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(server: Server) -> int:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
    try:
        return server.proc.wait(timeout=STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=STOP_DEADLINE_S)
        pytest.fail(f"the server did not exit within {STOP_DEADLINE_S} s of SIGTERM:\n{server.output()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    log = base / "server.log"
    command = [sys.executable, "-m", "soulfra", "up", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--data", str(base / "data"), "--rate", "20"]
    with log.open("ab") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=sink)
    running = Server(proc=proc, url=f"http://127.0.0.1:{port}", log=log)
    deadline = time.monotonic() + READY_DEADLINE_S
    with httpx.Client(base_url=running.url, timeout=2.0) as client:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode} before it was ready:\n{running.output()}")
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                stop(running)
                pytest.fail(f"the server was not ready within {READY_DEADLINE_S} s:\n{running.output()}")
            time.sleep(0.05)
    try:
        yield running
    finally:
        code = stop(running)
        assert code == 0, f"the server exited with {code}:\n{running.output()}"


def live_schema(server: Server) -> BaseSchema:
    """The OpenAPI document exactly as the running server serves it, minus the never-ending streams."""
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json").exclude(path_regex=STREAMS)


def test_the_schema_is_served_and_names_the_streams(server: Server) -> None:
    paths = httpx.get(f"{server.url}/openapi.json", timeout=10.0).json()["paths"]
    assert "/api/stream" in paths
    assert "/api/instances/{instance_id}/events" in paths
    assert len(paths) > 20
    fuzzed = {op.path for op in operations(live_schema(server))}
    assert "/api/stream" not in fuzzed
    assert "/api/instances/{instance_id}/events" not in fuzzed
    assert "/api/instances/{instance_id}/whispers" in fuzzed


def operations(schema: BaseSchema) -> list[Operation]:
    found: list[Operation] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            pytest.fail(f"the served OpenAPI document is invalid: {result.err()}")
        found.append(result.ok())
    return found


def strategy_for(operation: Operation) -> st.SearchStrategy[FuzzCase]:
    """Valid and invalid requests alike (an operation with nothing to break has only valid ones)."""
    positive = operation.as_strategy(GenerationMode.POSITIVE)
    try:
        negative = operation.as_strategy(GenerationMode.NEGATIVE)
    except Exception:
        return positive
    return positive | negative


# schemathesis' own pytest integration (``schemathesis.pytest.from_fixture``) fails under pytest 9 before running
# anything (it sets ``Function._nodeid``), so every operation is driven through Hypothesis here instead.
@pytest.mark.timeout(240)
def test_no_input_makes_a_server_error(server: Server) -> None:
    failures: list[str] = []
    schema = live_schema(server)
    calls: list[FuzzCase] = []
    for operation in operations(schema):

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
        )
        @given(case=strategy_for(operation))
        def check(case: FuzzCase) -> None:
            calls.append(case)
            case.call_and_validate(base_url=server.url, checks=[not_a_server_error], timeout=15)

        try:
            check()
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}")
        assert server.proc.poll() is None, f"the server died during {operation.label}:\n{server.output()}"
    assert len(calls) >= 100
    assert not failures, "\n\n".join(failures) + "\n\nserver output:\n" + server.output()
