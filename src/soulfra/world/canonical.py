"""Canonical binary encoding of plain values: one value, one byte string, on every machine.

Supported: None, bool, int, str, bytes, tuple/list (decoded as tuple), dict with str or int keys (written in
sorted key order) and 1- or 2-dimensional numpy int64/uint64 arrays (little-endian). Floats are refused: nothing
that must replay may be one. ``decode(encode(v))`` re-encodes to the same bytes. An ``Encoded`` (a value's
encoding that a caller has already) is written as it is, and decodes as the value it encodes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import repeat
from typing import Any

import numpy as np

from soulfra.errors import CodecError
from soulfra.world.canonical_tables import TABLE_MIN_ROWS, encode_int_rows, encode_str_rows

_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")
_DTYPES = {b"q": np.dtype("<i8"), b"Q": np.dtype("<u8")}
_DTYPE_CODES = {np.dtype("int64"): b"q", np.dtype("uint64"): b"Q"}
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1
# Tags as byte values: ``data[pos]`` of a bytes object is an int, which keeps the hot loop free of slicing.
_N, _T, _F, _i, _I, _s, _b, _l, _d, _a = b"NTFiIsblda"


class Encoded(bytes):
    """A value's encoding, written as it is where the value would be: for a caller that has it already."""

    __slots__ = ()


def encode(value: object) -> bytes:
    out: list[bytes] = []
    try:
        _encode(value, out)
    except RecursionError:
        raise CodecError("value is nested too deeply to encode") from None
    return b"".join(out)


_pack_tagged_i64 = struct.Struct("<cq").pack
_pack_tagged_u32 = struct.Struct("<cI").pack
_pack_int_pair = struct.Struct("<cqcq").pack  # one dict entry of a small int key and a small int value
_NONE_TYPE = type(None)
_ONLY_INT = frozenset((int,))
# The headers of short strs and lists, built once: a table lookup is cheaper than a pack for every leaf.
_STR_HEADERS = tuple(_pack_tagged_u32(b"s", n) for n in range(256))
_LIST_HEADERS = tuple(_pack_tagged_u32(b"l", n) for n in range(256))


def _key(key: Any) -> bytes:
    """A dict key's encoding, which is also its sort key."""
    if type(key) is int and _I64_MIN <= key <= _I64_MAX:
        return _pack_tagged_i64(b"i", key)
    if type(key) is not str and type(key) is not int:
        raise CodecError(f"dict keys must be str or int, got {type(key).__name__}")
    return encode(key)


def _encode(value: Any, out: list[bytes]) -> None:
    # Ordered by how often each type occurs in a world state; ``type(...) is`` keeps bool out of int.
    kind = type(value)
    if kind is int:
        if _I64_MIN <= value <= _I64_MAX:
            out.append(_pack_tagged_i64(b"i", value))
        else:
            raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
            out.append(_pack_tagged_u32(b"I", len(raw)) + raw)
    elif kind is str:
        raw = value.encode()
        out.append(_pack_tagged_u32(b"s", len(raw)) + raw)
    elif kind is tuple or kind is list:
        _encode_items(value, out)
    elif kind is dict:
        _encode_dict(value, out)
    elif kind is _NONE_TYPE:
        out.append(b"N")
    elif kind is bool:
        out.append(b"T" if value else b"F")
    elif kind is bytes:
        out.append(_pack_tagged_u32(b"b", len(value)) + value)
    elif kind is Encoded:
        out.append(value)
    elif isinstance(value, np.ndarray):
        code = _DTYPE_CODES.get(value.dtype)
        if code is None or value.ndim not in (1, 2):
            raise CodecError(f"only 1-D or 2-D int64/uint64 arrays are encodable, got {value.dtype} {value.ndim}-D")
        shape = b"".join(_U32.pack(n) for n in value.shape)
        array = np.ascontiguousarray(value, dtype=_DTYPES[code]).tobytes()
        out.append(b"a" + code + bytes([value.ndim]) + shape + array)
    else:
        raise CodecError(f"cannot canonically encode a {type(value).__name__}")


