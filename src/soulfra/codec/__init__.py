"""Codecs for stored state: compression of snapshot bytes into codec-tagged blobs. No I/O, no database."""

from __future__ import annotations

from soulfra.codec.compression import (
    CODEC_GZIP,
    CODEC_NONE,
    CODEC_ZSTD,
    CODECS,
    DEFAULT_LEVEL,
    DEFAULT_MAX_OUTPUT,
    Compressed,
    CompressionEngine,
    Dictionary,
    calculate_compression_ratio,
    train_dictionary,
)

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
