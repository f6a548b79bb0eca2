"""Reading a stored snapshot's bytes back and refusing a second state at a stored tick, alike in every adapter: a
blob is decompressed (against its keyframe and dictionary, if it has them) and checked against its stored hash, so a
tampered or damaged blob is an error and never a wrong state. Nothing here reads or writes a database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from soulfra.codec import CODEC_ZSTD, Compressed, CompressionEngine
from soulfra.errors import ConflictError, HistoryIntegrityError
from soulfra.world.encoding import encoded_hash

if TYPE_CHECKING:
    from soulfra.store.ports import StateFrame


def stored_frame(frame: StateFrame, raw_size: int) -> Compressed:
    """A state's zstd frame, made elsewhere, as the blob of a keyframe: plain zstd, no dictionary, no reference."""
    return Compressed(codec=CODEC_ZSTD, dictionary_id=None, data=frame.data, raw_size=raw_size)


def refuse_another_state(instance_id: str, tick: int, *, stored_hash: str, digest: str) -> None:
    """``ConflictError`` unless a state of hash ``digest`` is the one stored at ``tick`` (whose hash is
    ``stored_hash``): saving a snapshot again is idempotent, saving another state there is not."""
    if stored_hash != digest:
        raise ConflictError(
            f"instance {instance_id} already has a snapshot at tick {tick} with another state hash "
            f"({stored_hash}, not {digest})"
        )


def unpack(
    compression: CompressionEngine,
    blob: bytes,
    *,
    snapshot_id: int,
    instance_id: str,
    tick: int,
    codec: str,
    dictionary_id: int | None,
    raw_size: int,
    state_hash: str,
    reference: bytes | None,
) -> bytes:
    """The canonical state bytes of a stored blob (``reference``: its keyframe's bytes, for a delta), checked against
    the snapshot's stored hash. The dictionary it names must be known to ``compression`` already."""
    raw = compression.decompress(codec, blob, dictionary_id=dictionary_id, raw_size=raw_size, reference=reference)
    if encoded_hash(raw) != state_hash:
        raise HistoryIntegrityError(
            f"snapshot {snapshot_id} (instance {instance_id}, tick {tick}) does not match its stored hash"
        )
    return raw
