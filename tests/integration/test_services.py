"""The services topology: the four platforms as four processes (``soulfra serve``) on local NATS and PostgreSQL,
driven from this process through a CrossPlatformBridge on its own NATS connection."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from soulfra.bus import Bus
from soulfra.durable import DurableWorld
from soulfra.errors import OverrideActiveError, SoulfraError
from soulfra.platforms.base import PLATFORMS
from soulfra.platforms.bridge import CrossPlatformBridge
from soulfra.store import SqlStore
from soulfra.world import DEFAULT_WORLD

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(90)]

NATS_URL = "nats://127.0.0.1:4222"
RATE = 20
DEADLINE_S = 20.0


Connection = Callable[[str], tuple[Sequence[str], Mapping[str, str]]]  # a platform's extra flags and variables


def anonymous(platform: str) -> tuple[Sequence[str], Mapping[str, str]]:
    return (), {}


class Services:
    """The four ``soulfra serve`` processes of one instance; output goes to files in tmp_path for diagnosis.
    ``connection`` gives each platform's NATS flags and environment (credentials, TLS files) beyond ``--nats``."""

    def __init__(
        self, instance_id: str, db_url: str, logs: Path, *, nats_url: str = NATS_URL, connection: Connection = anonymous
    ) -> None:
        self.instance_id = instance_id
        self.db_url = db_url
        self.logs = logs
        self.nats_url = nats_url
        self.connection = connection
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._files: list[IO[bytes]] = []

    def start(self, platform: str) -> None:
        out = (self.logs / f"{platform}.out").open("wb")
        err = (self.logs / f"{platform}.err").open("wb")
        self._files += [out, err]
        flags, variables = self.connection(platform)
        self.procs[platform] = subprocess.Popen(
            [sys.executable, "-m", "soulfra", "serve", platform, "--instance", self.instance_id,
             "--db", self.db_url, "--nats", self.nats_url, "--rate", str(RATE), *flags],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env={**os.environ, **variables},
        )  # fmt: skip

    def output(self, platform: str) -> str:
        return "".join(
            f"--- {platform}.{kind} ---\n{(self.logs / f'{platform}.{kind}').read_text(errors='replace')}"
            for kind in ("out", "err")
        )

    def check_alive(self) -> None:
        for platform, proc in self.procs.items():
            if proc.poll() is not None:
                pytest.fail(f"soulfra serve {platform} exited with {proc.returncode}\n{self.output(platform)}")

    def stop(self, timeout: float = 15.0) -> dict[str, int | None]:
        """SIGTERM each process by its pid and wait for it; the exit codes (None: it had to be killed)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        codes: dict[str, int | None] = {}
        deadline = time.monotonic() + timeout
        for platform, proc in self.procs.items():
            try:
                codes[platform] = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes[platform] = None
        for file in self._files:
            file.close()
        return codes


def new_instance(db_url: str) -> str:
    """A new instance of the default world in the database; its id."""
    instance_id = f"svc-{uuid.uuid4().hex[:12]}"
    store = SqlStore.open(db_url)
    try:
        DurableWorld.create(store, 0, DEFAULT_WORLD, instance_id=instance_id).close()
    finally:
        store.close()
    return instance_id


@pytest.fixture
def services(pg_url: str, tmp_path: Path) -> Iterator[Services]:
    running = Services(new_instance(pg_url), pg_url, tmp_path)
    try:
        yield running
    finally:
        running.stop()  # a test that failed before stopping them: make sure no process outlives it


async def wait_until(
    what: str, check: Callable[[], Awaitable[bool]], services: Services, deadline_s: float = DEADLINE_S
) -> None:
    """Poll ``check`` until it holds; a process that died or the deadline passing fails the test."""
    deadline = time.monotonic() + deadline_s
    while True:
        services.check_alive()
        try:
            if await check():
                return
        except SoulfraError:
            pass  # a platform not answering yet: keep polling until the deadline
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {deadline_s} s waiting until {what}")
        await asyncio.sleep(0.05)


async def runtime_tick(bridge: CrossPlatformBridge) -> int:
    return int((await bridge.fetch_from_runtime("status"))["tick"])


async def start_all(bridge: CrossPlatformBridge, services: Services) -> None:
    """The runtime first, so the surface and the mirror start from its view; then the other three."""
    services.start("runtime")

    async def runtime_ticking() -> bool:
        return await runtime_tick(bridge) >= 1

    await wait_until("the runtime answers and ticks", runtime_ticking, services)
    for platform in ("surface", "protocol", "mirror"):
        services.start(platform)

    async def all_answer() -> bool:
        report = await bridge.cross_platform_status()
        return all("error" not in report[p] for p in PLATFORMS)

    await wait_until("all four platforms answer status", all_answer, services, deadline_s=3 * DEADLINE_S)  # 4 starts
    report = await bridge.cross_platform_status()
    assert {report[p]["platform"] for p in PLATFORMS} == set(PLATFORMS)
    assert all(report[p]["instance"] == services.instance_id for p in PLATFORMS)
    assert report["runtime"]["rate"] == RATE
    assert report["runtime"]["state"] == "running"


async def check_whisper(bridge: CrossPlatformBridge, services: Services, pg_url: str) -> None:
    """A whisper: acknowledged, in the database's input log, then echoed by the surface after its tick."""
    ack = await bridge.send_whisper_to_runtime("the lanterns are lit", tone="gentle")
    assert ack.type == "whisper"
    store = SqlStore.open(pg_url)
    try:
        logged = {s.seq: s for s in store.inputs.read(services.instance_id)}
    finally:
        store.close()
    assert ack.seq in logged
    assert logged[ack.seq].tick == ack.tick
    assert logged[ack.seq].input.type == "whisper"

    async def echoed() -> bool:
        reply = await bridge.fetch_from_surface("echoes", {"agent": "*"})
        return any(e["kind"] == "whisper_heard" and e["text"] == "the lanterns are lit" for e in reply["echoes"])

    await wait_until("the surface echoes the whisper", echoed, services)
    echoes = (await bridge.fetch_from_surface("echoes", {"agent": "*"}))["echoes"]
    assert [e["tick"] for e in echoes if e["kind"] == "whisper_heard"] == [ack.tick]
    assert (await bridge.fetch_from_surface("status"))["tick"] > ack.tick