def _encode_items(items: tuple[Any, ...] | list[Any], out: list[bytes]) -> None:
    size = len(items)
    append = out.append
    append(_LIST_HEADERS[size] if size < 256 else _pack_tagged_u32(b"l", size))
    for item in items:
        # Strs and small ints, most of a state's leaves, are written inline: a call per leaf costs more.
        kind = type(item)
        if kind is str:
            raw = item.encode()
            size = len(raw)
            append(_STR_HEADERS[size] if size < 256 else _pack_tagged_u32(b"s", size))
            append(raw)
        elif kind is int and _I64_MIN <= item <= _I64_MAX:
            append(_pack_tagged_i64(b"i", item))
        elif kind is tuple:
            _encode_items(item, out)
        else:
            _encode(item, out)


def _encode_dict(value: dict[Any, Any], out: list[bytes]) -> None:
    if len(value) >= TABLE_MIN_ROWS:
        # The big tables of a state (an int key to a row of ints or of strs) in a few numpy passes.
        first = type(next(iter(value.values())))
        table = encode_int_rows(value) if first is dict else encode_str_rows(value) if first in (tuple, list) else None
        if table is not None:
            out.append(table)
            return
    pairs: list[tuple[bytes, Any]] | None = None
    if _ONLY_INT.issuperset(map(type, value)):
        try:
            if _ONLY_INT.issuperset(map(type, value.values())):
                # Every entry packs to 18 bytes whose first 9 are the (unique) key: sorting the packed entries
                # sorts by key, all in C. An int beyond int64 raises struct.error and takes the general path.
                entries = sorted(map(_pack_int_pair, repeat(b"i"), value, repeat(b"i"), value.values()))
                out.append(_pack_tagged_u32(b"d", len(entries)))
                out.append(b"".join(entries))
                return
            pairs = list(zip(map(_pack_tagged_i64, repeat(b"i"), value), value.values(), strict=True))
        except struct.error:
            pairs = None
        else:
            pairs.sort()  # no two keys encode alike, so the tuples compare by key alone
    if pairs is None:
        pairs = [(_key(key), item) for key, item in value.items()]
        pairs.sort()
    append = out.append
    append(_pack_tagged_u32(b"d", len(pairs)))
    for raw_key, item in pairs:
        append(raw_key)
        kind = type(item)
        if kind is int and _I64_MIN <= item <= _I64_MAX:
            append(_pack_tagged_i64(b"i", item))
        elif kind is str:
            raw = item.encode()
            size = len(raw)
            append(_STR_HEADERS[size] if size < 256 else _pack_tagged_u32(b"s", size))
            append(raw)
        elif kind is tuple:
            _encode_items(item, out)
        else:
            _encode(item, out)


def decode(data: bytes) -> Any:
    """Inverse of ``encode``; raises ``CodecError`` on truncated or malformed input."""
    data = bytes(data)
    with _reading():
        value, end = _decode(data, 0)
    _check_end(data, end)
    return value


