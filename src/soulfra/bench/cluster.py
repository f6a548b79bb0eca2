"""``soulfra bench cluster``: worlds on a local Ray cluster (``soulfra cluster local``), against one node.

It starts the cluster as a user would, in a database of its own on the PostgreSQL server ``--db`` names (dropped
afterwards) and on NATS, creates ten-agent worlds at one tick a second through the API, and measures:

- ticks kept: the ticks the worlds ran over a window, against the ticks their rate asks for (two nodes, and one);
- memory: the resident memory of each node's host process;
- failover (``soulfra.bench.cluster_failover``): a node's raylet killed while whispers are sent to its worlds; for
  each of them, the seconds until it runs again on the other node; acknowledged whispers missing from the logs
  afterwards; ``soulfra verify`` failures; then a node joins in its place, takes new worlds, and is killed in turn.

The full run measures ticks kept and memory with ``--instances`` worlds on two nodes and on one, and failover over
``--kills`` node losses in a cluster of ``--failover-instances`` worlds (half of them on the node lost each time).
``--quick`` is a small run of a couple of minutes (one cluster, one loss) printing the figures as one JSON object
with ``--json``.
"""

from __future__ import annotations

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
from rich.console import Console
from rich.progress import Progress

from soulfra.bench.cluster_failover import create_worlds, lose_nodes, stop_process
from soulfra.bench.load import free_port
from soulfra.bench.progress import bench_progress

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
class ClusterRun:
    """``soulfra cluster local`` as the benchmark runs it: its API, log, environment (with the Ray token) and
    database."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    env: dict[str, str]
    db: str

    @property
    def ray_address(self) -> str:
        found = re.search(r"ray cluster at (\S+)", self.log.read_text(errors="replace"))
        if found is None:
            raise RuntimeError("no Ray address in the cluster's log")
        return found[1]

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
def _cluster(db: str, nats: str, nodes: int, where: Path) -> Iterator[ClusterRun]:
    port = free_port()
    env = {**os.environ, "SOULFRA_HOME": str(where / "home"), "SOULFRA_LOG_LEVEL": "warning"}
    # Ray's loopback-only settings, with a token of the run's own: for the cluster, and a node the run joins to it
    env |= {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    log = where / f"cluster-{nodes}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 -- our own interpreter and command
            [sys.executable, "-m", "soulfra", "cluster", "local", "--nodes", str(nodes), "--db", db, "--nats", nats,
             "--port", str(port), "--rate", str(RATE)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    running = ClusterRun(proc, f"http://127.0.0.1:{port}", log, env, db)
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
        stop_process(proc, signal.SIGINT)


def _token(cluster: ClusterRun) -> str:
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


def _create(client: httpx.Client, count: int, progress: Progress) -> list[str]:
    ids = [f"b{number}" for number in range(count)]
    create_worlds(client, ids, AGENTS, progress)
    return ids


def _ticks_kept(client: httpx.Client, ids: list[str], window: float, progress: Progress) -> float:
    # Each listing's ticks are timed at its middle: listing a thousand worlds takes a while, and a window timed
    # from the end of the first to the end of the second gave a slow first listing's ticks to a shorter window.
    before, started = _rows_at(client)
    task = progress.add_task(f"counting the ticks of {len(ids):,} worlds (s)", total=round(window))
    while (left := started + window - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        progress.update(task, completed=min(round(window), round(time.monotonic() - started)))
    progress.remove_task(task)
    after, ended = _rows_at(client)
    ran = sum(int(after[i]["tick"]) - int(before[i]["tick"]) for i in ids)
    return ran / (len(ids) * (ended - started) * RATE)


def _rows_at(client: httpx.Client) -> tuple[dict[str, dict[str, Any]], float]:
    """The instances' rows, and the middle of the time their listing took."""
    asked = time.monotonic()
    rows = _rows(client)
    return rows, (asked + time.monotonic()) / 2