async def check_unified(bridge: CrossPlatformBridge) -> None:
    """A unified snapshot of all four, stored by the mirror."""
    unified = await bridge.unified_snapshot()
    assert len(unified.system_hash) == 64
    assert unified.conflicts == ()
    assert unified.pause_ns >= 0
    assert set(unified.views) == set(PLATFORMS)
    assert unified.views["runtime"]["tick"] == unified.tick
    assert unified.views["protocol"]["valid"] is True
    listed = (await bridge.fetch_from_mirror("unified_list"))["unified"]
    assert [(r["id"], r["system_hash"]) for r in listed] == [(unified.id, unified.system_hash)]


async def check_reflection(bridge: CrossPlatformBridge) -> None:
    """The reads behind the public reflection paths answer over NATS: agents' loop phases, the loop under way, the
    open threads (runtime), the loop witness and the anomalies (mirror)."""
    loop = await bridge.fetch_from_runtime("agent_loop", {"limit": 2})
    assert loop["population"] == sum(loop["phases"].values()) == len(DEFAULT_WORLD.agents)
    assert len(loop["agents"]) == 2
    current = await bridge.fetch_from_runtime("loop")
    assert current["phase"] in ("listening", "reflecting", "responding", "evolving")
    assert current["end"] - current["start"] == DEFAULT_WORLD.loop_length - 1
    threads = await bridge.fetch_from_runtime("threads")
    assert threads["open"] == len(threads["threads"])
    witness = await bridge.fetch_from_mirror("witness", {"limit": 4})
    assert set(witness) == {"tick", "sealed", "seeds"}
    assert "anomalies" in await bridge.fetch_from_mirror("anomalies")


async def check_override_and_resume(bridge: CrossPlatformBridge, services: Services) -> None:
    """The emergency override: no tick after it, every platform halted, inputs refused; resume lifts it."""
    override = await bridge.send_emergency_override("integration test")
    stopped_at = override.tick

    async def all_halted() -> bool:
        report = await bridge.cross_platform_status()
        return all(report[p].get("halted") is True for p in PLATFORMS)

    await wait_until("every platform reports halted", all_halted, services)
    seen = [await runtime_tick(bridge)]
    started = time.monotonic()
    while time.monotonic() - started < 0.5:  # 10 ticks' worth at 20 ticks/s
        await asyncio.sleep(0.1)
        seen.append(await runtime_tick(bridge))
    assert set(seen) == {stopped_at}, f"ticks ran during the override: {seen}"
    with pytest.raises(OverrideActiveError):
        await bridge.send_whisper_to_runtime("hush")
    report = await bridge.cross_platform_status()
    assert {report[p]["halted_at"] for p in PLATFORMS} == {stopped_at}

    # Resume: ticks again, no platform halted.
    await bridge.resume()

    async def resumed() -> bool:
        report = await bridge.cross_platform_status()
        halted = any(report[p].get("halted") is not False for p in PLATFORMS)
        return not halted and int(report["runtime"]["tick"]) > stopped_at + 2

    await wait_until("ticks restart and no platform is halted", resumed, services)


@pytest.mark.anyio
async def test_four_platform_processes_on_nats_and_postgres(nats_bus: Bus, services: Services, pg_url: str) -> None:
    bridge = CrossPlatformBridge(nats_bus, services.instance_id, timeout=5.0)
    await start_all(bridge, services)
    await check_whisper(bridge, services, pg_url)
    await check_unified(bridge)
    await check_reflection(bridge)
    await check_override_and_resume(bridge, services)

    # Stopped by SIGTERM, every process exits 0.
    services.check_alive()
    codes = await asyncio.to_thread(services.stop)
    assert codes == dict.fromkeys(PLATFORMS, 0), "\n".join(services.output(p) for p in PLATFORMS)


def _status_errors(report: dict[str, Any]) -> dict[str, Any]:
    return {p: report[p]["error"] for p in PLATFORMS if "error" in report[p]}


@pytest.mark.anyio
async def test_a_platform_that_is_not_running_is_reported_not_raised(nats_bus: Bus, services: Services) -> None:
    bridge = CrossPlatformBridge(nats_bus, services.instance_id, timeout=2.0)
    services.start("protocol")

    async def protocol_answers() -> bool:
        return "error" not in (await bridge.cross_platform_status())["protocol"]

    await wait_until("the protocol answers", protocol_answers, services)
    errors = _status_errors(await bridge.cross_platform_status())
    assert {p: e["code"] for p, e in errors.items()} == dict.fromkeys(("runtime", "surface", "mirror"), "no_responders")
    codes = await asyncio.to_thread(services.stop)
    assert codes == {"protocol": 0}, services.output("protocol")
