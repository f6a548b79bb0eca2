"""``soulfra bench cluster``: worlds on a local Ray cluster (``soulfra cluster local``), against one node.

It starts the cluster as a user would, in a database of its own on the PostgreSQL server ``--db`` names (dropped
afterwards) and on NATS, creates ten-agent worlds at one tick a second through the API, and measures:

- ticks kept: the ticks the worlds ran over a window, against the ticks their rate asks for (two nodes, and one);
- memory: the resident memory of each node's host process;
- failover: node 2's raylet killed while whispers are sent to its worlds; for each of them, the seconds until it runs
  again on the other node; acknowledged whispers missing from the logs afterwards; ``soulfra verify`` failures.

``--quick`` is a small run of a couple of minutes printing the figures as one JSON object with ``--json``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import sqlalchemy as sa
import typer

from soulfra.bench.load import free_port

__all__ = ["cluster_command"]

RATE = 1.0  # ticks a second each world is asked for
AGENTS = 7  # beside the world's three named agents: ten-agent worlds
TICKS_KEPT_TARGET = 0.99
FAILOVER_P50_TARGET_S = 5.0


@contextlib.contextmanager
def _database(server_url: str) -> Iterator[str]:
    """A new database on the server of ``server_url`` for this run, dropped afterwards; its URL."""
    name = f"soulfra_bench_cluster_{secrets.token_hex(4)}"
    url = sa.engine.make_url(server_url)
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class _Cluster:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    env: dict[str, str]
    db: str

    def raylet(self, number: int) -> int:
        found = re.search(rf"node {number} \w+ raylet pid (\d+)", self.log.read_text(errors="replace"))
        if found is None:
            raise RuntimeError(f"no node {number} in the cluster's log")
        return int(found[1])

    def node(self, number: int) -> str:
        found = re.search(rf"node {number} (\w+) raylet pid", self.log.read_text(errors="replace"))
        if found is None:
            raise RuntimeError(f"no node {number} in the cluster's log")
        return found[1]


@contextlib.contextmanager
def _cluster(db: str, nats: str, nodes: int, where: Path) -> Iterator[_Cluster]:
    port = free_port()
    env = {**os.environ, "SOULFRA_HOME": str(where / "home"), "SOULFRA_LOG_LEVEL": "warning"}
    log = where / f"cluster-{nodes}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 -- our own interpreter and command
            [sys.executable, "-m", "soulfra", "cluster", "local", "--nodes", str(nodes), "--db", db, "--nats", nats,
             "--port", str(port), "--rate", str(RATE)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    running = _Cluster(proc, f"http://127.0.0.1:{port}", log, env, db)
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the cluster stopped (exit {proc.returncode}):\n{log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{running.url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster was not ready in 300 s")
            time.sleep(0.5)
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _token(cluster: _Cluster) -> str:
    made = subprocess.run(  # noqa: S603 -- our own interpreter and command
        [sys.executable, "-m", "soulfra", "token", "create", "--db", cluster.db, "--name", "bench", "--role", "admin",
         "--json"],
        capture_output=True, text=True, env=cluster.env, check=True,
    )  # fmt: skip
    token: str = json.loads(made.stdout)["token"]
    return token


def _rows(client: httpx.Client) -> dict[str, dict[str, Any]]:
    reply = client.get("/api/instances")
    reply.raise_for_status()
    return {row["id"]: row for row in reply.json()["instances"]}


def _create(client: httpx.Client, count: int) -> list[str]:
    ids = [f"b{number}" for number in range(count)]

    def one(instance_id: str) -> None:
        reply = client.post("/api/instances", json={"id": instance_id, "seed": len(instance_id), "agents": AGENTS})
        reply.raise_for_status()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, ids))
    return ids


def _ticks_kept(client: httpx.Client, ids: list[str], window: float) -> float:
    before = _rows(client)
    started = time.monotonic()
    time.sleep(window)
    after = _rows(client)
    elapsed = time.monotonic() - started
    ran = sum(int(after[i]["tick"]) - int(before[i]["tick"]) for i in ids)
    return ran / (len(ids) * elapsed * RATE)


def _host_memory(cluster: _Cluster) -> list[int]:
    """Resident bytes of each host process (``ray::WorldHost``) of the cluster."""
    import psutil  # type: ignore[import-untyped]  # noqa: PLC0415 -- a bench dependency

    parent = psutil.Process(cluster.proc.pid)
    return sorted(
        p.memory_info().rss for p in parent.children(recursive=True) if "WorldHost" in " ".join(p.cmdline() or [])
    )


def _failover(cluster: _Cluster, client: httpx.Client, verify_at_most: int) -> dict[str, Any]:
    lost_node = cluster.node(2)
    rows = _rows(client)
    victims = sorted(i for i, row in rows.items() if row.get("node") == lost_node)
    acknowledged: list[tuple[str, int]] = []
    killed_at = 0.0
    for round_number in range(4):
        if round_number == 1:
            os.kill(cluster.raylet(2), signal.SIGKILL)
            killed_at = time.monotonic()
        for instance in victims[:20]:
            with contextlib.suppress(httpx.HTTPError):
                reply = client.post(f"/api/instances/{instance}/whispers", json={"text": f"r{round_number}"})
                if reply.status_code == 202:
                    acknowledged.append((instance, int(reply.json()["seq"])))
    recovered: dict[str, float] = {}
    deadline = time.monotonic() + 600
    while len(recovered) < len(victims) and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            for instance, row in _rows(client).items():
                moved = row["state"] == "running" and row.get("node") not in (None, lost_node)
                if instance in victims and instance not in recovered and moved:
                    recovered[instance] = time.monotonic() - killed_at
        time.sleep(0.25)
    times = sorted(recovered.values())
    from soulfra.store import SqlStore  # noqa: PLC0415

    store = SqlStore.open(cluster.db)
    try:
        stored = {i: {s.seq for s in store.inputs.read(i)} for i in {i for i, _ in acknowledged}}
    finally:
        store.close()
    lost = sum(seq not in stored[instance] for instance, seq in acknowledged)
    failures = 0
    for instance in victims[:verify_at_most]:
        checked = subprocess.run(  # noqa: S603 -- our own interpreter and command
            [sys.executable, "-m", "soulfra", "verify", "--db", cluster.db, "--instance", instance],
            capture_output=True, text=True, env=cluster.env, check=False,
        )  # fmt: skip
        failures += checked.returncode != 0
    return {
        "worlds_on_lost_node": len(victims),
        "recovered": len(recovered),
        "failover_p50_s": round(times[len(times) // 2], 2) if times else None,
        "failover_max_s": round(times[-1], 2) if times else None,
        "acknowledged_inputs": len(acknowledged),
        "lost_acknowledged_inputs": lost,
        "verified": min(verify_at_most, len(victims)),
        "verify_failures": failures,
    }


def _run(db_server: str, nats: str, nodes: int, count: int, window: float, verify: int, lose: bool) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        where = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soulfra-bench-cluster-")))
        cluster = stack.enter_context(_cluster(stack.enter_context(_database(db_server)), nats, nodes, where))
        headers = {"authorization": f"Bearer {_token(cluster)}"}
        with httpx.Client(base_url=cluster.url, headers=headers, timeout=120) as client:
            ids = _create(client, count)
            time.sleep(min(10.0, window))  # every world started and ticking
            result: dict[str, Any] = {
                "nodes": nodes,
                "instances": len(ids),
                "ticks_kept": round(_ticks_kept(client, ids, window), 4),
                "host_rss_mib": [round(b / 2**20, 1) for b in _host_memory(cluster)],
            }
            if lose:
                result |= _failover(cluster, client, verify)
            return result


def cluster_command(
    db: Annotated[str, typer.Option(help="A PostgreSQL server to make the run's own database on (postgresql://...)")],
    nats: Annotated[str, typer.Option(help="NATS with JetStream")] = "nats://127.0.0.1:4222",
    quick: Annotated[bool, typer.Option(help="A small run (a couple of minutes)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object")] = False,
    instances: Annotated[int | None, typer.Option(help="Worlds (default: 100 quick, 2000 full)")] = None,
) -> None:
    """Worlds on a local Ray cluster of two nodes against one: ticks kept, memory per node, and a node lost."""
    count = instances or (100 if quick else 2000)
    window = 15.0 if quick else 60.0
    two = _run(db, nats, 2, count, window, verify=3 if quick else 20, lose=True)
    report: dict[str, Any] = dict(two)
    if not quick:
        one = _run(db, nats, 1, count, window, verify=0, lose=False)
        report["one_node"] = {k: one[k] for k in ("ticks_kept", "host_rss_mib")}
    report["targets"] = {
        "ticks_kept": {"target": TICKS_KEPT_TARGET, "met": report["ticks_kept"] >= TICKS_KEPT_TARGET},
        "failover_p50_s": {
            "target": FAILOVER_P50_TARGET_S,
            "met": report.get("failover_p50_s") is not None and report["failover_p50_s"] <= FAILOVER_P50_TARGET_S,
        },
        "lost_acknowledged_inputs": {"target": 0, "met": report.get("lost_acknowledged_inputs") == 0},
    }
    if as_json:
        typer.echo(json.dumps(report))
        return
    for key, value in report.items():
        typer.echo(f"{key}: {value}")
    if not quick:
        Path("benchmarks").mkdir(exist_ok=True)
        Path("benchmarks/cluster.json").write_text(json.dumps(report, indent=2) + "\n")
