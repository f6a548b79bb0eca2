"""Node losses for ``soulfra bench cluster``: a node's raylet killed while whispers are sent to its worlds, the
seconds until each of them runs again on another node, acknowledged whispers missing afterwards, ``soulfra verify``
on the worlds that moved; then a node joins in its place (on loopback, with the cluster's token), its
host takes the same number of new worlds (new worlds go to the host with the fewest), and the next round kills it.

The worlds that moved are deleted before the new ones are made, so every round loses the same number of worlds and
the cluster never holds more than it started with. A world counts as recovered when the API shows it ``running`` on
another node: a world's first tick runs as it starts, so it is ticking again by then.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from rich.progress import Progress

if TYPE_CHECKING:
    from soulfra.bench.cluster import ClusterRun

__all__ = ["create_worlds", "lose_nodes", "serve_node", "stop_process"]

WHISPERED = 20  # worlds of the lost node whispered to each round
RECOVERY_DEADLINE_S = 600.0
JOIN_DEADLINE_S = 120.0


def _rows(client: httpx.Client) -> dict[str, dict[str, Any]]:
    reply = client.get("/api/instances")
    reply.raise_for_status()
    return {row["id"]: row for row in reply.json()["instances"]}


def create_worlds(client: httpx.Client, ids: list[str], agents: int, progress: Progress) -> None:
    """Worlds of these ids made through the API, eight at a time, each asked again while the API says 429 (its
    limit on creations); counted on ``progress`` as they are made."""
    task = progress.add_task(f"creating {len(ids):,} worlds", total=len(ids))

    def one(instance: str) -> None:
        body = {"id": instance, "seed": len(instance), "agents": agents}
        _unlimited(lambda: client.post("/api/instances", json=body)).raise_for_status()
        progress.advance(task)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, ids))
    progress.remove_task(task)


def _unlimited(send: Callable[[], httpx.Response]) -> httpx.Response:
    """``send``'s reply, sent again after the wait the API names while it says 429 (its limit on mutations)."""
    while (reply := send()).status_code == 429:
        time.sleep(float(reply.headers.get("retry-after", "1")))
    return reply


def _whisper(client: httpx.Client, victims: list[str], rounds: range) -> list[tuple[str, int]]:
    """Whispers to the first of ``victims``, a round after another; the acknowledged ones (world, seq)."""
    acknowledged: list[tuple[str, int]] = []
    for round_number in rounds:
        for instance in victims[:WHISPERED]:
            with contextlib.suppress(httpx.HTTPError):
                reply = client.post(f"/api/instances/{instance}/whispers", json={"text": f"r{round_number}"})
                if reply.status_code == 202:
                    acknowledged.append((instance, int(reply.json()["seq"])))
    return acknowledged


def _lose(client: httpx.Client, node: str, raylet: int, progress: Progress, label: str) -> dict[str, Any]:
    """Kill ``raylet`` (of ``node``) while whispering to its worlds (before the kill, and on during the takeover);
    the seconds each of its worlds took to run elsewhere, as the API shows it (looked at every 0.5 s)."""
    victims = sorted(i for i, row in _rows(client).items() if row.get("node") == node)
    task = progress.add_task(f"{label}: its worlds running again elsewhere", total=len(victims))
    acknowledged = _whisper(client, victims, range(1))
    os.kill(raylet, signal.SIGKILL)
    killed_at = time.monotonic()
    recovered: dict[str, float] = {}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        whispering = pool.submit(_whisper, client, victims, range(1, 4))
        deadline = killed_at + RECOVERY_DEADLINE_S
        while len(recovered) < len(victims) and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                for instance, row in _rows(client).items():
                    moved = row["state"] == "running" and row.get("node") not in (None, node)
                    if instance in victims and instance not in recovered and moved:
                        recovered[instance] = time.monotonic() - killed_at
            progress.update(task, completed=len(recovered))
            time.sleep(0.5)
        acknowledged += whispering.result()
    progress.remove_task(task)
    return {"victims": victims, "seconds": sorted(recovered.values()), "acknowledged": acknowledged}


def _lost_inputs(db: str, acknowledged: list[tuple[str, int]]) -> int:
    from soulfra.store import SqlStore  # noqa: PLC0415 -- loaded once the run needs it

    store = SqlStore.open(db)
    try:
        stored = {i: {s.seq for s in store.inputs.read(i)} for i in {i for i, _ in acknowledged}}
    finally:
        store.close()
    return sum(seq not in stored[instance] for instance, seq in acknowledged)


def _verify_failures(cluster: ClusterRun, instances: list[str]) -> int:
    failures = 0
    for instance in instances:
        checked = subprocess.run(  # noqa: S603 -- our own interpreter and command
            [sys.executable, "-m", "soulfra", "verify", "--db", cluster.db, "--instance", instance],
            capture_output=True, text=True, env=cluster.env, check=False,
        )  # fmt: skip
        failures += checked.returncode != 0
    return failures


