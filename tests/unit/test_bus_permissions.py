"""The NATS permissions of the services topology: docs/nats-security.md shows exactly what ``nats_authorization()``
renders, and the four platforms, each on a bus that checks its role's permissions, never touch a subject the block
does not grant them while they tick, take a whisper, take a unified snapshot, and go through an override and a resume.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from soulfra.bus import Bus, Handler, InMemoryBus, Responder, Subscription
from soulfra.bus.permissions import ROLES, Permissions, nats_authorization, password_variable, role_permissions
from soulfra.durable import DurableWorld
from soulfra.platforms.base import PLATFORMS, Platform, control_subject, events_subject, op_subject
from soulfra.platforms.bridge import CrossPlatformBridge
from soulfra.platforms.mirror import MirrorPlatform
from soulfra.platforms.protocol import ProtocolPlatform
from soulfra.platforms.runtime import RuntimePlatform
from soulfra.platforms.surface import SurfacePlatform
from soulfra.store import InMemoryStore
from soulfra.world import DEFAULT_WORLD

from .support import wait_until

DOC = Path(__file__).parents[2] / "docs" / "nats-security.md"
BLOCK = re.compile(r"<!-- nats_authorization\(\) -->\n```conf\n(.*?)```", re.DOTALL)


def test_the_documented_block_is_the_rendered_one() -> None:
    found = BLOCK.search(DOC.read_text(encoding="utf-8"))
    assert found is not None, "docs/nats-security.md lost its nats_authorization() block"
    assert found.group(1) == nats_authorization()


def test_the_block_names_each_role_once_with_its_password_variable() -> None:
    text = nats_authorization()
    for role in ROLES:
        assert text.count(f'user: "soulfra-{role}"') == 1
        assert f"password: ${password_variable(role)}\n" in text
    assert 'password: "literal"' in nats_authorization({"control": '"literal"'})


def test_one_instance_only() -> None:
    allowed = role_permissions("world-0")["surface"]
    assert allowed.may_publish(op_subject("world-0", "runtime", "view"))
    assert not allowed.may_publish(op_subject("world-1", "runtime", "view"))
    assert "soulfra.world-0.surface.*" in nats_authorization(instance="world-0")
    assert "soulfra.*." not in nats_authorization(instance="world-0")


@pytest.mark.parametrize(
    ("role", "subject"),
    [
        ("surface", "soulfra.w.runtime.whisper"),
        ("surface", "soulfra.w.runtime.pause"),
        ("mirror", "soulfra.w.runtime.whisper"),
        ("protocol", "soulfra.w.runtime.view"),
        ("surface", "soulfra.w.events"),  # a forged tick
        ("control", "soulfra.w.control"),  # a forged override broadcast
        ("mirror", "soulfra.w.control"),
        ("runtime", "soulfra.w.mirror.unified"),
    ],
)
def test_what_a_role_may_not_send(role: str, subject: str) -> None:
    assert not role_permissions()[role].may_publish(subject)


def test_only_the_platforms_and_the_puppet_master_answer_requests() -> None:
    assert {role for role, allowed in role_permissions().items() if allowed.allow_responses} == {*PLATFORMS, "meta"}


def test_the_puppet_master_may_do_what_the_platforms_and_control_do_and_serve_its_calls() -> None:
    roles = role_permissions()
    meta = roles["meta"]
    for role in (*PLATFORMS, "control"):
        assert set(roles[role].publish) <= set(meta.publish), role
        assert set(roles[role].subscribe) <= set(meta.subscribe), role
    assert meta.may_subscribe("soulfra-meta.*") and roles["control"].may_publish("soulfra-meta.god")
    assert not any(roles[role].may_subscribe("soulfra-meta.*") for role in (*PLATFORMS, "control"))


class RoleBus:
    """A bus that records every subject a role touches that its NATS permissions would refuse, then passes the call
    on to the shared in-memory bus (so the platforms work exactly as they would on NATS)."""

    def __init__(self, inner: Bus, role: str, refused: list[str]) -> None:
        self.inner = inner
        self.role = role
        self.allowed: Permissions = role_permissions()[role]
        self.refused = refused
        self.used: set[str] = set()

    def _check(self, action: str, subject: str, ok: bool) -> None:
        self.used.add(f"{action} {subject}")
        if not ok:
            self.refused.append(f"{self.role} may not {action} {subject}")

    async def publish(self, subject: str, payload: bytes) -> None:
        self._check("publish", subject, self.allowed.may_publish(subject))
        await self.inner.publish(subject, payload)

    async def subscribe(self, subject: str, handler: Handler) -> Subscription:
        self._check("subscribe", subject, self.allowed.may_subscribe(subject))
        return await self.inner.subscribe(subject, handler)

    async def serve(self, subject: str, responder: Responder) -> Subscription:
        self._check("serve", subject, self.allowed.may_subscribe(subject) and self.allowed.allow_responses)
        return await self.inner.serve(subject, responder)

    async def request(self, subject: str, payload: bytes, *, timeout: float) -> bytes:
        self._check("request", subject, self.allowed.may_publish(subject))
        return await self.inner.request(subject, payload, timeout=timeout)

    async def close(self) -> None:
        """The shared bus is closed by its owner."""


@pytest.fixture
async def shared_bus(anyio_backend: str) -> AsyncIterator[InMemoryBus]:
    bus = InMemoryBus()
    try:
        yield bus
    finally:
        await bus.close()


@pytest.mark.anyio
async def test_the_platforms_stay_within_their_permissions(shared_bus: InMemoryBus) -> None:
    refused: list[str] = []
    buses = {role: RoleBus(shared_bus, role, refused) for role in ROLES}
    store = InMemoryStore()
    world = DurableWorld.create(store, 0, DEFAULT_WORLD, instance_id="w")
    runtime = RuntimePlatform(world, buses["runtime"], rate=200.0)
    others: list[Platform] = [
        SurfacePlatform("w", buses["surface"]),
        ProtocolPlatform("w", buses["protocol"], store),
        MirrorPlatform("w", buses["mirror"], store),
    ]
    bridge = CrossPlatformBridge(buses["control"], "w", timeout=5.0)
    try:
        await runtime.start()
        runtime.launch()
        for platform in others:
            await platform.start()

        async def ticked(at_least: int) -> bool:
            return int((await bridge.fetch_from_runtime("status"))["tick"]) >= at_least

        await wait_until("the runtime ticks", lambda: ticked(3))
        report = await bridge.cross_platform_status()
        assert all("error" not in report[p] for p in PLATFORMS), report
        ack = await bridge.send_whisper_to_runtime("within bounds")
        await wait_until("the whisper's tick has passed", lambda: ticked(ack.tick + 2))
        await bridge.fetch_from_surface("echoes", {"agent": "*"})
        await bridge.unified_snapshot()
        await bridge.send_emergency_override("permissions test")
        await bridge.resume()
        await wait_until("ticks resume", lambda: ticked(ack.tick + 4))
    finally:
        for platform in others:
            await platform.stop()
        await runtime.shutdown()
        world.close()
        store.close()
    assert refused == []
    # The check saw the traffic that matters: the platforms' ops, the events, the override broadcast, the mirror's asks.
    assert f"serve {op_subject('w', 'runtime', 'whisper')}" in buses["runtime"].used
    assert f"publish {events_subject('w')}" in buses["runtime"].used
    assert f"publish {control_subject('w')}" in buses["runtime"].used
    assert f"request {op_subject('w', 'protocol', 'validate')}" in buses["mirror"].used
    assert f"publish {events_subject('w')}.mirror" in buses["mirror"].used
    assert f"request {op_subject('w', 'runtime', 'view')}" in buses["surface"].used
    assert f"subscribe {control_subject('w')}" in buses["protocol"].used
