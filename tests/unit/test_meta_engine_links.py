"""CROSS_INSTANCE_COMMUNICATION: linked instances whisper and post to each other, and unlinked ones cannot."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from soulfra.errors import (
    InputError,
    LineageError,
)
from soulfra.meta.commands import parse_command
from soulfra.meta.engine import PuppetMasterEngine
from soulfra.world import (
    CrossPost,
    Whisper,
)

from .meta_engine_support import (
    create,
    freeze,
    god,
    live_state,
    logged,
    marks,
    settle,
    thaw,
    traces,
)
from .support import wait_until

DEADLINE_S = 10.0


# -- CROSS_INSTANCE_COMMUNICATION --------------------------------------------------------------------------------


async def hold_with_an_open_thread(engine: PuppetMasterEngine, instance_id: str) -> tuple[int, int]:
    """Freeze the instance at a tick where it has an open thread; (tick, thread id)."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        await wait_until(f"{instance_id} opens a thread", lambda: bool(live_state(engine, instance_id).threads))
        at = (await freeze(engine, instance_id))[instance_id]
        if live_state(engine, instance_id).threads:
            return at, min(live_state(engine, instance_id).threads)
        await thaw(engine, instance_id)
    pytest.fail(f"{instance_id} never stood still with a thread open")


@pytest.mark.anyio
async def test_linked_instances_whisper_and_post_to_each_other(engine: PuppetMasterEngine) -> None:
    await create(engine, "here")
    await create(engine, "there", seed=8)
    hello = {"type": "CROSS_INSTANCE_COMMUNICATION", "source": "here", "target": "there", "agent": "arty"}
    whisper_cmd = {**hello, "action": "whisper", "to": "cal-riven", "text": "hello across", "tone": "playful"}
    with pytest.raises(LineageError, match="not linked"):
        await god(engine, whisper_cmd)
    with pytest.raises(LineageError, match="not linked"):
        await god(engine, {**hello, "action": "post", "thread": 1, "text": "anyone?"})

    linked = await god(engine, {"type": "CROSS_INSTANCE_COMMUNICATION", "action": "link", "source": "here",
                                "target": "there"})  # fmt: skip
    assert linked["links"] == ["there"]
    assert engine.describe("there")["links"] == ["here"]
    for end in ("here", "there"):
        assert [c for c, _ in marks(engine, end)] == ["CROSS_INSTANCE_COMMUNICATION"]

    at, thread = await hold_with_an_open_thread(engine, "there")
    heard = await god(engine, whisper_cmd)
    posted = await god(engine, {**hello, "action": "post", "thread": thread, "text": "a visitor's word"})
    assert (heard["ack"]["tick"], heard["ack"]["type"]) == (at, "whisper")
    assert (posted["ack"]["tick"], posted["ack"]["type"]) == (at, "crosspost")
    assert logged(engine, "there")[-2:] == [
        Whisper(tick=at, target="cal-riven", text="here/arty: hello across", tone="playful"),
        CrossPost(tick=at, origin="here/arty", thread=thread, text="a visitor's word"),
    ]
    closed = max(live_state(engine, "there").threads) + 1000
    with pytest.raises(InputError, match="not open"):
        await god(engine, {**hello, "action": "post", "thread": closed, "text": "into the void"})
    with pytest.raises(InputError, match="nobody"):
        await god(engine, {**whisper_cmd, "to": "nobody"})
    with pytest.raises(InputError, match="nobody"):
        await god(engine, {**whisper_cmd, "agent": "nobody"})

    await thaw(engine, "there")
    await settle(engine, ["there"], at + 1)
    visits = [(t, d["origin"], d["thread"], d["text"]) for t, d in traces(engine, "there", "visitor_posted")]
    assert visits == [(at, "here/arty", thread, "a visitor's word")]
    whispers = [(t, d["agent"], d["text"]) for t, d in traces(engine, "there", "whisper_heard")]
    assert whispers == [(at, "cal-riven", "here/arty: hello across")]
    assert traces(engine, "there", "input_rejected") == []

    unlinked = await god(engine, {"type": "CROSS_INSTANCE_COMMUNICATION", "action": "unlink", "source": "there",
                                  "target": "here"})  # fmt: skip
    assert unlinked["removed"] is True
    with pytest.raises(LineageError, match="not linked"):
        await god(engine, whisper_cmd)
    with pytest.raises(ValidationError, match="itself"):
        parse_command({"type": "CROSS_INSTANCE_COMMUNICATION", "action": "link", "source": "here", "target": "here"})
