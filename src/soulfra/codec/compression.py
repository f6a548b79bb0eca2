"""CompressionEngine: turns snapshot bytes into codec-tagged blobs and back, within a decompression size limit.

It owns the codec ids ("zstd", "gzip", "none"), zstd dictionaries and the limit that refuses decompression bombs.
It does no I/O and knows no database: callers store the codec id, dictionary id and raw size next to each blob.
Every failure to read a blob is a CodecError; driver exceptions (zstd, zlib, gzip) never escape.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import overload

import zstandard

from soulfra.errors import CodecError, ConfigError, DecompressionLimitError

__all__ = [
    "CODECS",
    "CODEC_GZIP",
    "CODEC_NONE",
    "CODEC_ZSTD",
    "DEFAULT_LEVEL",
    "DEFAULT_MAX_OUTPUT",
    "Compressed",
    "CompressionEngine",
    "Dictionary",
    "calculate_compression_ratio",
    "train_dictionary",
]

CODEC_ZSTD = "zstd"
CODEC_GZIP = "gzip"
CODEC_NONE = "none"
CODECS = frozenset({CODEC_ZSTD, CODEC_GZIP, CODEC_NONE})

DEFAULT_LEVEL = 3
DEFAULT_MAX_OUTPUT = 512 * 1024 * 1024

_GZIP_LEVEL = 6
# Written by hand rather than by gzip.compress, whose OS byte depends on the platform and Python version:
# magic, deflate, no flags, mtime 0, no extra flags, OS "unknown".
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_READ_CHUNK = 64 * 1024
# A zstd block takes at least 4 input bytes and yields at most 128 KiB, so one input byte yields at most 32 KiB.
_ZSTD_MAX_EXPANSION = 32 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Dictionary:
    """A trained zstd dictionary; ``id`` is the id zstd writes into every frame compressed with it."""

    id: int
    data: bytes = field(repr=False)

    @classmethod
    def from_bytes(cls, data: bytes) -> Dictionary:
        """Rebuild a dictionary from its stored bytes, reading its id from them."""
        return cls(id=_load_dictionary(data).dict_id(), data=data)


@dataclass(frozen=True, slots=True, kw_only=True)
class Compressed:
    """A compressed blob and what is needed to read it back; store all four fields together."""

    codec: str
    dictionary_id: int | None
    data: bytes = field(repr=False)
    raw_size: int


def train_dictionary(samples: Sequence[bytes], *, size: int = 64 * 1024) -> Dictionary:
    """Train a zstd dictionary of at most ``size`` bytes from sample snapshots (deterministic for the same samples)."""
    if size < 1:
        raise ConfigError(f"dictionary size must be positive, not {size}")
    with _driver_errors(f"cannot train a dictionary from {len(samples)} samples"):
        trained = zstandard.train_dictionary(size, list(samples))
    return Dictionary(id=trained.dict_id(), data=trained.as_bytes())


@overload
def calculate_compression_ratio(raw: Compressed, /) -> float: ...
@overload
def calculate_compression_ratio(raw: bytes | int, compressed: bytes | int | Compressed, /) -> float: ...
def calculate_compression_ratio(
    raw: bytes | int | Compressed, compressed: bytes | int | Compressed | None = None, /
) -> float:
    """Raw size over compressed size (4.0: the blob takes a quarter of the space).

    Takes one Compressed, or a raw and a compressed side each given as bytes or a size (the compressed side may also
    be a Compressed). A zero compressed size raises CodecError rather than returning inf, so that a broken blob
    cannot vanish into an average.
    """
    if isinstance(raw, Compressed):
        if compressed is not None:
            raise TypeError("give a Compressed alone, or a raw and a compressed size")
        raw_size, compressed_size = raw.raw_size, len(raw.data)
    else:
        if compressed is None:
            raise TypeError("a raw size needs a compressed size to compare with")
        raw_size = _size(raw)
        compressed_size = len(compressed.data) if isinstance(compressed, Compressed) else _size(compressed)
    if raw_size < 0 or compressed_size < 0:
        raise CodecError(f"sizes cannot be negative: raw {raw_size}, compressed {compressed_size}")
    if compressed_size == 0:
        raise CodecError("cannot compute a compression ratio for a compressed size of zero")
    return raw_size / compressed_size


class CompressionEngine:
    """Compresses snapshots with a default codec and reads back any codec, never beyond ``max_output`` bytes.

    Dictionaries are held by id: a blob compressed with one can be read by any engine that was given the same
    dictionary (``dictionaries=`` or ``add_dictionary``). Output is deterministic for the same input and settings.
    """

    def __init__(
        self,
        *,
        codec: str = CODEC_ZSTD,
        level: int = DEFAULT_LEVEL,
        max_output: int = DEFAULT_MAX_OUTPUT,
        dictionaries: Iterable[Dictionary] = (),
    ) -> None:
        if codec not in CODECS:
            raise ConfigError(f"unknown codec {codec!r}; known codecs: {', '.join(sorted(CODECS))}")
        if not 1 <= level <= zstandard.MAX_COMPRESSION_LEVEL:
            raise ConfigError(f"zstd level must be between 1 and {zstandard.MAX_COMPRESSION_LEVEL}, not {level}")
        if max_output < 1:
            raise ConfigError(f"max_output must be positive, not {max_output}")
        self._codec = codec
        self._level = level
        self._max_output = max_output
        self._dictionaries: dict[int, tuple[Dictionary, zstandard.ZstdCompressionDict]] = {}
        # The last reference, prepared: the deltas of one keyframe all share it, and preparing costs as much as
        # compressing.
        self._reference: tuple[bytes, zstandard.ZstdCompressionDict] | None = None
        for dictionary in dictionaries:
            self.add_dictionary(dictionary)

    @property
    def codec(self) -> str:
        return self._codec

    @property
    def level(self) -> int:
        return self._level

    @property
    def max_output(self) -> int:
        return self._max_output

    @property
    def dictionaries(self) -> tuple[Dictionary, ...]:
        """The known dictionaries, by id."""
        return tuple(self._dictionaries[key][0] for key in sorted(self._dictionaries))

    def add_dictionary(self, dictionary: Dictionary) -> None:
        """Make a dictionary known; adding the same one twice is harmless, another one under a known id is not."""
        known = self._dictionaries.get(dictionary.id)
        if known is not None:
            if known[0].data != dictionary.data:
                raise CodecError(f"dictionary id {dictionary.id} is already known with different bytes")
            return
        self._dictionaries[dictionary.id] = (dictionary, _checked_dictionary(dictionary))

    def has_dictionary(self, dictionary_id: int) -> bool:
        return dictionary_id in self._dictionaries

    def compress(
        self,
        data: bytes,
        *,
        codec: str | None = None,
        dictionary: Dictionary | None = None,
        reference: bytes | None = None,
    ) -> Compressed:
        """Compress with ``codec`` (default: the engine's); a dictionary (zstd only) is added to the known ones.

        ``reference`` (zstd only) makes a delta: the blob can be read back only with the same reference bytes,
        typically an earlier snapshot of the same world. It and ``dictionary`` exclude each other.
        """
        codec = self._codec if codec is None else codec
        _check_codec(codec)
        if dictionary is not None and reference is not None:
            raise CodecError("a blob is compressed against a dictionary or a reference, not both")
        if codec == CODEC_ZSTD:
            zdict = None
            if dictionary is not None:
                self.add_dictionary(dictionary)
                zdict = self._dictionaries[dictionary.id][1]
            elif reference is not None:
                zdict = self._prepared(reference)
            blob = self._compress_zstd(data, zdict)
        elif dictionary is not None or reference is not None:
            raise CodecError(f"dictionaries and references work only with the zstd codec, not {codec!r}")
        elif codec == CODEC_GZIP:
            blob = _compress_gzip(data)
        else:
            blob = data
        return Compressed(
            codec=codec,
            dictionary_id=None if dictionary is None else dictionary.id,
            data=blob,
            raw_size=len(data),
        )

    def decompress(
        self,
        codec: str,
        data: bytes,
        *,
        dictionary_id: int | None = None,
        raw_size: int | None = None,
        reference: bytes | None = None,
    ) -> bytes:
        """Read a blob back from its stored fields (and the reference bytes a delta was made against).

        Raises CodecError for an unknown codec or dictionary id, corrupt data, or output whose size is not
        ``raw_size``; DecompressionLimitError (before producing the output) when it would exceed ``max_output``.
        """
        _check_codec(codec)
        if (dictionary_id is not None or reference is not None) and codec != CODEC_ZSTD:
            raise CodecError(f"a {codec} blob has no dictionary or reference, but one was given")
        if raw_size is not None and raw_size > self._max_output:
            raise DecompressionLimitError(f"raw size {raw_size} exceeds the {self._max_output}-byte limit")
        if codec == CODEC_ZSTD:
            out = self._decompress_zstd(data, dictionary_id, reference)
        elif codec == CODEC_GZIP:
            out = self._decompress_gzip(data)
        elif len(data) > self._max_output:
            raise DecompressionLimitError(f"raw blob of {len(data)} bytes exceeds the {self._max_output}-byte limit")
        else:
            out = data
        if raw_size is not None and len(out) != raw_size:
            raise CodecError(f"{codec} blob decompressed to {len(out)} bytes, but its raw size is {raw_size}")
        return out

    def decompress_blob(self, blob: Compressed) -> bytes:
        """Read back a Compressed, checking its raw size."""
        return self.decompress(blob.codec, blob.data, dictionary_id=blob.dictionary_id, raw_size=blob.raw_size)

    def dictionary_pays(
        self, samples: Sequence[bytes], dictionary: Dictionary, *, min_saving_percent: int = 10
    ) -> bool:
        """True when zstd with the dictionary makes the samples at least ``min_saving_percent`` smaller in total.

        Judge on samples the dictionary was not trained on: it holds pieces of its training samples verbatim.
        """
        if not samples:
            return False
        zdict = _checked_dictionary(dictionary)
        plain = sum(len(self._compress_zstd(sample, None)) for sample in samples)
        with_dictionary = sum(len(self._compress_zstd(sample, zdict)) for sample in samples)
        return with_dictionary * 100 <= plain * (100 - min_saving_percent)

    def _prepared(self, reference: bytes) -> zstandard.ZstdCompressionDict:
        cached = self._reference
        if cached is not None and (cached[0] is reference or cached[0] == reference):
            return cached[1]
        zdict = _reference(reference)
        with _driver_errors("unusable reference"):
            zdict.precompute_compress(level=self._level)
        self._reference = (reference, zdict)
        return zdict

    def _compress_zstd(self, data: bytes, zdict: zstandard.ZstdCompressionDict | None) -> bytes:
        # Single-threaded, with content size, checksum and dictionary id in the frame: the reader checks all three.
        compressor = zstandard.ZstdCompressor(
            level=self._level, dict_data=zdict, write_checksum=True, write_content_size=True, write_dict_id=True
        )
        return compressor.compress(data)

    def _decompress_zstd(self, data: bytes, dictionary_id: int | None, reference: bytes | None = None) -> bytes:
        zdict = None if reference is None else self._prepared(reference)
        if dictionary_id is not None:
            known = self._dictionaries.get(dictionary_id)
            if known is None:
                raise CodecError(f"unknown dictionary id {dictionary_id}")
            zdict = known[1]
        with _driver_errors("corrupt zstd blob"):
            frame = zstandard.get_frame_parameters(data)
        if frame.dict_id != (dictionary_id or 0):
            raise CodecError(
                f"zstd blob was compressed with dictionary id {frame.dict_id or None}, "
                f"but dictionary id {dictionary_id} was given"
            )
        limit = self._max_output
        if frame.content_size != zstandard.CONTENTSIZE_UNKNOWN and frame.content_size > limit:
            raise DecompressionLimitError(
                f"zstd frame declares {frame.content_size} bytes, over the {limit}-byte limit"
            )
        # A decompressobj, unlike a stream reader, tells a truncated frame (no eof) and trailing bytes apart. Its
        # output is unbounded, so it gets only as much input as cannot expand far past the remaining budget.
        decompressor = zstandard.ZstdDecompressor(dict_data=zdict).decompressobj()
        chunks: list[bytes] = []
        produced = 0
        position = 0
        with _driver_errors("corrupt zstd blob"):
            while position < len(data) and not decompressor.eof:
                step = (limit - produced) // _ZSTD_MAX_EXPANSION + 1
                chunk = decompressor.decompress(data[position : position + step])
                position += step
                produced += len(chunk)
                if produced > limit:
                    raise DecompressionLimitError(f"zstd blob decompresses beyond the {limit}-byte limit")
                chunks.append(chunk)
        if not decompressor.eof:
            raise CodecError("corrupt zstd blob: truncated before the end of its frame")
        if position < len(data) or decompressor.unused_data:
            raise CodecError("corrupt zstd blob: trailing bytes after its frame")
        return b"".join(chunks)

    def _decompress_gzip(self, data: bytes) -> bytes:
        if not data:
            raise CodecError("corrupt gzip blob: empty")
        limit = self._max_output
        chunks: list[bytes] = []
        produced = 0
        with _driver_errors("corrupt gzip blob"), gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as reader:
            # Bounded reads: a bomb is refused after at most limit + one chunk of output.
            while chunk := reader.read(_READ_CHUNK):
                produced += len(chunk)
                if produced > limit:
                    raise DecompressionLimitError(f"gzip blob decompresses beyond the {limit}-byte limit")
                chunks.append(chunk)
        return b"".join(chunks)


def _reference(data: bytes) -> zstandard.ZstdCompressionDict:
    """Earlier bytes as a raw-content dictionary: zstd then stores only what differs from them."""
    with _driver_errors("unusable reference"):
        return zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def _compress_gzip(data: bytes) -> bytes:
    deflate = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(data) + deflate.flush()
    return _GZIP_HEADER + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def _check_codec(codec: str) -> None:
    if codec not in CODECS:
        raise CodecError(f"unknown codec {codec!r}; known codecs: {', '.join(sorted(CODECS))}")


def _size(value: bytes | int) -> int:
    return value if isinstance(value, int) else len(value)


def _load_dictionary(data: bytes) -> zstandard.ZstdCompressionDict:
    with _driver_errors("not a zstd dictionary"):
        zdict = zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_FULLDICT)
        dict_id = zdict.dict_id()
    # Id 0 marks raw content rather than a trained dictionary; frames could not name it.
    if dict_id == 0:
        raise CodecError("not a trained zstd dictionary (it carries no dictionary id)")
    return zdict


def _checked_dictionary(dictionary: Dictionary) -> zstandard.ZstdCompressionDict:
    zdict = _load_dictionary(dictionary.data)
    if zdict.dict_id() != dictionary.id:
        raise CodecError(f"dictionary bytes carry id {zdict.dict_id()}, not the stated id {dictionary.id}")
    return zdict


@contextmanager
def _driver_errors(context: str) -> Iterator[None]:
    """Translate zstd, zlib and gzip exceptions into CodecError; the project's own errors pass through."""
    try:
        yield
    except (zstandard.ZstdError, zlib.error, OSError, EOFError) as exc:
        raise CodecError(f"{context}: {exc}") from exc
