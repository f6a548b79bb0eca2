"""CompressionEngine: round trips, dictionaries, the decompression limit, corrupt blobs, ratios and determinism."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import shutil
import subprocess
import sys
import tracemalloc
import zlib
from collections.abc import Callable

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from soulfra.codec import (
    CODEC_GZIP,
    CODEC_NONE,
    CODEC_ZSTD,
    CODECS,
    Compressed,
    CompressionEngine,
    Dictionary,
    calculate_compression_ratio,
    train_dictionary,
)
from soulfra.errors import CodecError, ConfigError, DecompressionLimitError

MIB = 1024 * 1024
MOODS = ("calm", "curious", "restless", "devout", "angry")


def _agent_records(seed: int, count: int) -> list[bytes]:
    """Small, similar snapshots: the same agent-state shape, differing in a few fields."""
    rng = random.Random(seed)
    records = []
    for tick in range(count):
        record = {
            "format": 1,
            "tick": tick,
            "agent": {"id": f"agent-{rng.randrange(64):03d}", "mind": rng.choice(["governor", "executor"])},
            "mood": rng.choice(MOODS),
            "position": {"x": rng.randrange(-5000, 5000), "y": rng.randrange(-5000, 5000)},
            "traits": {"curiosity": rng.randrange(1000), "loyalty": rng.randrange(1000), "zeal": rng.randrange(1000)},
            "memory": [f"whisper:{rng.randrange(10_000)}" for _ in range(rng.randrange(1, 4))],
        }
        records.append(json.dumps(record, sort_keys=True).encode())
    return records


def _random_samples(seed: int, count: int, size: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(size) for _ in range(count)]


@pytest.fixture(scope="module")
def dictionary() -> Dictionary:
    return train_dictionary(_agent_records(seed=1, count=400), size=16 * 1024)


def _zeros_zstd_bomb(total: int, *, declare_size: bool) -> bytes:
    """`total` zeros as one zstd frame, built a megabyte at a time so the test itself stays small."""
    compressor = zstandard.ZstdCompressor().compressobj(size=total if declare_size else -1)
    zero = bytes(MIB)
    return b"".join(compressor.compress(zero) for _ in range(total // MIB)) + compressor.flush()


def _zeros_gzip_bomb(total: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zero = bytes(MIB)
    return b"".join(compressor.compress(zero) for _ in range(total // MIB)) + compressor.flush()


def _refused_with_peak_memory(action: Callable[[], object]) -> int:
    """Assert that `action` hits the decompression limit; return the peak memory it traced on the way."""
    tracemalloc.start()
    try:
        with pytest.raises(DecompressionLimitError, match="limit"):
            action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- round trips -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", sorted(CODECS))
@given(data=st.binary(max_size=4096))
def test_every_codec_round_trips(codec: str, data: bytes) -> None:
    engine = CompressionEngine()
    blob = engine.compress(data, codec=codec)
    assert (blob.codec, blob.dictionary_id, blob.raw_size) == (codec, None, len(data))
    assert engine.decompress(blob.codec, blob.data, raw_size=blob.raw_size) == data
    assert engine.decompress_blob(blob) == data


@given(data=st.binary(max_size=4096))
def test_a_dictionary_round_trips(dictionary: Dictionary, data: bytes) -> None:
    blob = CompressionEngine().compress(data, dictionary=dictionary)
    assert (blob.codec, blob.dictionary_id) == (CODEC_ZSTD, dictionary.id)
    reader = CompressionEngine(dictionaries=[dictionary])  # another process that loaded the dictionary
    assert reader.decompress(CODEC_ZSTD, blob.data, dictionary_id=dictionary.id, raw_size=len(data)) == data


def test_the_engine_default_codec_applies_when_none_is_named() -> None:
    assert CompressionEngine().compress(b"state").codec == CODEC_ZSTD
    assert CompressionEngine(codec=CODEC_GZIP).compress(b"state").codec == CODEC_GZIP


def test_an_empty_snapshot_round_trips() -> None:
    engine = CompressionEngine()
    for codec in sorted(CODECS):
        assert engine.decompress_blob(engine.compress(b"", codec=codec)) == b""


# -- dictionaries ------------------------------------------------------------------------------------------------


def test_a_trained_dictionary_pays_on_many_small_similar_snapshots(dictionary: Dictionary) -> None:
    engine = CompressionEngine()
    unseen = _agent_records(seed=2, count=200)  # not the training samples, which the dictionary holds verbatim
    plain = sum(len(engine.compress(sample).data) for sample in unseen)
    with_dictionary = sum(len(engine.compress(sample, dictionary=dictionary).data) for sample in unseen)
    assert with_dictionary < plain * 0.9
    assert engine.dictionary_pays(unseen, dictionary)


def test_a_dictionary_does_not_pay_on_random_samples(dictionary: Dictionary) -> None:
    engine = CompressionEngine()
    random_dictionary = train_dictionary(_random_samples(seed=3, count=300, size=1000), size=16 * 1024)
    unseen = _random_samples(seed=4, count=100, size=1000)
    assert not engine.dictionary_pays(unseen, random_dictionary)
    assert not engine.dictionary_pays(unseen, dictionary)


def test_a_dictionary_does_not_pay_on_large_snapshots(dictionary: Dictionary) -> None:
    # A large snapshot holds its own repetition; what the dictionary adds is lost in it.
    large = [b"\n".join(_agent_records(seed=seed, count=2000)) for seed in (5, 6, 7)]
    assert not CompressionEngine().dictionary_pays(large, dictionary)


def test_no_samples_never_pay(dictionary: Dictionary) -> None:
    assert not CompressionEngine().dictionary_pays([], dictionary)


def test_training_is_deterministic_and_the_id_is_zstds() -> None:
    samples = _agent_records(seed=8, count=300)
    first, second = train_dictionary(samples, size=8 * 1024), train_dictionary(samples, size=8 * 1024)
    assert first == second
    assert first.id == zstandard.ZstdCompressionDict(first.data).dict_id() != 0
    assert Dictionary.from_bytes(first.data) == first


def test_training_on_too_little_data_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="cannot train"):
        train_dictionary([b"x"])


def test_bytes_that_are_not_a_dictionary_are_refused(dictionary: Dictionary) -> None:
    with pytest.raises(CodecError, match="not a trained zstd dictionary"):
        Dictionary.from_bytes(b"just some bytes" * 10)
    with pytest.raises(CodecError, match="carry id"):
        CompressionEngine(dictionaries=[Dictionary(id=dictionary.id + 1, data=dictionary.data)])


def test_a_known_dictionary_id_cannot_change_its_bytes(dictionary: Dictionary) -> None:
    engine = CompressionEngine(dictionaries=[dictionary])
    engine.add_dictionary(dictionary)  # the same one again is harmless
    assert engine.dictionaries == (dictionary,)
    with pytest.raises(CodecError, match="already known"):
        engine.add_dictionary(Dictionary(id=dictionary.id, data=dictionary.data + b"\x00"))


@pytest.mark.parametrize("codec", [CODEC_GZIP, CODEC_NONE])
def test_a_dictionary_works_only_with_zstd(dictionary: Dictionary, codec: str) -> None:
    engine = CompressionEngine(dictionaries=[dictionary])
    with pytest.raises(CodecError, match="only with the zstd codec"):
        engine.compress(b"state", codec=codec, dictionary=dictionary)
    blob = engine.compress(b"state", codec=codec)
    with pytest.raises(CodecError, match="has no dictionary"):
        engine.decompress(codec, blob.data, dictionary_id=dictionary.id)


def test_reading_with_an_unknown_dictionary_id_fails(dictionary: Dictionary) -> None:
    blob = CompressionEngine().compress(b"state" * 100, dictionary=dictionary)
    with pytest.raises(CodecError, match=f"unknown dictionary id {dictionary.id}"):
        CompressionEngine().decompress(CODEC_ZSTD, blob.data, dictionary_id=dictionary.id)


def test_reading_with_the_wrong_or_no_dictionary_fails(dictionary: Dictionary) -> None:
    other = train_dictionary(_agent_records(seed=9, count=300), size=8 * 1024)
    engine = CompressionEngine(dictionaries=[dictionary, other])
    blob = engine.compress(b"state" * 100, dictionary=dictionary)
    with pytest.raises(CodecError, match="compressed with dictionary id"):
        engine.decompress(CODEC_ZSTD, blob.data, dictionary_id=other.id)
    with pytest.raises(CodecError, match="compressed with dictionary id"):
        engine.decompress(CODEC_ZSTD, blob.data)
    plain = engine.compress(b"state" * 100)
    with pytest.raises(CodecError, match="compressed with dictionary id None"):
        engine.decompress(CODEC_ZSTD, plain.data, dictionary_id=dictionary.id)


# -- gzip interoperability ---------------------------------------------------------------------------------------


def test_gzip_blobs_are_standard_gzip() -> None:
    data = b"".join(_agent_records(seed=10, count=50))
    blob = CompressionEngine().compress(data, codec=CODEC_GZIP)
    assert gzip.decompress(blob.data) == data
    assert blob.data[4:8] == b"\x00\x00\x00\x00"  # mtime 0
    # and the other way: what stdlib gzip writes, the engine reads
    assert CompressionEngine().decompress(CODEC_GZIP, gzip.compress(data, mtime=0)) == data


@pytest.mark.skipif(shutil.which("gzip") is None, reason="no gzip command on this machine")
def test_the_gzip_command_reads_gzip_blobs() -> None:
    data = b"".join(_agent_records(seed=11, count=50))
    blob = CompressionEngine().compress(data, codec=CODEC_GZIP)
    result = subprocess.run(["gzip", "-dc"], input=blob.data, capture_output=True, check=True)
    assert result.stdout == data


# -- the decompression limit -------------------------------------------------------------------------------------


@pytest.mark.parametrize("declare_size", [True, False], ids=["declared-size", "streamed"])
def test_a_zstd_bomb_is_refused_without_inflating_it(declare_size: bool) -> None:
    bomb = _zeros_zstd_bomb(100 * MIB, declare_size=declare_size)
    engine = CompressionEngine(max_output=MIB)
    assert _refused_with_peak_memory(lambda: engine.decompress(CODEC_ZSTD, bomb)) < 8 * MIB


def test_a_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = _zeros_gzip_bomb(100 * MIB)
    engine = CompressionEngine(max_output=MIB)
    assert _refused_with_peak_memory(lambda: engine.decompress(CODEC_GZIP, bomb)) < 8 * MIB


def test_a_raw_blob_over_the_limit_is_refused() -> None:
    with pytest.raises(DecompressionLimitError):
        CompressionEngine(max_output=100).decompress(CODEC_NONE, bytes(101))


def test_a_stated_raw_size_over_the_limit_is_refused_up_front() -> None:
    blob = CompressionEngine().compress(b"small")
    with pytest.raises(DecompressionLimitError):
        CompressionEngine(max_output=100).decompress(CODEC_ZSTD, blob.data, raw_size=101)


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_output_of_exactly_the_limit_is_allowed(codec: str) -> None:
    data = b"".join(_agent_records(seed=12, count=400))
    engine = CompressionEngine(max_output=len(data))
    assert engine.decompress_blob(engine.compress(data, codec=codec)) == data
    with pytest.raises(DecompressionLimitError):
        CompressionEngine(max_output=len(data) - 1).decompress(codec, engine.compress(data, codec=codec).data)


def test_the_limit_is_a_codec_error() -> None:
    assert issubclass(DecompressionLimitError, CodecError)


# -- corrupt and unknown blobs -----------------------------------------------------------------------------------


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "truncated-end": lambda blob: blob[:-3],
    "truncated-half": lambda blob: blob[: len(blob) // 2],
    "flipped-byte": lambda blob: _flip(blob, len(blob) // 2),
    "flipped-checksum": lambda blob: _flip(blob, len(blob) - 1),
    "trailing-bytes": lambda blob: blob + b"garbage",
    "empty": lambda _blob: b"",
    "not-a-blob": lambda _blob: b"this was never compressed",
}


@pytest.mark.parametrize("codec", [CODEC_ZSTD, CODEC_GZIP])
@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupt_blobs_raise_codec_error(codec: str, corruption: str) -> None:
    data = b"".join(_agent_records(seed=13, count=100))
    engine = CompressionEngine()
    blob = engine.compress(data, codec=codec)
    with pytest.raises(CodecError) as caught:
        engine.decompress(codec, CORRUPTIONS[corruption](blob.data))
    assert type(caught.value) is CodecError


def test_a_wrong_raw_size_is_a_codec_error() -> None:
    engine = CompressionEngine()
    for codec in sorted(CODECS):
        blob = engine.compress(b"twelve bytes", codec=codec)
        with pytest.raises(CodecError, match="raw size is 13"):
            engine.decompress(codec, blob.data, raw_size=13)


def test_an_unknown_codec_is_named() -> None:
    engine = CompressionEngine()
    with pytest.raises(CodecError, match="'brotli'"):
        engine.decompress("brotli", b"\x00\x01")
    with pytest.raises(CodecError, match="'brotli'"):
        engine.compress(b"state", codec="brotli")


@pytest.mark.parametrize(
    "build",
    [
        lambda: CompressionEngine(codec="brotli"),
        lambda: CompressionEngine(level=0),
        lambda: CompressionEngine(level=23),
        lambda: CompressionEngine(max_output=0),
        lambda: train_dictionary([b"sample"], size=0),
    ],
    ids=["codec", "level-low", "level-high", "max-output", "dictionary-size"],
)
def test_bad_settings_are_config_errors(build: Callable[[], object]) -> None:
    with pytest.raises(ConfigError):
        build()


# -- ratio -------------------------------------------------------------------------------------------------------


def test_compression_ratio_from_sizes_bytes_or_a_blob() -> None:
    assert calculate_compression_ratio(1000, 250) == 4.0
    assert calculate_compression_ratio(b"x" * 1000, b"y" * 250) == 4.0
    blob = Compressed(codec=CODEC_ZSTD, dictionary_id=None, data=b"z" * 250, raw_size=1000)
    assert calculate_compression_ratio(blob) == 4.0
    assert calculate_compression_ratio(b"x" * 1000, blob) == 4.0
    real = CompressionEngine().compress(bytes(10_000))
    assert calculate_compression_ratio(real) == 10_000 / len(real.data) > 10


def test_a_zero_compressed_size_has_no_ratio() -> None:
    with pytest.raises(CodecError, match="zero"):
        calculate_compression_ratio(100, 0)
    with pytest.raises(CodecError, match="zero"):
        calculate_compression_ratio(CompressionEngine().compress(b"", codec=CODEC_NONE))
    with pytest.raises(CodecError, match="negative"):
        calculate_compression_ratio(-1, 10)


# -- determinism -------------------------------------------------------------------------------------------------

_DIGEST_SCRIPT = """
import hashlib, sys
from soulfra.codec import CompressionEngine
data = bytes(range(256)) * 64 + b"soulfra" * 500
engine = CompressionEngine()
for codec in sorted(("zstd", "gzip", "none")):
    sys.stdout.write(codec + " " + hashlib.sha256(engine.compress(data, codec=codec).data).hexdigest() + "\\n")
"""


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_compression_is_deterministic(codec: str, dictionary: Dictionary) -> None:
    data = b"".join(_agent_records(seed=14, count=100))
    first = CompressionEngine().compress(data, codec=codec)
    assert CompressionEngine().compress(data, codec=codec) == first
    if codec == CODEC_ZSTD:
        assert CompressionEngine().compress(data, dictionary=dictionary) == CompressionEngine().compress(
            data, dictionary=dictionary
        )


def test_compression_is_the_same_in_a_fresh_process() -> None:
    data = bytes(range(256)) * 64 + b"soulfra" * 500
    engine = CompressionEngine()
    expected = "".join(
        f"{codec} {hashlib.sha256(engine.compress(data, codec=codec).data).hexdigest()}\n" for codec in sorted(CODECS)
    )
    result = subprocess.run([sys.executable, "-c", _DIGEST_SCRIPT], capture_output=True, check=True, text=True)
    assert result.stdout == expected