@contextlib.contextmanager
def _joined(cluster: ClusterRun, log: Path) -> Iterator[int]:
    """A node joined to the cluster on loopback (``serve_node`` in a process of its own, as Ray's local test
    cluster adds one: ``ray start`` refuses a second node under Ray's loopback setting), stopped afterwards; its
    raylet's pid."""
    join = f"from soulfra.bench.cluster_failover import serve_node; serve_node({cluster.ray_address!r})"
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 -- our own interpreter and module
            [sys.executable, "-c", join], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=cluster.env,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + JOIN_DEADLINE_S
        while (found := re.search(r"raylet pid (\d+)", log.read_text(errors="replace"))) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the node did not join (exit {proc.poll()}):\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield int(found[1])
    finally:
        stop_process(proc, signal.SIGTERM)


def stop_process(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """``proc`` asked to stop with ``sig``, killed if it has not within a minute."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_node(address: str) -> None:
    """Run a Ray node joined to the cluster at ``address`` (on loopback, one CPU) until SIGTERM or SIGINT; its
    raylet's pid said on stdout."""
    from soulfra.cluster.ray_hosts import import_ray  # noqa: PLC0415 -- Ray, its environment set first

    import_ray()
    from ray._private.node import Node  # noqa: PLC0415
    from ray._private.parameter import RayParams  # noqa: PLC0415

    params = RayParams(
        node_ip_address="127.0.0.1", num_cpus=1, num_gpus=0, object_store_memory=150 * 2**20, min_worker_port=0,
        max_worker_port=0, gcs_address=address, node_manager_port=0,
    )  # fmt: skip
    params.update_if_absent(include_log_monitor=False)  # type: ignore[no-untyped-call]  # one log monitor a machine
    params.dashboard_agent_listen_port = None
    node = Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)  # its reaper ends it if this dies
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # after the node's processes started: they must not inherit it
    print(f"node {node.node_id[:12]} raylet pid {node.all_processes['raylet'][0].process.pid}", flush=True)
    signal.sigwait(stop)
    node.kill_all_processes(check_alive=False, allow_graceful=True)


def _hosts(client: httpx.Client) -> int:
    reply = client.get("/metrics")
    reply.raise_for_status()
    for line in reply.text.splitlines():
        if line.startswith("soulfra_cluster_hosts "):
            return int(float(line.split()[1]))
    return 0


def _refill(
    client: httpx.Client, moved: list[str], prefix: str, agents: int, progress: Progress
) -> tuple[str, list[str]]:
    """The worlds that moved deleted, as many new ones made (they go to the joined node, which has the fewest);
    that node's name."""

    def gone(instance: str) -> bool:
        reply = _unlimited(lambda: client.delete(f"/api/instances/{instance}"))
        if reply.status_code == 409:  # the cluster's default world stays
            return False
        reply.raise_for_status()
        return True

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        deleted = sum(pool.map(gone, moved))
    made = [f"{prefix}{n}" for n in range(deleted)]

    create_worlds(client, made, agents, progress)
    rows = _rows(client)
    nodes = [rows[i]["node"] for i in made if rows.get(i, {}).get("node")]
    return statistics.mode(nodes), made


def lose_nodes(
    cluster: ClusterRun,
    client: httpx.Client,
    *,
    kills: int,
    verify_at_most: int,
    agents: int,
    where: Path,
    progress: Progress,
) -> dict[str, Any]:
    """``kills`` rounds of a node lost and another joined in its place (see the module's docstring); failover
    figures over every world of every round."""
    node, raylet = cluster.node(2), cluster.raylet(2)
    seconds: list[float] = []
    rounds: list[dict[str, Any]] = []
    lost = verified = failures = acknowledged = 0
    with contextlib.ExitStack() as joined:
        for number in range(kills):
            lost_round = _lose(client, node, raylet, progress, f"node loss {number + 1} of {kills}")
            victims, times = lost_round["victims"], lost_round["seconds"]
            seconds += times
            lost += _lost_inputs(cluster.db, lost_round["acknowledged"])
            acknowledged += len(lost_round["acknowledged"])
            checked = victims[:verify_at_most]
            failures += _verify_failures(cluster, checked)
            verified += len(checked)
            rounds.append({
                "worlds": len(victims), "recovered": len(times),
                "p50_s": round(statistics.median(times), 2) if times else None,
                "max_s": round(times[-1], 2) if times else None,
            })  # fmt: skip
            if number == kills - 1:
                break
            raylet = joined.enter_context(_joined(cluster, where / f"node-{number + 3}.log"))
            deadline = time.monotonic() + JOIN_DEADLINE_S
            while _hosts(client) < 2:
                if time.monotonic() > deadline:
                    raise RuntimeError("the joined node got no host")
                time.sleep(0.5)
            node, _ = _refill(client, victims, f"k{number + 1}-", agents, progress)
    return {
        "kills": len(rounds),
        "worlds_on_lost_node": rounds[0]["worlds"] if rounds else 0,
        "recovered": len(seconds),
        "failover_p50_s": round(statistics.median(seconds), 2) if seconds else None,
        "failover_max_s": round(max(seconds), 2) if seconds else None,
        "failover_rounds": rounds,
        "acknowledged_inputs": acknowledged,
        "lost_acknowledged_inputs": lost,
        "verified": verified,
        "verify_failures": failures,
    }
