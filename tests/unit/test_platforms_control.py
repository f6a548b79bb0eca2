"""The four platforms in one process over the in-memory bus: override, pause and resume, the bridge's typed
errors, and a tick that cannot be stored stopping the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from soulfra.errors import (
    BusTimeoutError,
    NoRespondersError,
    OverrideActiveError,
    StorageError,
)
from soulfra.platforms.base import PLATFORMS, op_subject
from soulfra.platforms.bridge import CrossPlatformBridge
from soulfra.store.ports import Store

from .platforms_support import Running, held
from .support import wait_until

# -- override, pause, resume -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_override_stops_every_platform_refuses_inputs_and_resume_clears(
    make: Callable[..., Awaitable[Running]],
) -> None:
    run = await make()
    run.instance.start_autonomous_operations()
    await wait_until("the world has ticked", held(lambda: run.tick >= 5))

    reply = await run.bridge.send_emergency_override("unit test")
    stopped_at = reply.tick
    assert reply.overridden is True
    assert run.tick == stopped_at  # no tick ran after the override returned

    async def all_halted() -> bool:
        report = await run.bridge.cross_platform_status()
        return all(report[p].get("halted") is True for p in PLATFORMS)

    await wait_until("every platform reports halted", all_halted)
    report = await run.bridge.cross_platform_status()
    assert {report[p]["halted_at"] for p in PLATFORMS} == {stopped_at}
    assert report["runtime"]["state"] == "overridden"
    assert run.tick == stopped_at

    with pytest.raises(OverrideActiveError):
        await run.bridge.send_whisper_to_runtime("are you there?")
    with pytest.raises(OverrideActiveError):
        await run.bridge.fetch_from_runtime("submit", {"inputs": [{"type": "whisper", "target": "*", "text": "x"}]})
    with pytest.raises(OverrideActiveError):
        await run.bridge.fetch_from_protocol("validate", {"subject": "export"})
    with pytest.raises(OverrideActiveError):
        await run.bridge.unified_snapshot()
    assert run.tick == stopped_at

    resumed = await run.bridge.resume()
    assert resumed.overridden is False
    await wait_until("ticks restart after resume", held(lambda: run.tick > stopped_at))

    async def none_halted() -> bool:
        report = await run.bridge.cross_platform_status()
        return all(report[p].get("halted") is False for p in PLATFORMS)

    await wait_until("no platform reports halted", none_halted)
    ack = await run.bridge.send_whisper_to_runtime("welcome back")
    assert ack.seq >= 1


@pytest.mark.anyio
async def test_pause_stops_ticks_of_the_runtime_only_and_resume_restarts_them(
    make: Callable[..., Awaitable[Running]],
) -> None:
    run = await make()
    run.instance.start_autonomous_operations()
    await wait_until("the world has ticked", held(lambda: run.tick >= 3))
    paused = await run.instance.pause()
    assert paused.paused is True
    at = paused.tick
    assert run.tick == at
    status = await run.instance.status()
    assert status.platforms["runtime"]["state"] == "paused"
    assert all(status.platforms[p]["halted"] is False for p in PLATFORMS)
    ack = await run.bridge.send_whisper_to_runtime("while paused")  # a pause still takes inputs
    assert ack.tick == at
    assert run.tick == at
    await run.instance.resume()
    await wait_until("ticks restart", held(lambda: run.tick > at + 2))


# -- the bridge's typed errors -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_bridge_raises_typed_errors(make: Callable[..., Awaitable[Running]]) -> None:
    run = await make()
    await run.instance.surface.stop()
    with pytest.raises(NoRespondersError):
        await run.bridge.fetch_from_surface("status")
    report = await run.bridge.cross_platform_status()
    assert report["surface"]["error"]["code"] == "no_responders"
    assert report["runtime"]["platform"] == "runtime"

    never = asyncio.Event()

    async def slow(payload: bytes) -> bytes:
        await never.wait()
        return b"{}"

    bus = run.instance.bus
    sub = await bus.serve(op_subject(run.id, "surface", "status"), slow)
    slow_bridge = CrossPlatformBridge(bus, run.id, timeout=0.2)
    with pytest.raises(BusTimeoutError):
        await slow_bridge.fetch_from_surface("status")
    report = await slow_bridge.cross_platform_status()
    assert report["surface"]["error"]["code"] == "bus_timeout"
    await sub.unsubscribe()

    await run.bridge.send_emergency_override()
    with pytest.raises(OverrideActiveError) as raised:
        await run.bridge.send_whisper_to_runtime("hush")
    assert "resume it first" in raised.value.detail
    await run.bridge.resume()


# -- failures -----------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_tick_that_cannot_be_stored_stops_the_loop_and_says_so(
    make: Callable[..., Awaitable[Running]], store: Store
) -> None:
    run = await make(rate=200)
    world = run.instance.world
    runtime = run.instance.runtime
    real_inputs_due = world.inputs_due
    calls = 0

    def failing_inputs_due() -> list[Any]:  # the runtime reads the stored inputs due first in every tick
        nonlocal calls
        calls += 1
        if calls == 15:
            raise StorageError("database is locked")
        return real_inputs_due()

    world.inputs_due = failing_inputs_due  # type: ignore[method-assign]
    run.instance.start_autonomous_operations()
    await wait_until("the loop to stop", held(lambda: runtime.failure is not None))
    status = await run.bridge.fetch_from_runtime("status")
    assert (status["state"], status["tick"]) == ("failed", 14)
    assert status["failure"] == {
        "tick": 14,
        "type": "StorageError",
        "message": "database is locked",
        "code": "storage_error",
    }
    await run.instance.close()  # does not raise, and flushes what was ticked
    assert store.instances.get(run.id).head_tick == 14
