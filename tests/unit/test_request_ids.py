"""A request id is followed from the HTTP request to the runtime: the API takes a client's ``X-Request-ID`` (or makes
one), audits and logs the request under it and sends it back; the bridge and the mirror send the id bound in their
context on the bus as ``_rid``; a platform binds it (with the identity of ``_by`` and its instance) while it handles
the request, so the runtime's lines about an input (accepted, then its tick committed) name the request it came in."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from soulfra.bus import InMemoryBus
from soulfra.logs import JsonFormatter, bind
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.meta.service import LocalPuppetMaster, MetaServer, meta_subject
from soulfra.platforms.base import RID, encode, op_subject
from soulfra.platforms.bridge import CrossPlatformBridge
from soulfra.platforms.instance import FourPlatformInstance, InstanceSettings
from soulfra.security.audit import AuditRecorder
from soulfra.security.identity import Identity
from soulfra.store import InMemoryStore
from soulfra.world import DEFAULT_WORLD

from .support import api_in_process, four_platforms

pytestmark = pytest.mark.anyio

Lines = Callable[[], list[dict[str, Any]]]
ALICE = {"name": "alice", "role": "operator"}
COMMIT_EVERY = 20  # the default durability settings commit a tick at most this many ticks after it ran (a snapshot)


@pytest.fixture
def lines() -> Iterator[Lines]:
    """The JSON lines Soulfra's loggers write from here on, parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("soulfra")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
async def running(anyio_backend: str) -> AsyncIterator[FourPlatformInstance]:
    async with four_platforms("w") as instance:
        yield instance


async def _raw(instance: FourPlatformInstance, op: str, body: dict[str, Any]) -> dict[str, Any]:
    """A request of any bus client's making, sent outside every binding of this process."""
    reply: dict[str, Any] = json.loads(
        await instance.bus.request(op_subject("w", "runtime", op), encode(body), timeout=5)
    )
    return reply


async def test_the_bridge_sends_the_bound_request_id_and_none_outside_a_binding(anyio_backend: str) -> None:
    bus = InMemoryBus()
    sent: list[dict[str, Any]] = []

    async def status(payload: bytes) -> bytes:
        sent.append(json.loads(payload))
        return b"{}"

    await bus.serve(op_subject("w", "runtime", "status"), status)
    bridge = CrossPlatformBridge(bus, "w")
    with bind(request_id="abc123"):
        await bridge.request("runtime", "status", {"verbose": True})
    await bridge.request("runtime", "status")
    await bus.close()
    assert [body.get(RID) for body in sent] == ["abc123", None]
    assert sent[0]["verbose"] is True and sent[0]["_by"] == {"name": "local", "role": "admin"}


async def test_a_whisper_is_followed_by_its_request_id_from_acceptance_to_the_commit_of_its_tick(
    running: FourPlatformInstance, lines: Lines
) -> None:
    ack = await _raw(running, "whisper", {"text": "hello", RID: "abc123", "_by": ALICE})
    with bind(
        request_id="launcher", identity="bob"
    ):  # the tick loop's lines are not about the request that launched it
        await running.start_autonomous_operations(ticks=ack["tick"] + COMMIT_EVERY + 1)
    handled = [line for line in lines() if line.get("request_id") == "abc123"]
    assert [line["logger"] for line in handled] == [
        "soulfra.platforms.base", "soulfra.platforms.runtime_log", "soulfra.platforms.runtime_log",
    ]  # fmt: skip
    base, accepted, committed = handled
    assert base["event"] == "runtime.whisper of w by alice (operator)"
    assert (base["identity"], base["instance"]) == ("alice", "w")
    assert (accepted["seq"], accepted["tick"], accepted["type"], accepted["identity"]) == (
        ack["seq"], ack["tick"], "whisper", "alice"
    )  # fmt: skip
    assert accepted["event"] == f"accepted input {ack['seq']} (whisper) of w for tick {ack['tick']}"
    assert (committed["tick"], committed["seqs"], committed["request_ids"]) == (ack["tick"], [ack["seq"]], ["abc123"])
    assert committed["event"] == f"tick {ack['tick']} of w committed with inputs {ack['seq']} (abc123)"
    assert "identity" not in committed  # the loop's own line: no request's identity bound there
    commits = [line for line in lines() if "committed with inputs" in line["event"]]
    assert commits == [committed]  # one line for the one tick that applied an input; none for the other ticks
    assert all(line.get("request_id") != "launcher" for line in lines())


