"""Fast paths of the canonical encoding for the two big tables of a world state, written with numpy in a few
passes instead of a Python call per leaf; each gives exactly the bytes the general path (``canonical``) would.

- A dict of int keys to dicts of int to int (affinity: each agent's ties): ``encode_int_rows``.
- A dict of int keys to tuples (or lists) of strs (memory: each agent's recent memories): ``encode_str_rows``.

Both return ``None`` for a dict that is not of their shape (a key or leaf of another type, an int beyond int64),
which the general path then writes (and refuses, where it must). Layout, as ``canonical`` writes it: a dict is
``d`` + its entry count (u32) + its entries in the order of their encoded keys; an int is ``i`` + int64; a str is
``s`` + its UTF-8 length (u32) + the bytes; a list is ``l`` + its item count (u32) + the items; all little-endian.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["TABLE_MIN_ROWS", "encode_int_rows", "encode_str_rows", "row_key_order"]

# A dict needs this many entries for a fast path: below it, numpy's fixed cost per call outweighs what it saves.
TABLE_MIN_ROWS = 32

_ONLY_INT = frozenset((int,))
_ONLY_STR = frozenset((str,))
_ONLY_DICT = frozenset((dict,))
_SEQUENCES = frozenset((tuple, list))
_i, _s, _l, _d = b"isld"
_U8 = np.dtype("u1")
_ENTRY = np.dtype([("key_tag", "u1"), ("key", "<i8"), ("value_tag", "u1"), ("value", "<i8")])  # 18 bytes
# An entry's int key, then the header of its value (a dict or a list): 14 bytes.
_ROW_HEAD = np.dtype([("key_tag", "u1"), ("key", "<i8"), ("tag", "u1"), ("count", "<u4")])
_STR_HEAD = np.dtype([("tag", "u1"), ("size", "<u4")])  # 5 bytes


def row_key_order(keys: npt.NDArray[np.int64], sizes: list[int] | npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    """The permutation that sorts ``keys`` (the rows' keys, row after row) by row, then as encoded keys sort."""
    # An encoded key sorts by its little-endian bytes, which read as one big-endian number is a plain uint64.
    byte_order = keys.astype("<i8").view(">u8").astype(np.uint64)
    row = np.repeat(np.arange(len(sizes), dtype=np.uint64), sizes)
    width = 8 * max(1, (int(keys.max(initial=0)).bit_length() + 7) // 8)  # bits that hold the keys' bytes
    if int(keys.min(initial=0)) >= 0 and len(sizes).bit_length() + width <= 64:
        # Small non-negative keys (agent indices) only use their low bytes: those and the row make one sort
        # key, and one plain sort of it is several times faster than a two-key lexsort.
        return np.argsort((row << np.uint64(width)) | (byte_order >> np.uint64(64 - width)))
    return np.lexsort((byte_order, row))


def encode_int_rows(value: dict[Any, Any]) -> bytes | None:
    """The encoding of ``value`` if it maps int64s to dicts of int64 to int64, else None."""
    ordered = _in_key_order(value, _ONLY_DICT)
    if ordered is None:
        return None
    outer, rows = ordered
    inner_keys = list(chain.from_iterable(rows))
    inner_values = list(chain.from_iterable(map(dict.values, rows)))
    if not (_ONLY_INT.issuperset(map(type, inner_keys)) and _ONLY_INT.issuperset(map(type, inner_values))):
        return None
    try:
        keys = np.array(inner_keys, dtype=np.int64)
        values = np.array(inner_values, dtype=np.int64)
    except OverflowError:  # an int beyond int64: the general path writes it with the 'I' tag
        return None
    sizes = np.fromiter(map(len, rows), np.int64, len(rows))
    within = row_key_order(keys, sizes)  # each row's entries in their keys' order
    entries = np.empty(len(keys), dtype=_ENTRY)
    entries["key_tag"] = _i
    entries["key"] = keys[within]
    entries["value_tag"] = _i
    entries["value"] = values[within]
    heads = _row_heads(outer, _d, sizes)
    row_head_sizes = np.full(len(rows), _ROW_HEAD.itemsize, dtype=np.int64)
    return _dict_head(len(rows)) + _interleave(heads.view(_U8), row_head_sizes, entries.view(_U8), 18 * sizes)


def encode_str_rows(value: dict[Any, Any]) -> bytes | None:
    """The encoding of ``value`` if it maps int64s to tuples (or lists) of strs, else None."""
    ordered = _in_key_order(value, _SEQUENCES)
    if ordered is None:
        return None
    outer, rows = ordered
    if not _ONLY_STR.issuperset(map(type, rows[0])):  # a table of other rows (records) is told apart at once
        return None
    texts = list(chain.from_iterable(rows))
    if not _ONLY_STR.issuperset(map(type, texts)):
        return None
    joined = "".join(texts)
    payload = joined.encode()
    if len(payload) == len(joined):  # all ASCII: each str's UTF-8 length is its length
        lengths = np.fromiter(map(len, texts), np.int64, len(texts))
    else:
        lengths = np.fromiter(map(len, map(str.encode, texts)), np.int64, len(texts))
    counts = np.fromiter(map(len, rows), np.int64, len(rows))
    text_heads = np.empty(len(texts), dtype=_STR_HEAD)
    text_heads["tag"] = _s
    text_heads["size"] = lengths
    # The bytes between the texts: each row's head followed by the heads of its texts.
    row_head_sizes = np.full(len(rows), _ROW_HEAD.itemsize, dtype=np.int64)
    between = _interleave(_row_heads(outer, _l, counts).view(_U8), row_head_sizes, text_heads.view(_U8), 5 * counts)
    # Cut into one piece per text (a row with none: its head alone, before a text of no bytes): a row's first piece
    # holds its head and its first text's head, each other piece one text's head.
    empty = counts == 0
    pieces = np.maximum(counts, 1)
    firsts = np.concatenate(([0], np.cumsum(pieces)[:-1]))
    between_sizes = np.full(int(pieces.sum()), 5, dtype=np.int64)
    between_sizes[firsts] = np.where(empty, _ROW_HEAD.itemsize, _ROW_HEAD.itemsize + 5)
    text_sizes = np.zeros(len(between_sizes), dtype=np.int64)
    text_sizes[np.repeat(~empty, pieces)] = lengths
    body = _interleave(np.frombuffer(between, dtype=_U8), between_sizes, np.frombuffer(payload, dtype=_U8), text_sizes)
    return _dict_head(len(rows)) + body


def _in_key_order(value: dict[Any, Any], kinds: frozenset[type]) -> tuple[npt.NDArray[np.int64], list[Any]] | None:
    """The keys of ``value`` (as int64s) and its values, in the order of the keys' encodings; None unless every key
    is an int64 and every value of one of ``kinds``."""
    keys = list(value)
    if not (_ONLY_INT.issuperset(map(type, keys)) and kinds.issuperset(map(type, value.values()))):
        return None
    try:
        outer = np.array(keys, dtype=np.int64)
    except OverflowError:
        return None
    order = row_key_order(outer, [len(keys)])
    rows = list(value.values())
    return outer[order], [rows[at] for at in order.tolist()]


def _dict_head(count: int) -> bytes:
    return bytes((_d,)) + count.to_bytes(4, "little")


def _row_heads(keys: npt.NDArray[np.int64], tag: int, counts: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    heads = np.empty(len(keys), dtype=_ROW_HEAD)
    heads["key_tag"] = _i
    heads["key"] = keys
    heads["tag"] = tag
    heads["count"] = counts
    return heads


def _interleave(
    fixed: npt.NDArray[np.uint8],
    fixed_sizes: npt.NDArray[np.int64],
    payload: npt.NDArray[np.uint8],
    payload_sizes: npt.NDArray[np.int64],
) -> bytes:
    """``fixed`` and ``payload`` cut into segments of the given sizes (as many of each), written alternately: fixed
    segment 0, payload segment 0, fixed segment 1, payload segment 1, ..."""
    total = len(fixed) + len(payload)
    # Where each byte of the smaller side lands is computed, and the other side's fill the rest, in order: the
    # smaller side is most often the fixed one (a table's row heads, or the heads between its texts).
    if len(fixed) <= len(payload):
        # A fixed byte lands after the payload segments before its own, and the fixed bytes before it.
        into = np.arange(len(fixed), dtype=np.int64) + np.repeat(np.cumsum(payload_sizes) - payload_sizes, fixed_sizes)
        placed, others = fixed, payload
    else:
        # A payload byte lands after every fixed segment up to and including its own, and the payload bytes before it.
        into = np.arange(len(payload), dtype=np.int64) + np.repeat(np.cumsum(fixed_sizes), payload_sizes)
        placed, others = payload, fixed
    out = np.empty(total, dtype=_U8)
    out[into] = placed
    rest = np.ones(total, dtype=bool)
    rest[into] = False
    out[rest] = others
    return out.tobytes()
