"""The puppet master's refusals over HTTP against a real ``soulfra up`` process: errors are JSON with the right
status and code, an oversized upload is refused before it is read, and a refused command changes nothing.

Every server listens on a free loopback port with its own data directory and its own ``SOULFRA_HOME`` (where the
installation key lives); each test waits for what it checks with a deadline, never a bare sleep.
"""

from __future__ import annotations

import socket

import httpx
import pytest

from .puppet_master_support import (
    god,
    listed,
    show,
    tick_of,
)
from .support import Server, assert_problem, wait_for

# The puppet master's tests share an expensive module-scoped fixture: under pytest-xdist they all run in one worker.
pytestmark = pytest.mark.xdist_group("test_puppet_master")


OCTETS = {"content-type": "application/octet-stream"}


# -- errors --------------------------------------------------------------------------------------------------------


def test_errors_are_json_with_the_right_status(api: httpx.Client, pair: tuple[str, str]) -> None:
    alpha, beta = pair
    for response in (
        api.get("/api/instances/nobody"),
        api.delete("/api/instances/nobody"),
        api.get("/api/instances/nobody/export"),
        api.get("/api/export", params={"instance": "nobody"}),
        api.post("/api/god", json={"type": "FREEZE_TIME", "instances": ["nobody"]}),
        api.post("/api/god/clone", json={"source": "nobody"}),
        api.post("/api/god/merge", json={"ours": alpha, "theirs": "nobody"}),
    ):
        assert_problem(response, 404, "not_found")
    detail = assert_problem(
        api.post("/api/god", json={"type": "MERGE_INSTANCES", "ours": alpha, "theirs": beta}), 409, "lineage_error"
    )
    assert "no ancestor" in detail
    whisper = {
        "type": "CROSS_INSTANCE_COMMUNICATION",
        "action": "whisper",
        "source": alpha,
        "target": beta,
        "agent": "arty",
        "text": "anyone there?",
    }
    assert "link them first" in assert_problem(api.post("/api/god", json=whisper), 409, "lineage_error")
    for body in (
        {"type": "NO_SUCH_COMMAND"},
        {"instances": [alpha]},  # no type at all on the typed endpoint
        {"type": "TIMELINE_REVERT", "instance": alpha},  # neither tick nor snapshot
        {"type": "AGENT_POSSESSION", "instance": alpha, "agent": "arty", "action": "act"},  # act without a body
        {"type": "REALITY_FORK", "source": alpha, "forks": []},
    ):
        assert_problem(api.post("/api/god", json=body), 422, "invalid_request")
    assert_problem(
        api.post("/api/god", content=b"{not json", headers={"content-type": "application/json"}), 422, "invalid_request"
    )
    assert_problem(api.post("/api/god/possess", json={"instance": alpha, "agent": "nobody"}), 422, "invalid_input")
    assert_problem(
        api.post("/api/god/merge", json={"ours": alpha, "theirs": alpha, "policies": {"vibe": "coin"}}),
        422,
        "invalid_input",
    )
    assert_problem(
        api.post("/api/god/clone", json={"source": alpha, "modifications": [{"type": "whisper"}]}), 422, "invalid_input"
    )

    fork = god(api, {"type": "REALITY_FORK", "source": alpha, "forks": [{"id": f"{alpha}-child"}]})
    detail = assert_problem(api.delete(f"/api/instances/{alpha}"), 409, "conflict")
    assert fork["forks"][0]["id"] in detail
    assert_problem(api.post("/api/instances", json={"id": alpha}), 409, "conflict")
    assert show(api, alpha)["state"] == "running"  # the refusals changed nothing

    assert_problem(api.post("/api/import", content=b"PK\x03\x04 but not a zip", headers=OCTETS), 422, "package_invalid")
    assert_problem(api.post("/api/import", content=b"", headers=OCTETS), 422, "package_invalid")


def test_an_upload_declared_over_the_limit_is_refused_before_it_is_read(server: Server) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/import HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            + f"Authorization: Bearer {server.token}\r\n".encode()
            + b"Content-Length: 5000000000\r\n\r\n"
        )
        reply = b""
        while b"}" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), reply
    assert b'"code":"package_too_large"' in body


def test_a_refused_revert_leaves_the_instance_ticking(api: httpx.Client, pair: tuple[str, str]) -> None:
    alpha, _ = pair
    detail = assert_problem(
        api.post("/api/god", json={"type": "TIMELINE_REVERT", "instance": alpha, "tick": 10**9}), 409, "lineage_error"
    )
    assert "cannot revert" in detail
    at = tick_of(api, alpha)
    wait_for(lambda: tick_of(api, alpha) > at + 2, timeout=5, what=f"{alpha} to tick on after the refusal")
    assert show(api, alpha)["state"] == "running"


def test_a_refused_freeze_or_thaw_changes_nothing(api: httpx.Client, pair: tuple[str, str]) -> None:
    alpha, beta = pair
    assert_problem(api.post("/api/god", json={"type": "FREEZE_TIME", "instances": [alpha, "nobody"]}), 404, "not_found")
    assert show(api, alpha)["state"] == "running"
    god(api, {"type": "FREEZE_TIME", "instances": [beta]})
    assert_problem(api.post("/api/god", json={"type": "THAW_TIME", "instances": [beta, "nobody"]}), 404, "not_found")
    assert show(api, beta)["state"] == "frozen"


def test_a_refused_fork_makes_no_fork(api: httpx.Client, pair: tuple[str, str]) -> None:
    alpha, beta = pair
    forks = [{"id": f"{alpha}-new"}, {"id": beta}]  # the second id is taken
    assert_problem(
        api.post("/api/god", json={"type": "REALITY_FORK", "source": alpha, "forks": forks}), 409, "conflict"
    )
    assert f"{alpha}-new" not in listed(api)
    assert show(api, alpha)["children"] == []