async def test_one_committed_tick_names_every_input_it_applied_and_their_requests(
    running: FourPlatformInstance, lines: Lines
) -> None:
    first = await _raw(running, "whisper", {"text": "one", RID: "r1", "_by": ALICE})
    second = await _raw(
        running, "submit", {"inputs": [{"type": "whisper", "text": "two", "target": "*"}], "_by": ALICE}
    )
    third = await _raw(running, "whisper", {"text": "three", RID: "r2", "_by": ALICE})
    assert first["tick"] == second["acks"][0]["tick"] == third["tick"] == 0
    await running.start_autonomous_operations(ticks=COMMIT_EVERY + 1)
    [committed] = [line for line in lines() if "committed with inputs" in line["event"]]
    seqs = [first["seq"], second["acks"][0]["seq"], third["seq"]]
    assert (committed["tick"], committed["seqs"], committed["request_ids"]) == (0, seqs, ["r1", "r2"])
    assert "request_id" not in committed  # two requests: named in request_ids, neither is the line's own
    assert committed["event"] == f"tick 0 of w committed with inputs {seqs[0]} (r1), {seqs[1]} (no request id), " + (
        f"{seqs[2]} (r2)"
    )


async def test_a_request_id_that_is_not_a_safe_token_is_left_out(running: FourPlatformInstance, lines: Lines) -> None:
    await _raw(running, "whisper", {"text": "hello", RID: "forged\nline", "_by": ALICE})
    [accepted] = [line for line in lines() if line["event"].startswith("accepted input")]
    assert "request_id" not in accepted
    assert accepted["identity"] == "alice"


async def test_the_mirror_passes_the_request_id_on_to_the_runtime(
    running: FourPlatformInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, dict[str, Any]]] = []
    request = running.bus.request

    async def spy(subject: str, payload: bytes, *, timeout: float) -> bytes:
        asked.append((subject, json.loads(payload)))
        return await request(subject, payload, timeout=timeout)

    monkeypatch.setattr(running.bus, "request", spy)
    with bind(request_id="u1"):
        await running.bridge.unified_snapshot()
    runtime_ops = {subject.rsplit(".", 1)[1]: body for subject, body in asked if ".runtime." in subject}
    assert runtime_ops["capture"][RID] == runtime_ops["save_capture"][RID] == "u1"


async def test_the_api_logs_a_request_under_the_clients_request_id_or_one_of_its_own(
    tmp_path: Path, anyio_backend: str, lines: Lines
) -> None:
    settings = EngineSettings(instance=InstanceSettings(rate=None))
    async with api_in_process(tmp_path, "a", settings) as (_app, engine, admin):
        await engine.create_instance(seed=0, spec=DEFAULT_WORLD, instance_id="a")
        given = await admin.post("/api/instances/a/whispers", json={"text": "hi"}, headers={"x-request-id": "abc123"})
        made = await admin.post("/api/instances/a/whispers", json={"text": "hi"}, headers={"x-request-id": "a b"})
    assert (given.status_code, made.status_code) == (202, 202), (given.text, made.text)
    assert given.headers["x-request-id"] == "abc123"
    own = made.headers["x-request-id"]
    assert own != "a b"
    for rid in ("abc123", own):
        handled = [line for line in lines() if line.get("request_id") == rid]
        by_logger = {line["logger"]: line for line in handled if "identity" in line}  # the request's own lines
        assert set(by_logger) == {"soulfra.platforms.base", "soulfra.platforms.runtime_log", "soulfra.security.audit"}
        audit, accepted = by_logger["soulfra.security.audit"], by_logger["soulfra.platforms.runtime_log"]
        assert audit["event"].startswith("audit: POST /api/instances/{instance_id}/whispers by test-admin-")
        assert audit["event"].endswith(" (admin): ok")
        assert audit["instance"] == accepted["instance"] == "a"
        assert audit["identity"] == accepted["identity"] == by_logger["soulfra.platforms.base"]["identity"]
        assert accepted["event"].startswith("accepted input ")


async def test_a_god_command_sent_to_the_puppet_master_on_the_bus_reaches_the_platforms_under_its_request_id(
    anyio_backend: str, lines: Lines
) -> None:
    store, bus = InMemoryStore(), InMemoryBus()
    engine = PuppetMasterEngine(
        store, bus, EngineSettings(instance=InstanceSettings(rate=None)), recorder=AuditRecorder(store)
    )
    try:
        await engine.create_instance(seed=0, spec=DEFAULT_WORLD, instance_id="a")
        server = MetaServer(LocalPuppetMaster(engine, "a"), bus)
        await server.start()
        alice = Identity(name="alice", role="admin")
        body = {"command": {"type": "FREEZE_TIME", "instances": ["a"]}, "_by": alice.to_json(), RID: "abc123"}
        await bus.request(meta_subject("god"), encode(body), timeout=5)  # as `soulfra serve api` sends it
        await server.stop()
    finally:
        await engine.close()
        await bus.close()
        store.close()
    [paused] = [line for line in lines() if line["event"] == "runtime.pause of a by alice (admin)"]
    assert (paused["request_id"], paused["identity"], paused["instance"]) == ("abc123", "alice", "a")
