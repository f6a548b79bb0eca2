"""Every command that crosses the bus carries the identity that issued it: a request that changes a world without
``_by`` is refused (``AuthenticationError``, over the bus as its code) and nothing is stored; with it, it is taken
and the platform's log names who. The bridge takes the identity of the action in progress, else its own; reads
need none. A scheduled unified snapshot is asked for by the mirror itself."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import pytest

from soulfra.errors import AuthenticationError
from soulfra.platforms.base import op_subject
from soulfra.platforms.bridge import CrossPlatformBridge
from soulfra.platforms.instance import FourPlatformInstance
from soulfra.security.audit import AuditRecorder
from soulfra.security.identity import Identity

from .support import four_platforms

pytestmark = pytest.mark.anyio

ALICE = Identity(name="alice", role="operator")
WHISPER: dict[str, object] = {"text": "let me in", "target": "*"}


@pytest.fixture
async def running(anyio_backend: str) -> AsyncIterator[FourPlatformInstance]:
    async with four_platforms("w") as instance:
        yield instance


async def _raw(instance: FourPlatformInstance, platform: str, op: str, body: dict[str, object]) -> dict[str, object]:
    """What any client of the bus can send: a request of its own making."""
    reply = await instance.bus.request(op_subject("w", platform, op), json.dumps(body).encode(), timeout=5.0)
    decoded: dict[str, object] = json.loads(reply)
    return decoded


async def test_a_whisper_without_an_identity_is_refused_and_not_stored(running: FourPlatformInstance) -> None:
    requests: list[tuple[str, dict[str, object]]] = [
        ("whisper", WHISPER), ("submit", {"inputs": [{"type": "whisper", **WHISPER}]}), ("pause", {}),
    ]  # fmt: skip
    for op, body in requests:
        with pytest.raises(AuthenticationError, match="names no identity"):
            await _raw(running, "runtime", op, body)
    for forged in ({"name": "alice"}, {"name": "", "role": "admin"}, "alice"):
        with pytest.raises(AuthenticationError):
            await _raw(running, "runtime", "whisper", {**WHISPER, "_by": forged})
    assert running.store.inputs.count("w") == 0
    assert not running.runtime.paused
    with pytest.raises(AuthenticationError):
        await _raw(running, "mirror", "unified", {})


async def test_a_whisper_naming_who_sent_it_is_taken_and_logged(
    running: FourPlatformInstance, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="soulfra.platforms.base"):
        ack = await _raw(running, "runtime", "whisper", {**WHISPER, "_by": {"name": "alice", "role": "operator"}})
    assert ack["seq"] == 1 and running.store.inputs.count("w") == 1
    assert "runtime.whisper of w by alice (operator)" in caplog.text


async def test_reads_need_no_identity(running: FourPlatformInstance) -> None:
    assert (await _raw(running, "runtime", "status", {}))["instance"] == "w"
    assert "tick" in await _raw(running, "surface", "status", {})


async def test_the_bridge_sends_the_identity_of_the_action_in_progress(
    running: FourPlatformInstance, caplog: pytest.LogCaptureFixture
) -> None:
    nobody = CrossPlatformBridge(running.bus, "w", identity=None)
    with pytest.raises(AuthenticationError):
        await nobody.send_whisper_to_runtime("who am I?")
    recorder = AuditRecorder(running.store)
    with caplog.at_level(logging.INFO, logger="soulfra.platforms.base"):
        async with recorder.acting(ALICE, "POST /api/instances/w/whispers"):
            await nobody.send_whisper_to_runtime("it is alice")
        await running.bridge.pause()  # outside any action: the bridge's own identity, this process
    assert "runtime.whisper of w by alice (operator)" in caplog.text
    assert "runtime.pause of w by local (admin)" in caplog.text
    assert running.store.inputs.count("w") == 1


async def test_a_unified_snapshot_passes_its_identity_on_and_a_scheduled_one_is_the_mirrors(
    running: FourPlatformInstance, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="soulfra.platforms.base"):
        async with AuditRecorder(running.store).acting(ALICE, "POST /api/instances/w/unified"):
            await running.bridge.unified_snapshot()
        await running.mirror.take_unified({"reason": "cycle"})
    assert "runtime.save_capture of w by alice (operator)" in caplog.text
    assert "runtime.save_capture of w by mirror (operator)" in caplog.text
