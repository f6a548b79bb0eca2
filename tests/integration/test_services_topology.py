"""The services topology, whole: ``soulfra serve meta`` (the puppet master) and two ``soulfra serve api`` processes
on a NATS server of the test's own and one PostgreSQL schema. The puppet-master acceptance path (create, fork,
merge, revert, possess, export, import) runs through the two API processes in turn, as a round-robin load balancer
would send it; the audit trail has one row per change whichever process took it, and the puppet master's /metrics
counts its commands."""

from __future__ import annotations

from itertools import cycle
from typing import Any

import httpx
import pytest

from .support import free_port, wait_for
from .topology import Topology, admin_token, ok

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300), pytest.mark.xdist_group("services_topology")]


def deploy(topology: Topology) -> tuple[str, list[httpx.Client]]:
    """The puppet master (its /metrics on a port of its own) and two API processes, ready; the puppet master's
    ops URL and a client of each API process, sending an admin token."""
    meta_port, ports = free_port(), [free_port(), free_port()]
    topology.start("meta", "meta", "--rate", "20", "--metrics-port", str(meta_port))
    meta = f"http://127.0.0.1:{meta_port}"
    topology.ready("meta", meta)
    for number, port in enumerate(ports, 1):
        topology.start(f"api-{number}", "api", "--port", str(port))
    for number, port in enumerate(ports, 1):
        topology.ready(f"api-{number}", f"http://127.0.0.1:{port}")
    headers = {"authorization": f"Bearer {admin_token(topology)}"}
    return meta, [httpx.Client(base_url=f"http://127.0.0.1:{p}", headers=headers, timeout=30.0) for p in ports]


