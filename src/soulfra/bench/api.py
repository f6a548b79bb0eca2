"""``soulfra bench api``: the public surface's requests per second and p99, ticking, beside a bare Starlette route;
surface and authenticated reads with access control on, beside the same server with it off.

Each server runs in its own uvicorn subprocess on 127.0.0.1, driven by the same keep-alive asyncio load generator;
the bare route serves the exact bytes Soulfra answered. Also the runtime's pause in a big instance's unified snapshot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console, Group
from rich.table import Table

from soulfra.bench.load import HOST, LOAD_GENERATOR, load, percentile
from soulfra.errors import OutputError

__all__ = ["ENDPOINTS", "api_command", "bench_api", "render"]

ENDPOINTS = ("/api/vibe/weather", "/api/agents/echo", "/api/ritual/traces")
BUILTIN_AGENTS = 3  # Cal Riven, Arty, Agent Zero
TARGET_RPS_RATIO = 0.7
TARGET_P99_MS = 50.0
TARGET_PAUSE_MS = 5.0
TARGET_ACCESS_RATIO = 0.95  # reads with access control on, over the same server with it off
AUTHENTICATED_READ = "/api/instances/{instance}/agents?limit=20"  # a viewer's read: token, role and scope checked
STARTUP_TIMEOUT = 60.0


# -- the servers under test (run in subprocesses) ---------------------------------------------------------------


def _serve(kind: str, port_file: Path, *, data: Path | None, agents: int, bodies: Path | None) -> None:
    """Serve Soulfra's embedded app (``soulfra``; ``soulfra-open`` without access control, only to measure what it
    costs) or the bare Starlette routes on a free port written to ``port_file``."""
    import uvicorn  # noqa: PLC0415 - only the server subprocess needs it

    from soulfra.api.access import AccessSettings  # noqa: PLC0415
    from soulfra.system import EmbeddedSettings, embedded_app, listen  # noqa: PLC0415

    if kind in ("soulfra", "soulfra-open"):
        assert data is not None  # noqa: S101 - argparse requires it for this kind
        access = AccessSettings(enforce=kind == "soulfra")
        app: Any = embedded_app(
            EmbeddedSettings(
                data=data, rate=None, agents=max(0, agents - BUILTIN_AGENTS), home=data / "home", access=access
            )
        )
    else:
        assert bodies is not None  # noqa: S101
        app = _bare_app(json.loads(bodies.read_text()))
    sock = listen(HOST, 0)
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(sock.getsockname()[1]))
    tmp.replace(port_file)  # the port appears whole, or not at all
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=3)
    uvicorn.Server(config).run(sockets=[sock])


def _bare_app(bodies: dict[str, str]) -> Any:
    """One Starlette route per path, each returning fixed bytes as JSON, as a hand-written service would."""
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import Response  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    def route(path: str, body: bytes) -> Route:
        async def endpoint(_request: Request) -> Response:
            return Response(body, media_type="application/json")

        return Route(path, endpoint, methods=["GET"])

    return Starlette(routes=[route(path, text.encode()) for path, text in bodies.items()])


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m soulfra.bench.api", description="a server under test")
    parser.add_argument("kind", choices=("soulfra", "soulfra-open", "bare"))
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--agents", type=int, default=BUILTIN_AGENTS)
    parser.add_argument("--bodies", type=Path)
    args = parser.parse_args(argv)
    if (args.kind != "bare" and args.data is None) or (args.kind == "bare" and args.bodies is None):
        parser.error("soulfra needs --data; bare needs --bodies")
    _serve(args.kind, args.port_file, data=args.data, agents=args.agents, bodies=args.bodies)


class _Server:
    """A server subprocess, started on a free port and stopped by SIGTERM to its own pid."""

    def __init__(self, args: list[str], workdir: Path, name: str) -> None:
        self.port_file = workdir / f"{name}.port"
        self.log = workdir / f"{name}.log"
        self.port_file.unlink(missing_ok=True)  # a port file left by an earlier server of this name is stale
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "soulfra.bench.api", *args, "--port-file", str(self.port_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _failed(self, what: str) -> OutputError:
        tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
        return OutputError(f"the benchmark server {what}: " + (" | ".join(tail) or "no output"))

    def wait_ready(self, path: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.port_file.exists():
            if self.process.poll() is not None:
                raise self._failed(f"exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise self._failed("did not bind a port in time")
            time.sleep(0.05)
        self.port = int(self.port_file.read_text())
        with httpx.Client(base_url=self.base, timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise self._failed(f"exited with {self.process.returncode}")
                try:
                    if client.get(path).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise self._failed(f"did not answer {path} in time")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def _server(args: list[str], workdir: Path, name: str, ready: str) -> Iterator[_Server]:
    server = _Server(args, workdir, name)
    try:
        server.wait_ready(ready)
        yield server
    finally:
        server.stop()


def _tick(client: httpx.Client) -> int:
    return int(client.get("/readyz").json()["tick"])


def _measure_soulfra(
    workdir: Path, *, seconds: float, warmup: float, connections: int, agents: int
) -> tuple[dict[str, Any], dict[str, str]]:
    args = ["soulfra", "--data", str(workdir / "soulfra-data"), "--agents", str(agents)]
    rows: dict[str, Any] = {}
    bodies: dict[str, str] = {}
    with _server(args, workdir, "soulfra", "/readyz") as server, httpx.Client(base_url=server.base) as probe:
        for path in ENDPOINTS:
            captured = probe.get(path)
            captured.raise_for_status()
            bodies[path] = captured.text
            tick_before, begun = _tick(probe), time.perf_counter()
            result = asyncio.run(load(server.port, path, seconds=seconds, warmup=warmup, connections=connections))
            ticks = _tick(probe) - tick_before
            result["ticks_per_s"] = round(ticks / (time.perf_counter() - begun), 1)
            rows[path] = result
    return rows, bodies


def _measure_bare(
    workdir: Path, bodies: dict[str, str], *, seconds: float, warmup: float, connections: int
) -> dict[str, Any]:
    body_file = workdir / "bodies.json"
    body_file.write_text(json.dumps(bodies))
    rows: dict[str, Any] = {}
    with _server(["bare", "--bodies", str(body_file)], workdir, "bare", ENDPOINTS[0]) as server:
        for path in ENDPOINTS:
            rows[path] = asyncio.run(load(server.port, path, seconds=seconds, warmup=warmup, connections=connections))
            rows[path]["body_bytes"] = len(bodies[path].encode())
    return rows


def _measure_access(
    workdir: Path, *, seconds: float, warmup: float, connections: int, agents: int
) -> dict[str, dict[str, Any]]:
    """What access control costs: a public surface read and an authenticated read, on the same server with access
    control on (``soulfra``) and off (``soulfra-open``). Both get the same request bytes (the bearer token too), so
    only the checks differ. Each side runs twice, in the order on, off, off, on (a fresh server each time: whichever
    runs first on a machine is the slower), and keeps its better run."""
    from soulfra.security.local import read_home_token  # noqa: PLC0415

    rows: dict[str, dict[str, Any]] = {"surface": {}, "authenticated": {}}
    for n, kind in enumerate(("soulfra", "soulfra-open", "soulfra-open", "soulfra")):
        data = workdir / f"{kind}-{n}-data"
        args = [kind, "--data", str(data), "--agents", str(agents)]
        with _server(args, workdir, kind, "/readyz") as server, httpx.Client(base_url=server.base) as probe:
            instance = str(probe.get("/readyz").json()["instance"])
            token = read_home_token(data / "home")
            paths = {"surface": ENDPOINTS[0], "authenticated": AUTHENTICATED_READ.format(instance=instance)}
            for label, path in paths.items():
                loaded = load(server.port, path, seconds=seconds, warmup=warmup, connections=connections, token=token)
                run = {"path": path, **asyncio.run(loaded)}
                side = "on" if kind == "soulfra" else "off"
                kept = rows[label].get(side)
                if kept is None or run["rps"] > kept["rps"]:
                    rows[label][side] = run
    for row in rows.values():
        row["rps_ratio"] = round(row["on"]["rps"] / row["off"]["rps"], 3) if row["off"]["rps"] else 0.0
    return rows


# -- the unified snapshot's pause -------------------------------------------------------------------------------


async def _pauses(workdir: Path, *, agents: int, snapshots: int) -> dict[str, Any]:
    from soulfra.bus import InMemoryBus  # noqa: PLC0415 - the API half of the bench never needs these
    from soulfra.platforms.instance import FourPlatformInstance, InstanceSettings  # noqa: PLC0415
    from soulfra.store import SqlStore  # noqa: PLC0415

    store = SqlStore.open(f"sqlite:///{workdir / 'pause.db'}")
    bus = InMemoryBus()
    settings = InstanceSettings(agents=max(0, agents - BUILTIN_AGENTS), rate=None)
    pauses: list[int] = []
    took: list[int] = []
    try:
        instance = await FourPlatformInstance.open(store, bus, settings)
        try:
            instance.start_autonomous_operations()
            await asyncio.sleep(0.2)
            first = instance.world.tick
            begun = time.perf_counter()
            for _ in range(snapshots):
                record = await instance.bridge.unified_snapshot()
                pauses.append(record.pause_ns)
                took.append(record.took_ns)
                await asyncio.sleep(0.02)  # let the world tick between snapshots
            ticks_per_s = (instance.world.tick - first) / (time.perf_counter() - begun)
        finally:
            await instance.close()
    finally:
        await bus.close()
        store.close()
    ordered = sorted(float(p) for p in pauses)
    return {
        "agents": agents,
        "snapshots": snapshots,
        "pause_ns": pauses,
        "pause_p50_ms": round(percentile(ordered, 0.5) / 1e6, 3),
        "pause_max_ms": round(ordered[-1] / 1e6, 3),
        "took_p50_ms": round(statistics.median(took) / 1e6, 3),
        "ticks_per_s": round(ticks_per_s, 1),
    }


# -- the benchmark ----------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in ("fastapi", "starlette", "uvicorn", "httpx")}


def bench_api(
    *,
    seconds: float,
    connections: int,
    agents: int,
    out: Path | None,
    snapshots: int = 20,
    warmup: float = 1.0,
    pause_agents: int = 1000,
) -> dict[str, Any]:
    """Soulfra's surface beside the bare route, then the unified snapshot's pause; writes ``out`` when given."""
    with tempfile.TemporaryDirectory(prefix="soulfra-bench-api-") as tmp:
        workdir = Path(tmp)
        ours, bodies = _measure_soulfra(workdir, seconds=seconds, warmup=warmup, connections=connections, agents=agents)
        bare = _measure_bare(workdir, bodies, seconds=seconds, warmup=warmup, connections=connections)
        access = _measure_access(workdir, seconds=seconds, warmup=warmup, connections=connections, agents=agents)
        pause = asyncio.run(_pauses(workdir, agents=pause_agents, snapshots=snapshots))
    rows = []
    for path in ENDPOINTS:
        ratio = ours[path]["rps"] / bare[path]["rps"] if bare[path]["rps"] else 0.0
        rows.append({"path": path, "soulfra": ours[path], "bare": bare[path], "rps_ratio": round(ratio, 3)})
    worst_ratio = min(row["rps_ratio"] for row in rows)
    worst_access = min(row["rps_ratio"] for row in access.values())
    worst_p99 = max(row["soulfra"]["p99_ms"] for row in rows)
    results: dict[str, Any] = {
        "benchmark": "api",
        "seconds": seconds,
        "warmup_s": warmup,
        "connections": connections,
        "agents": agents,
        "rate": "unlimited",
        "load_generator": LOAD_GENERATOR,
        "rows": rows,
        "access": access,
        "unified_snapshot": pause,
        "targets": {
            "rps_ratio": {
                "target": f">= {TARGET_RPS_RATIO}",
                "worst": worst_ratio,
                "pass": worst_ratio >= TARGET_RPS_RATIO,
            },
            "p99_ms": {"target": f"< {TARGET_P99_MS}", "worst": worst_p99, "pass": worst_p99 < TARGET_P99_MS},
            "access_ratio": {
                "target": f">= {TARGET_ACCESS_RATIO}",
                "worst": worst_access,
                "pass": worst_access >= TARGET_ACCESS_RATIO,
            },
            "pause_ms": {
                "target": f"<= {TARGET_PAUSE_MS}",
                "worst": pause["pause_max_ms"],
                "pass": pause["pause_max_ms"] <= TARGET_PAUSE_MS,
            },
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "system": f"{platform.system()} {platform.machine()}",
        },
        "versions": _versions(),
    }
    if out is not None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=2) + "\n")
        except OSError as exc:
            raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    return results


def render(results: dict[str, Any]) -> Group:
    table = Table(
        title=f"GET at {results['connections']} connections for {results['seconds']:g} s each, {results['agents']:,} "
        f"agents ticking unthrottled: Soulfra beside bare Starlette {results['versions']['starlette']}"
    )
    for column in ("path", "system", "req/s", "p50", "p99", "max", "errors", "ticks/s"):
        table.add_column(column, justify="left" if column in ("path", "system") else "right")
    for row in results["rows"]:
        for key in ("soulfra", "bare"):
            side = row[key]
            ticks = f"{side['ticks_per_s']:,.0f}" if "ticks_per_s" in side else ""
            table.add_row(
                row["path"] if key == "soulfra" else "", key, f"{side['rps']:,.0f}", f"{side['p50_ms']:.1f} ms",
                f"{side['p99_ms']:.1f} ms", f"{side['max_ms']:.1f} ms", f"{side['errors']:,}", ticks,
            )  # fmt: skip
        table.add_row("", "ratio", f"{row['rps_ratio']:.3f}x", "", "", "", "", "", end_section=True)
    access = Table(title="the same server with access control on and off (the same requests, bearer token included)")
    for column in ("read", "path", "on req/s", "off req/s", "on p99", "off p99", "ratio"):
        access.add_column(column, justify="left" if column in ("read", "path") else "right")
    for label, row in results["access"].items():
        on, off = row["on"], row["off"]
        access.add_row(
            label, on["path"], f"{on['rps']:,.0f}", f"{off['rps']:,.0f}", f"{on['p99_ms']:.1f} ms",
            f"{off['p99_ms']:.1f} ms", f"{row['rps_ratio']:.3f}x",
        )  # fmt: skip
    pause = results["unified_snapshot"]
    targets = Table(title=f"targets (unified snapshot: {pause['agents']:,} agents, {pause['snapshots']} snapshots)")
    for column in ("target", "wanted", "measured", "verdict"):
        targets.add_column(column, justify="left" if column == "target" else "right")
    names = {
        "rps_ratio": "surface req/s over bare",
        "p99_ms": "surface p99 while ticking",
        "access_ratio": "reads with access control over without",
        "pause_ms": "snapshot pause",
    }
    units = {"rps_ratio": "x", "p99_ms": " ms", "access_ratio": "x", "pause_ms": " ms"}
    for key, target in results["targets"].items():
        ratio = key in ("rps_ratio", "access_ratio")
        worst = f"{target['worst']:.3f}{units[key]}" if ratio else f"{target['worst']:.2f}{units[key]}"
        if key == "pause_ms":
            worst = f"max {worst} (p50 {pause['pause_p50_ms']:.2f} ms)"
        targets.add_row(names[key], f"{target['target']}{units[key]}", worst, "pass" if target["pass"] else "FAIL")
    return Group(table, access, targets)


def api_command(
    seconds: Annotated[float, typer.Option(min=0.1, help="Measured seconds per endpoint and server.")] = 5.0,
    connections: Annotated[int, typer.Option(min=1, help="Concurrent connections (and workers).")] = 64,
    agents: Annotated[
        int, typer.Option(min=BUILTIN_AGENTS, help="Agents in the instance behind the API (3: the default world).")
    ] = BUILTIN_AGENTS,
    pause_agents: Annotated[
        int, typer.Option(min=BUILTIN_AGENTS, help="Agents in the instance whose unified snapshots are measured.")
    ] = 1000,
    snapshots: Annotated[int, typer.Option(min=1, help="Unified snapshots whose pause is measured.")] = 20,
    warmup: Annotated[float, typer.Option(min=0.0, help="Warm-up seconds before each measurement.")] = 1.0,
    out: Annotated[Path, typer.Option(help="Where to write the JSON results.")] = Path("benchmarks/api.json"),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Surface req/s and p99 with the runtime ticking, beside a bare Starlette route; the snapshot pause."""
    results = bench_api(
        seconds=seconds,
        connections=connections,
        agents=agents,
        out=out,
        snapshots=snapshots,
        warmup=warmup,
        pause_agents=pause_agents,
    )
    if as_json:
        typer.echo(json.dumps(results))
    else:
        Console().print(render(results))


if __name__ == "__main__":
    _main()
