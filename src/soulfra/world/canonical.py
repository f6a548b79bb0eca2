"""Canonical binary encoding of plain values: one value, one byte string, on every machine.

Supported: None, bool, int, str, bytes, tuple/list (decoded as tuple), dict with str or int keys (written in
sorted key order) and 1- or 2-dimensional numpy int64/uint64 arrays (little-endian). Floats are refused: nothing
that must replay may be one. ``decode(encode(v))`` re-encodes to the same bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from soulfra.errors import CodecError

_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")
_DTYPES = {b"q": np.dtype("<i8"), b"Q": np.dtype("<u8")}
_DTYPE_CODES = {np.dtype("int64"): b"q", np.dtype("uint64"): b"Q"}
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1


def encode(value: object) -> bytes:
    out: list[bytes] = []
    try:
        _encode(value, out)
    except RecursionError:
        raise CodecError("value is nested too deeply to encode") from None
    return b"".join(out)


def _encode(value: object, out: list[bytes]) -> None:
    if value is None:
        out.append(b"N")
    elif value is True:
        out.append(b"T")
    elif value is False:
        out.append(b"F")
    elif type(value) is int:
        if _I64_MIN <= value <= _I64_MAX:
            out.append(b"i" + _I64.pack(value))
        else:
            raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
            out.append(b"I" + _U32.pack(len(raw)) + raw)
    elif type(value) is str:
        raw = value.encode("utf-8")
        out.append(b"s" + _U32.pack(len(raw)) + raw)
    elif type(value) is bytes:
        out.append(b"b" + _U32.pack(len(value)) + value)
    elif type(value) is tuple or type(value) is list:
        out.append(b"l" + _U32.pack(len(value)))
        for item in value:
            _encode(item, out)
    elif type(value) is dict:
        pairs = []
        for key, item in value.items():
            if type(key) is not str and type(key) is not int:
                raise CodecError(f"dict keys must be str or int, got {type(key).__name__}")
            pairs.append((encode(key), item))
        pairs.sort(key=lambda pair: pair[0])
        out.append(b"d" + _U32.pack(len(pairs)))
        for raw_key, item in pairs:
            out.append(raw_key)
            _encode(item, out)
    elif isinstance(value, np.ndarray):
        code = _DTYPE_CODES.get(value.dtype)
        if code is None or value.ndim not in (1, 2):
            raise CodecError(f"only 1-D or 2-D int64/uint64 arrays are encodable, got {value.dtype} {value.ndim}-D")
        shape = b"".join(_U32.pack(n) for n in value.shape)
        data = np.ascontiguousarray(value, dtype=_DTYPES[code]).tobytes()
        out.append(b"a" + code + bytes([value.ndim]) + shape + data)
    else:
        raise CodecError(f"cannot canonically encode a {type(value).__name__}")


def decode(data: bytes) -> Any:
    """Inverse of ``encode``; raises ``CodecError`` on truncated or malformed input."""
    data = bytes(data)
    try:
        value, end = _decode(data, 0)
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as exc:
        raise CodecError(f"malformed canonical data: {exc}") from exc
    except RecursionError:
        raise CodecError("malformed canonical data: nested too deeply") from None
    if end != len(data):
        raise CodecError(f"{len(data) - end} trailing bytes after canonical value")
    return value


# Tags as byte values: ``data[pos]`` of a bytes object is an int, which keeps the hot loop free of slicing.
_N, _T, _F, _i, _I, _s, _b, _l, _d, _a = b"NTFiIsblda"
_unpack_i64 = _I64.unpack_from
_unpack_u32 = _U32.unpack_from


def _span(data: bytes, pos: int, n: int) -> bytes:
    end = pos + n
    if end > len(data):
        raise ValueError("truncated")
    return data[pos:end]


def _decode(data: bytes, pos: int) -> tuple[Any, int]:
    tag = data[pos]
    pos += 1
    if tag == _i:
        return _unpack_i64(data, pos)[0], pos + 8
    if tag == _s:
        (length,) = _unpack_u32(data, pos)
        return _span(data, pos + 4, length).decode("utf-8"), pos + 4 + length
    if tag == _l:
        (count,) = _unpack_u32(data, pos)
        pos += 4
        items: list[Any] = []
        append = items.append
        for _ in range(count):
            item, pos = _decode(data, pos)
            append(item)
        return tuple(items), pos
    if tag == _d:
        (count,) = _unpack_u32(data, pos)
        pos += 4
        result: dict[Any, Any] = {}
        for _ in range(count):
            key, pos = _decode(data, pos)
            if type(key) is not str and type(key) is not int:
                raise ValueError("dict key is not str or int")
            result[key], pos = _decode(data, pos)
        return result, pos
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