def decode_fields(data: bytes, names: frozenset[str], *, heads: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The entries named ``names`` of an encoded dict with str keys, decoding entries only until the last of them
    is found (keys are written in sorted order: an entry whose key sorts early costs little to reach). Names it
    does not hold are left out. An entry named in ``heads`` too must be a list of lists: of it, only the first item
    of each inner list is decoded (a tuple of them), the rest skipped. ``CodecError`` if what is read is malformed
    or not such a dict."""
    data = bytes(data)
    found: dict[str, Any] = {}
    with _reading():
        pos = _DICT_START
        for _ in range(_dict_count(data)):
            if len(found) == len(names):
                break
            key, pos = _str_key(data, pos)
            value, pos = _heads(data, pos) if key in heads else _decode(data, pos)
            if pos > len(data):
                raise ValueError("truncated")
            if key in names:
                found[key] = value
    return found


def decode_keeping(data: bytes, kept: frozenset[str], *, likely: Iterable[bytes] = ()) -> dict[str, Any]:
    """``decode`` of an encoded dict with str keys, except that the entries named in ``kept`` stay encoded: their
    values are the bytes ``encode`` gave them, for a caller that decodes them its own way (or has before).
    ``likely`` are encodings such an entry often has: one found where the entry starts is the entry, found with a
    comparison instead of a walk through it (an encoding says where it ends, so none is the start of another).
    ``CodecError`` as ``decode`` raises it, and if the data is not such a dict."""
    data = bytes(data)
    found: dict[str, Any] = {}
    with _reading():
        pos = _DICT_START
        for _ in range(_dict_count(data)):
            key, pos = _str_key(data, pos)
            if key in kept:
                value = next((known for known in likely if known and data.startswith(known, pos)), None)
                end = pos + len(value) if value is not None else _skip(data, pos)
                found[key] = value if value is not None else data[pos:end]
                pos = end
            else:
                found[key], pos = _decode(data, pos)
    _check_end(data, pos)
    return found


@contextmanager
def _reading() -> Iterator[None]:
    """Turns what reading malformed data raises into ``CodecError``."""
    try:
        yield
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as exc:
        raise CodecError(f"malformed canonical data: {exc}") from exc
    except RecursionError:
        raise CodecError("malformed canonical data: nested too deeply") from None


def _check_end(data: bytes, end: int) -> None:
    """``CodecError`` unless the value read ended exactly at the end of ``data``."""
    if end > len(data):
        # Positions only grow, so a str that ran past the end (the hot loops do not check) ends up here.
        raise CodecError("malformed canonical data: truncated")
    if end != len(data):
        raise CodecError(f"{len(data) - end} trailing bytes after canonical value")


_DICT_START = 5  # a dict's first entry, after its tag and count


def _dict_count(data: bytes) -> int:
    """The number of entries of the dict that ``data`` starts with (they start at ``_DICT_START``)."""
    if data[0] != _d:
        raise ValueError("not a dict")
    count: int = _unpack_u32(data, 1)[0]
    return count


def _str_key(data: bytes, pos: int) -> tuple[str, int]:
    key, pos = _decode(data, pos)
    if type(key) is not str:
        raise ValueError("dict key is not a str")
    return key, pos


_unpack_i64 = _I64.unpack_from
_unpack_u32 = _U32.unpack_from
_INT_PAIR = struct.Struct("<xqxq")  # an 'i'-tagged key and an 'i'-tagged value; the tags are checked apart


def _span(data: bytes, pos: int, n: int) -> bytes:
    end = pos + n
    if end > len(data):
        raise ValueError("truncated")
    return data[pos:end]


def _decode(data: bytes, pos: int) -> tuple[Any, int]:
    """The value whose tag is at ``pos``, and the position after it."""
    tag = data[pos]
    pos += 1
    if tag == _i:
        return _unpack_i64(data, pos)[0], pos + 8
    if tag == _s:
        (length,) = _unpack_u32(data, pos)
        return _span(data, pos + 4, length).decode(), pos + 4 + length
    if tag == _l:
        return _decode_items(data, pos)
    if tag == _d:
        return _decode_dict(data, pos)
    if tag == _N:
        return None, pos
    if tag == _T:
        return True, pos
    if tag == _F:
        return False, pos
    if tag in (_I, _b):
        (length,) = _unpack_u32(data, pos)
        raw = _span(data, pos + 4, length)
        pos += 4 + length
        return (int.from_bytes(raw, "little", signed=True) if tag == _I else raw), pos
    if tag == _a:
        dtype = _DTYPES.get(_span(data, pos, 1))
        ndim = _span(data, pos + 1, 1)[0]
        if dtype is None or ndim not in (1, 2):
            raise ValueError("bad array header")
        pos += 2
        shape = []
        for _ in range(ndim):
            shape.append(_unpack_u32(data, pos)[0])
            pos += 4
        size = 8
        for n in shape:
            size *= n
        raw = _span(data, pos, size)
        array = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)
        return array, pos + size
    raise ValueError(f"unknown tag {bytes([tag])!r}")


def _heads(data: bytes, pos: int) -> tuple[tuple[Any, ...], int]:
    """The first item of each inner list of the list of lists whose tag is at ``pos``; the position after it."""
    if data[pos] != _l:
        raise ValueError("not a list")
    (count,) = _unpack_u32(data, pos + 1)
    pos += 5
    if count > len(data) - pos:
        raise ValueError("truncated")
    heads: list[Any] = [None] * count
    for index in range(count):
        if data[pos] != _l:
            raise ValueError("not a list of lists")
        (size,) = _unpack_u32(data, pos + 1)
        if size == 0:
            raise ValueError("an empty inner list has no first item")
        pos += 5
        if data[pos] == _s:
            start = pos + 5
            pos = start + _unpack_u32(data, pos + 1)[0]
            heads[index] = data[start:pos].decode()
        else:
            heads[index], pos = _decode(data, pos)
        for _ in range(size - 1):
            # strs skipped inline: a call for each costs more than the skip (an agent's spec is mostly strs)
            if data[pos] == _s:
                pos += 5 + _unpack_u32(data, pos + 1)[0]
            else:
                pos = _skip(data, pos)
    return tuple(heads), pos


def _skip(data: bytes, pos: int) -> int:
    """The position after the value whose tag is at ``pos``, building no value for strs, ints and lists of them."""
    tag = data[pos]
    if tag == _s:
        (length,) = _unpack_u32(data, pos + 1)
        return pos + 5 + int(length)
    if tag == _i:
        return pos + 9
    if tag == _l:
        (count,) = _unpack_u32(data, pos + 1)
        pos += 5
        if count > len(data) - pos:
            raise ValueError("truncated")
        for _ in range(count):
            if data[pos] == _s:
                pos += 5 + _unpack_u32(data, pos + 1)[0]
            else:
                pos = _skip(data, pos)
        return pos
    return _decode(data, pos)[1]


# The loops below read small ints, strs and nested lists and dicts inline, as ``_encode`` writes them: a call
# per leaf costs more than the leaf. A str's end is not checked against the data here (``decode`` does it).


def _decode_items(data: bytes, pos: int) -> tuple[tuple[Any, ...], int]:
    """A list's items, from its count at ``pos`` (just after the tag)."""
    (count,) = _unpack_u32(data, pos)
    pos += 4
    if count > len(data) - pos:  # every item takes at least a byte; refuse before allocating for them
        raise ValueError("truncated")
    items: list[Any] = [None] * count
    for index in range(count):
        tag = data[pos]
        if tag == _s:
            start = pos + 5
            pos = start + _unpack_u32(data, pos + 1)[0]
            items[index] = data[start:pos].decode()
        elif tag == _i:
            items[index] = _unpack_i64(data, pos + 1)[0]
            pos += 9
        elif tag == _l:
            items[index], pos = _decode_items(data, pos + 1)
        else:
            items[index], pos = _decode(data, pos)
    return tuple(items), pos


def _decode_dict(data: bytes, pos: int) -> tuple[dict[Any, Any], int]:
    """A dict's entries, from its count at ``pos`` (just after the tag)."""
    (count,) = _unpack_u32(data, pos)
    pos += 4
    end = pos + 18 * count
    # A dict of small ints to small ints (an affinity row) is one run of 18-byte entries: when every ninth byte
    # is an 'i' tag, the run is unpacked in C without a loop in Python.
    if end <= len(data) and data[pos:end:9] == b"i" * (2 * count):
        return dict(_INT_PAIR.iter_unpack(data[pos:end])), end
    result: dict[Any, Any] = {}
    for _ in range(count):
        if data[pos] == _i:
            key = _unpack_i64(data, pos + 1)[0]
            pos += 9
        else:
            key, pos = _decode(data, pos)
            if type(key) is not str and type(key) is not int:
                raise ValueError("dict key is not str or int")
        tag = data[pos]
        if tag == _i:
            result[key] = _unpack_i64(data, pos + 1)[0]
            pos += 9
        elif tag == _s:
            start = pos + 5
            pos = start + _unpack_u32(data, pos + 1)[0]
            result[key] = data[start:pos].decode()
        elif tag == _l:
            result[key], pos = _decode_items(data, pos + 1)
        elif tag == _d:
            result[key], pos = _decode_dict(data, pos + 1)
        else:
            result[key], pos = _decode(data, pos)
    return result, pos