def test_the_acceptance_path_through_two_api_processes(topology: Topology) -> None:
    meta, clients = deploy(topology)
    turn = cycle(clients)  # every request goes to the next API process, as a round-robin balancer sends them

    def call(method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        return ok(next(turn).request(method, path, **kwargs), status)

    def head(instance: str) -> int:
        return int(call("GET", f"/api/instances/{instance}")["tick"])

    try:
        made = call("POST", "/api/instances", 201, json={"id": "alpha", "seed": 11})
        assert (made["id"], made["seed"], made["state"]) == ("alpha", 11, "running")
        wait_for(lambda: head("alpha") >= 5, what="alpha to tick")

        fork = call("POST", "/api/god/fork", json={"source": "alpha", "forks": [{"id": "beta"}]})
        assert [f["id"] for f in fork["forks"]] == ["beta"]
        wait_for(lambda: head("beta") >= fork["tick"] + 3, what="beta to tick on from its fork")

        preview = call("POST", "/api/god/merge/preview", json={"ours": "alpha", "theirs": "beta", "id": "gamma"})
        merged = call("POST", "/api/god/merge", json={"ours": "alpha", "theirs": "beta", "id": "gamma"})
        assert merged["parents"] == ["alpha", "beta"] == preview["parents"]
        assert merged["base"] == {"instance": "alpha", "tick": fork["tick"]}

        possess = {"instance": "alpha", "agent": "arty"}
        call("POST", "/api/god/possess", json={**possess, "operator": "tester"})
        acted = call("POST", "/api/god/possess", json={**possess, "action": "act", "act": {"action": "rest"}})
        assert acted["ack"]["type"] == "act"
        call("POST", "/api/god/possess", json={**possess, "action": "release"})

        at = head("beta") - 1
        reverted = call("POST", "/api/god/revert", json={"instance": "beta", "tick": at})
        assert (reverted["instance"], reverted["tick"]) == ("beta", at)
        rebuilt = call("GET", "/api/instances/beta/state", params={"tick": at})
        assert rebuilt["state_hash"] == reverted["state_hash"]  # the other process reads what the revert made

        package = next(turn).get("/api/instances/gamma/export")
        assert package.status_code == 200, package.text
        imported = call(
            "POST", "/api/import", 201, params={"as_id": "gamma-copy", "start": "false"}, content=package.content,
            headers={"content-type": "application/vnd.soulfra.package+zip"},
        )  # fmt: skip
        [row] = imported["imported"]
        original = call("GET", "/api/instances/gamma/state", params={"tick": row["head_tick"]})
        assert row["state_hash"] == original["state_hash"]

        listed = {r["id"]: r for r in call("GET", "/api/instances")["instances"]}
        assert {"alpha", "beta", "gamma", "gamma-copy"} <= listed.keys()
        assert any(r["status"] == "abandoned" and r["parent_id"] == "beta" for r in listed.values())

        audit = call("GET", "/api/audit", params={"limit": 100})["entries"]
        actions = [(e["actor"], e["action"], e["outcome"]) for e in audit if e["actor"] == "ops"]
        assert actions == [  # one row per request that changes something, whichever API process took it
            ("ops", "instance.create", "ok"),
            ("ops", "god.reality_fork", "ok"),
            ("ops", "POST /api/god/merge/preview", "ok"),
            ("ops", "god.merge_instances", "ok"),
            ("ops", "god.agent_possession", "ok"),
            ("ops", "god.agent_possession", "ok"),
            ("ops", "god.agent_possession", "ok"),
            ("ops", "god.timeline_revert", "ok"),
            ("ops", "POST /api/import", "ok"),
        ]
        assert call("GET", "/api/audit/verify")["ok"] is True
        assert 'soulfra_god_commands_total{outcome="ok",type="REALITY_FORK"} 1.0' in httpx.get(f"{meta}/metrics").text
        timed = 'soulfra_bus_request_duration_seconds_count{op="god",platform="meta"} '
        gods = [next(line for line in c.get("/metrics").text.splitlines() if line.startswith(timed)) for c in clients]
        assert sum(float(line.split()[-1]) for line in gods) == 6  # fork, merge, three possessions, revert: each timed
    finally:
        for client in clients:
            client.close()
    codes = topology.stop()
    assert codes == {"meta": 0, "api-1": 0, "api-2": 0}, {name: topology.log(name) for name in codes}


def test_an_api_process_without_a_puppet_master_says_so(topology: Topology) -> None:
    port = free_port()
    topology.start("api", "api", "--port", str(port))
    proc = topology.procs["api"]
    wait_for(lambda: proc.poll() is not None or "waiting for the puppet master" in topology.log("api"),
             timeout=30.0, what="the API process to say it waits")  # fmt: skip
    assert "soulfra serve meta" in topology.log("api")


def test_a_world_left_to_its_own_platform_processes_is_served_beside_the_puppet_master(topology: Topology) -> None:
    meta_port, runtime_port, api_port = free_port(), free_port(), free_port()
    topology.start("meta", "meta", "--leave", "harbor", "--metrics-port", str(meta_port))
    topology.ready("meta", f"http://127.0.0.1:{meta_port}")
    topology.start(
        "runtime", "runtime", "--instance", "harbor", "--create", "--seed", "5", "--rate", "20",
        "--metrics-port", str(runtime_port),
    )  # fmt: skip
    runtime = f"http://127.0.0.1:{runtime_port}"
    topology.ready("runtime", runtime)
    topology.start("surface", "surface", "--instance", "harbor")
    topology.start("api", "api", "--port", str(api_port))
    topology.ready("api", f"http://127.0.0.1:{api_port}")
    headers = {"authorization": f"Bearer {admin_token(topology)}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers=headers, timeout=30.0) as api:
        weather = wait_for(
            lambda: (r := api.get("/api/instances/harbor/vibe/weather")).status_code == 200 and r.json()["weather"],
            timeout=30.0, what="the surface process to report harbor's weather through the API",
        )  # fmt: skip
        assert weather["condition"] in {"calm-bloom", "echo-storm", "trust-surge", "drift-wave", "chaos-bloom"}
        rows = {r["id"]: r for r in ok(api.get("/api/instances"))["instances"]}
        assert rows["harbor"]["state"] == "stored"  # the puppet master left it to its own processes
        assert rows["world-0"]["state"] == "running"
        refused = api.post("/api/god/freeze", json={"instances": ["harbor"]})
        assert refused.status_code == 409
        assert "harbor is already being run by pid" in refused.json()["detail"]  # its own runtime holds its lease
    ticks = httpx.get(f"{runtime}/metrics").text
    assert 'soulfra_ticks_total{world="harbor"}' in ticks

    topology.start("meta-2", "meta", "--leave", "harbor")  # a second puppet master on the same database
    second = topology.procs["meta-2"]
    second.wait(timeout=60)
    assert second.returncode != 0
    [line] = topology.log("meta-2").strip().splitlines()
    assert line.startswith("soulfra: error: this server's database is already being run by pid "), line
