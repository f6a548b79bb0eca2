"""One whisper followed by its request id through the logs of real processes: ``soulfra up --log-format json`` logs
the HTTP request's audit, the runtime's acceptance of the input and the commit of its tick under the client's
``X-Request-ID``; and ``soulfra serve runtime`` on NATS logs them under the id that came with the request on the bus
(``_rid``), in its own process."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from soulfra.bus import Bus
from soulfra.logs import bind
from soulfra.platforms.bridge import CrossPlatformBridge

from .support import running_server, wait_for
from .test_services import Services, new_instance, runtime_tick, wait_until

Line = dict[str, Any]


def json_lines(text: str) -> list[Line]:
    """The log's JSON lines in a process's output (its other lines, such as the announcement, left out); every one
    of them must be a whole JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def about(rid: str, lines: Sequence[Line]) -> Callable[[str], Line | None]:
    """The first line logged under request ``rid`` whose event starts with the given words."""

    def find(start: str) -> Line | None:
        return next((x for x in lines if x.get("request_id") == rid and x["event"].startswith(start)), None)

    return find


def check_followed(rid: str, output: Callable[[], str], *, instance: str, identity: str) -> Mapping[str, Line]:
    """Wait until the input's tick is committed in ``output``; the lines about the request, by what they say."""
    wait_for(
        lambda: about(rid, json_lines(output()))("tick ") is not None, what=f"the commit of {rid}'s tick in the log"
    )
    find = about(rid, json_lines(output()))
    platform, accepted, committed = find("runtime.whisper of"), find("accepted input"), find("tick ")
    assert platform is not None and accepted is not None and committed is not None, output()
    assert platform["event"].startswith(f"runtime.whisper of {instance} by {identity} (")
    assert (platform["identity"], platform["instance"], platform["level"]) == (identity, instance, "info")
    assert (accepted["identity"], accepted["instance"], accepted["type"]) == (identity, instance, "whisper")
    assert (committed["tick"], committed["seqs"], committed["request_ids"]) == (
        accepted["tick"], [accepted["seq"]], [rid]
    )  # fmt: skip
    for line in (platform, accepted, committed):
        assert line["time"].endswith("Z") and line["logger"].startswith("soulfra.")
    return {"platform": platform, "accepted": accepted, "committed": committed}


@pytest.mark.timeout(90)
def test_soulfra_up_logs_a_whisper_under_the_clients_request_id_from_http_to_commit(tmp_path: Path) -> None:
    with running_server(tmp_path, extra=["--log-format", "json"]) as server, server.client() as client:
        reply = client.post(
            "/api/instances/world-0/whispers", json={"text": "follow me"}, headers={"x-request-id": "abc123"}
        )
        assert reply.status_code == 202, reply.text
        assert reply.headers["x-request-id"] == "abc123"
        found = check_followed("abc123", server.output, instance="world-0", identity="local-admin")
        audit = about("abc123", json_lines(server.output()))("audit: POST /api/instances/{instance_id}/whispers")
        assert audit is not None, server.output()
        assert (audit["identity"], audit["instance"], audit["logger"]) == (
            "local-admin", "world-0", "soulfra.security.audit"
        )  # fmt: skip
        assert audit["event"].endswith(": ok")
        assert found["accepted"]["seq"] == reply.json()["seq"]


@pytest.mark.postgres
@pytest.mark.timeout(90)
@pytest.mark.anyio
async def test_soulfra_serve_runtime_logs_a_whisper_under_the_request_id_that_came_on_the_bus(
    nats_bus: Bus, pg_url: str, tmp_path: Path
) -> None:
    runtime = Services(
        new_instance(pg_url), pg_url, tmp_path, connection=lambda platform: (["--log-format", "json"], {})
    )
    try:
        bridge = CrossPlatformBridge(nats_bus, runtime.instance_id, timeout=5.0)
        runtime.start("runtime")

        async def ticking() -> bool:
            return await runtime_tick(bridge) >= 1

        await wait_until("the runtime answers and ticks", ticking, runtime)
        with bind(request_id="abc123"):  # what an API process handling an HTTP request has bound
            ack = await bridge.send_whisper_to_runtime("follow me across the bus")
        err = tmp_path / "runtime.err"
        found = check_followed(
            "abc123", lambda: err.read_text(errors="replace"), instance=runtime.instance_id, identity="local"
        )
        assert (found["accepted"]["seq"], found["accepted"]["tick"]) == (ack.seq, ack.tick)
        logged = err.read_text().splitlines()
        assert len(json_lines(err.read_text())) == len(logged), "every line of the runtime's log is a JSON object"
    finally:
        codes = runtime.stop()
    assert codes == {"runtime": 0}, runtime.output("runtime")
