"""The bus's JSON (``soulfra.platforms.base``): what a platform sends is what the other reads."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from soulfra.errors import InputError
from soulfra.platforms.base import decode, decode_tick, encode
from soulfra.world import World
from soulfra.world.events import event_to_json

Reader = Callable[[bytes], dict[str, Any]]
READERS = [decode, decode_tick]


@pytest.mark.parametrize("read", READERS)
def test_a_message_comes_back_as_it_was_sent_with_its_text_unescaped(read: Reader) -> None:
    body = {"narrative": "tides — rising", "agent": "écho", "tick": 2**63 - 1, "seed": 2**64 - 1, "ok": None}
    wire = encode(body)
    assert "tides — rising".encode() in wire  # UTF-8, not \u escapes
    assert read(wire) == body
    assert json.loads(wire) == body  # any JSON reader takes it


def test_a_ticks_events_read_back_as_json_reads_them() -> None:
    world = World.create(5, agents=7)
    for _ in range(60):
        wire = encode({"tick": world.tick, "events": [event_to_json(e) for e in world.step()]})
        assert decode_tick(wire) == json.loads(wire)


def test_integer_keys_are_sent_as_strings_as_json_sends_them() -> None:
    assert decode(encode({7: "ritual", "n": [1, 2]})) == {"7": "ritual", "n": [1, 2]}


def test_an_integer_past_64_bits_is_sent_and_read_exactly_in_a_request() -> None:
    wire = encode({"n": 2**70})
    assert wire == b'{"n":1180591620717411303424}'
    assert decode(wire) == {"n": 2**70}


def test_a_request_is_read_as_json_reads_it() -> None:
    assert math.isnan(decode(b'{"x": NaN}')["x"])


@pytest.mark.parametrize("read", READERS)
@pytest.mark.parametrize(
    ("payload", "says"),
    [(b"{bad", "is not JSON"), (b"\xff\xfe", "is not JSON"), (b"[1, 2]", "must be a JSON object")],
)
def test_what_is_not_a_json_object_is_an_input_error(read: Reader, payload: bytes, says: str) -> None:
    with pytest.raises(InputError, match=says):
        read(payload)


def test_no_bytes_is_an_empty_request() -> None:
    assert decode(b"") == {}


def test_what_neither_encoder_takes_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        encode({"x": object()})