def _host_memory(cluster: ClusterRun) -> list[int]:
    """Resident bytes of each host process (``ray::WorldHost``) of the cluster."""
    import psutil  # type: ignore[import-untyped]  # noqa: PLC0415 -- a bench dependency

    parent = psutil.Process(cluster.proc.pid)
    return sorted(
        p.memory_info().rss for p in parent.children(recursive=True) if "WorldHost" in " ".join(p.cmdline() or [])
    )


def _run(
    db_server: str,
    nats: str,
    nodes: int,
    count: int,
    window: float,
    progress: Progress,
    *,
    kills: int = 0,
    verify: int = 0,
) -> dict[str, Any]:
    """A cluster of ``nodes`` nodes and ``count`` worlds: ticks kept over ``window`` seconds and host memory, and
    with ``kills``, that many node losses."""
    with contextlib.ExitStack() as stack:
        where = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soulfra-bench-cluster-")))
        starting = progress.add_task(f"starting a local cluster of {nodes} node{'s' * (nodes > 1)}", total=None)
        cluster = stack.enter_context(_cluster(stack.enter_context(_database(db_server)), nats, nodes, where))
        progress.remove_task(starting)
        headers = {"authorization": f"Bearer {_token(cluster)}"}
        with httpx.Client(base_url=cluster.url, headers=headers, timeout=120) as client:
            ids = _create(client, count, progress)
            time.sleep(min(10.0, window))  # every world started and ticking
            result: dict[str, Any] = {
                "nodes": nodes,
                "instances": len(ids),
                "ticks_kept": round(_ticks_kept(client, ids, window, progress), 4),
                "host_rss_mib": [round(b / 2**20, 1) for b in _host_memory(cluster)],
            }
            if kills:
                result |= lose_nodes(
                    cluster, client, kills=kills, verify_at_most=verify, agents=AGENTS, where=where, progress=progress
                )
            return result


def cluster_command(
    db: Annotated[str, typer.Option(help="A PostgreSQL server to make the run's own database on (postgresql://...)")],
    nats: Annotated[str, typer.Option(help="NATS with JetStream")] = "nats://127.0.0.1:4222",
    quick: Annotated[bool, typer.Option(help="A small run (a couple of minutes)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object")] = False,
    instances: Annotated[
        int | None, typer.Option(min=1, help="Worlds for ticks kept and memory (default: 100 quick, 2000 full)")
    ] = None,
    failover_instances: Annotated[
        int | None,
        typer.Option(min=2, help="Worlds of the failover cluster, half on the node lost (full run; default 1000)"),
    ] = None,
    kills: Annotated[int | None, typer.Option(min=1, help="Node losses (default: 1 quick, 5 full)")] = None,
    window: Annotated[
        float | None, typer.Option(min=1.0, help="Seconds ticks are counted over (default: 15 quick, 60)")
    ] = None,
) -> None:
    """Worlds on a local Ray cluster of two nodes against one: ticks kept, memory per node, and nodes lost."""
    count = instances or (100 if quick else 2000)
    seconds = window or (15.0 if quick else 60.0)
    losses = kills or (1 if quick else 5)
    with bench_progress(Console(stderr=True)) as progress:  # stderr: --json keeps stdout to the figures
        if quick:  # one cluster: its load, then its losses
            report: dict[str, Any] = _run(db, nats, 2, count, seconds, progress, kills=losses, verify=3)
        else:
            report = _run(db, nats, 2, count, seconds, progress)
            one = _run(db, nats, 1, count, seconds, progress)
            report["one_node"] = {k: one[k] for k in ("ticks_kept", "host_rss_mib")}
            failover = _run(db, nats, 2, failover_instances or 1000, seconds, progress, kills=losses, verify=20)
            report["failover"] = {"instances": failover["instances"], "ticks_kept": failover["ticks_kept"]}
            report |= {
                k: v for k, v in failover.items() if k not in ("nodes", "instances", "ticks_kept", "host_rss_mib")
            }
    report["load_average"] = [round(n, 2) for n in os.getloadavg()]  # the machine may be shared: say how busy
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
