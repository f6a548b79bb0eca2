"""The typed bus replies write the runtime's JSON byte for byte as it always was, and read it back whole."""

from __future__ import annotations

import pytest

from soulfra.meta import results
from soulfra.platforms import replies
from soulfra.platforms.base import decode, encode
from soulfra.platforms.replies import InputAck, InstanceStatus, Restored, RunState, UnifiedRecord


@pytest.mark.parametrize(
    ("state", "wire"),
    [
        (RunState(instance="i-1", tick=7, paused=True), b'{"instance":"i-1","paused":true,"tick":7}'),
        (
            RunState(instance="i-1", tick=8, paused=False, overridden=False),
            b'{"instance":"i-1","paused":false,"overridden":false,"tick":8}',
        ),
        (RunState(instance="i-1", tick=9, overridden=True), b'{"instance":"i-1","overridden":true,"tick":9}'),
    ],
    ids=["pause", "resume", "override"],
)
def test_a_run_state_keeps_the_runtimes_bytes_and_reads_them_back(state: RunState, wire: bytes) -> None:
    assert encode(state.to_json()) == wire
    assert RunState.from_json(decode(wire)) == state


def test_an_input_ack_keeps_its_bytes_and_is_the_one_the_results_use() -> None:
    ack = InputAck(seq=3, tick=12, type="whisper")
    assert encode(ack.to_json()) == b'{"seq":3,"tick":12,"type":"whisper"}'
    assert InputAck.from_json(decode(encode(ack.to_json()))) == ack
    assert results.InputAck is InputAck  # one class, defined with the replies and re-exported by the results


def test_status_and_restore_turn_into_json_with_every_field() -> None:
    status = InstanceStatus(instance="i-1", seed=5, tick=4, platforms={"runtime": {"state": "paused"}})
    assert status.to_json() == {"instance": "i-1", "seed": 5, "tick": 4, "platforms": {"runtime": {"state": "paused"}}}
    restored = Restored(snapshot=2, from_tick=20, tick=45, state_hash="ab", matches_live=True)
    assert restored.to_json() == {
        "snapshot": 2, "from_tick": 20, "tick": 45, "state_hash": "ab", "matches_live": True,
    }  # fmt: skip


def test_every_reply_is_frozen() -> None:
    ack = InputAck(seq=1, tick=0, type="mark")
    with pytest.raises(AttributeError):
        ack.seq = 2  # type: ignore[misc]
    assert sorted(replies.__all__) == ["InputAck", "InstanceStatus", "Restored", "RunState", "UnifiedRecord"]


def test_a_unified_record_gives_back_the_mirrors_json_in_its_order() -> None:
    wire = {
        "tick": 3, "system_hash": "f" * 64, "merged": {"tick": 3}, "conflicts": [], "views": {"runtime": {"tick": 3}},
        "instance": "i-1", "snapshot": {"id": 4, "tick": 3}, "pause_ns": 10, "took_ns": 20, "id": 1,
    }  # fmt: skip
    record = UnifiedRecord.from_json(wire)
    assert (record.id, record.tick, record.pause_ns, record.conflicts) == (1, 3, 10, ())
    assert encode(record.to_json()) == encode(wire)
