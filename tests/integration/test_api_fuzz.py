"""Property-based fuzzing of the HTTP API of a real ``soulfra up`` from its own OpenAPI document: no generated
request, valid or not, may make the server answer with a 5xx (sent with an admin token, so that the routes behind
access control are reached); and without credentials, every route but the public ones answers 401."""

from __future__ import annotations

from collections.abc import Iterator
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

from soulfra.api.access import policy_for

from .support import Server, parsed, running_server, soulfra_at

# The module's tests share an expensive module-scoped fixture: under pytest-xdist they all run in one worker.
pytestmark = pytest.mark.xdist_group("test_api_fuzz")

# The live event streams never end; a request to them would hang the fuzzer.
EXAMPLES = 25  # per operation: the whole file runs in well under a minute
Operation = APIOperation[Any, Any, Any, Any]
FuzzCase = Case[Operation]
STREAMS = r"^/api/stream$|^/api/instances/\{instance_id\}/events$"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Limits that a fuzzer's thousands of requests do not meet; worlds that tick slowly, so that the many instances it
    # creates, forks and exports stay small enough to answer within the client's timeout on a busy machine.
    generous = ["--rate-limit", "100000", "--rate-burst", "100000", "--auth-failures", "1000000"]
    # The worlds it made (some with many thousand agents) are all written out at the stop, which can outlast the
    # stop's 10 s on a busy machine: the server then ends at once, as documented, and that is no failure of the API.
    with running_server(tmp_path_factory.mktemp("fuzz"), rate="2", extra=generous, slow_stop_ok=True) as running:
        yield running


@pytest.fixture(scope="module")
def fuzzer(server: Server) -> dict[str, str]:
    """The fuzzer's own admin token (a generated DELETE /api/tokens/{name} could revoke it, never the home's)."""
    made = soulfra_at(
        server.home, "token", "create", "--name", "fuzzer", "--role", "admin", "--json", "--url", server.url
    )
    return {"authorization": f"Bearer {parsed(made)['token']}"}


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
@pytest.mark.slow
@pytest.mark.timeout(600)  # a few thousand requests on a machine busy with the rest of the suite
def test_no_input_makes_a_server_error(server: Server, fuzzer: dict[str, str]) -> None:
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
            case.call_and_validate(base_url=server.url, headers=fuzzer, checks=[not_a_server_error], timeout=60)

        try:
            check()
        except Exception as exc:  # a flaky failure is a group: say what each attempt met
            inner = [repr(e)[:500] for e in exc.exceptions] if isinstance(exc, BaseExceptionGroup) else []
            failures.append(f"{operation.label}: {exc} {inner}")
        assert server.proc.poll() is None, f"the server died during {operation.label}:\n{server.output()}"
    assert len(calls) >= 100
    assert not failures, "\n\n".join(failures) + "\n\nserver output:\n" + server.output()


@pytest.mark.slow
@pytest.mark.timeout(600)  # a few thousand requests on a machine busy with the rest of the suite
def test_without_credentials_only_the_public_routes_answer(server: Server) -> None:
    """Every generated request without a token, to a route that needs one, is refused with 401 before it is read;
    a request that reaches no route at all (a generated path that matches none) is the router's 404 or 405."""
    failures: list[str] = []
    protected = 0
    for operation in operations(live_schema(server)):
        policy = policy_for(operation.method.upper(), operation.path)
        assert policy is not None, operation.label
        if policy.role is None:
            continue
        protected += 1

        @settings(
            max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
        )
        @given(case=strategy_for(operation))
        def check(case: FuzzCase) -> None:
            response = case.call(base_url=server.url, headers={"authorization": ""}, timeout=60)
            if response.status_code in (401, 403):
                return
            assert response.status_code in (404, 405), (case.method, case.formatted_path, response.status_code)
            assert response.json()["code"] in ("not_found", "method_not_allowed")
            assert "no instance" not in response.json()["detail"], response.text  # the router's, not a route's

        try:
            check()
        except Exception as exc:  # a flaky failure is a group: say what each attempt met
            inner = [repr(e)[:500] for e in exc.exceptions] if isinstance(exc, BaseExceptionGroup) else []
            failures.append(f"{operation.label}: {exc} {inner}")
    assert protected > 40
    assert not failures, "\n\n".join(failures)
