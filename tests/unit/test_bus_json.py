"""The bus's JSON (``soulfra.platforms.base.encode``/``decode``): what a platform sends is what the other reads."""

from __future__ import annotations

import json
import math

import pytest

from soulfra.errors import InputError
from soulfra.platforms.base import decode, encode


def test_a_message_comes_back_as_it_was_sent_with_its_text_unescaped() -> None:
    body = {"narrative": "tides — rising", "agent": "écho", "tick": 2**63 - 1, "seed": 2**64 - 1, "ok": None}
    wire = encode(body)
    assert "tides — rising".encode() in wire  # UTF-8, not \u escapes
    assert decode(wire) == body
    assert json.loads(wire) == body  # any JSON reader takes it


def test_integer_keys_are_sent_as_strings_as_json_sends_them() -> None:
    assert decode(encode({7: "ritual", "n": [1, 2]})) == {"7": "ritual", "n": [1, 2]}


def test_an_integer_past_64_bits_is_still_sent_exactly() -> None:
    assert encode({"n": 2**70}) == b'{"n":1180591620717411303424}'


def test_what_json_reads_and_orjson_refuses_is_still_read() -> None:
    assert math.isnan(decode(b'{"x": NaN}')["x"])


@pytest.mark.parametrize(
    ("payload", "says"),
    [(b"{bad", "request is not JSON"), (b"\xff\xfe", "request is not JSON"), (b"[1, 2]", "must be a JSON object")],
)
def test_what_is_not_a_json_object_is_an_input_error(payload: bytes, says: str) -> None:
    with pytest.raises(InputError, match=says):
        decode(payload)


def test_no_bytes_is_an_empty_request() -> None:
    assert decode(b"") == {}


def test_what_neither_encoder_takes_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        encode({"x": object()})
