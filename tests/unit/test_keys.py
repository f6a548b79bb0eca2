"""KeyRing: the installation key is made once, safely, and trust is granted only to well-formed public keys."""

from __future__ import annotations

import base64
import stat
import threading
from pathlib import Path

import pytest

from soulfra.errors import ConfigError
from soulfra.meta.keys import KeyRing, Signer, key_id, public_key_text, read_public_key, verify


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_is_created_once_private(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path)
    assert not ring.key_path.exists()
    public = ring.public_key()
    assert ring.key_path == tmp_path / "keys" / "installation.pem"
    assert mode(ring.key_path) == 0o600
    assert mode(ring.key_path.parent) == 0o700
    assert ring.key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert KeyRing(tmp_path).public_key() == public
    assert list(ring.key_path.parent.iterdir()) == [ring.key_path]  # no temporary file left behind


def test_racing_keyrings_end_with_one_key(tmp_path: Path) -> None:
    rings = [KeyRing(tmp_path) for _ in range(8)]
    barrier = threading.Barrier(len(rings))
    found: list[bytes] = []

    def start(ring: KeyRing) -> None:
        barrier.wait()
        found.append(ring.public_key())

    threads = [threading.Thread(target=start, args=(ring,)) for ring in rings]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == len(rings)
    assert set(found) == {KeyRing(tmp_path).public_key()}


def test_signatures_verify_only_for_their_key_and_data(tmp_path: Path) -> None:
    signer = KeyRing(tmp_path).signer()
    signature = signer.sign(b"manifest")
    assert verify(signer.public_key, signature, b"manifest")
    assert not verify(signer.public_key, signature, b"manifest!")
    assert not verify(Signer.generate().public_key, signature, b"manifest")
    assert not verify(b"short", signature, b"manifest")
    assert signer.key_id == key_id(signer.public_key)
    assert len(signer.key_id) == 16


def test_own_key_is_trusted_and_others_only_once_trusted(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "home")
    own = ring.signer()
    other = Signer.generate()
    assert ring.is_trusted(own.key_id)
    assert not ring.is_trusted(other.key_id)
    exported = ring.export_public(tmp_path / "own.pub")
    assert read_public_key(exported) == own.public_key
    other_file = tmp_path / "other.pub"
    other_file.write_text(public_key_text(other.public_key))
    assert ring.trust(other_file) == other.key_id
    assert (ring.trusted_dir / f"{other.key_id}.pub").read_text() == public_key_text(other.public_key)
    assert KeyRing(tmp_path / "home").trusted_key(other.key_id) == other.public_key


def test_reading_trust_does_not_create_a_key(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path)
    assert ring.trusted() == {}
    assert not ring.key_path.exists()


def test_extra_trusted_keys_count(tmp_path: Path) -> None:
    other = Signer.generate()
    assert KeyRing(tmp_path, extra_trusted=[other.public_key]).is_trusted(other.key_id)
    with pytest.raises(ConfigError, match="extra trusted key"):
        KeyRing(tmp_path, extra_trusted=[b"too short"])


def test_trust_accepts_raw_bytes(tmp_path: Path) -> None:
    other = Signer.generate()
    ring = KeyRing(tmp_path)
    assert ring.trust(other.public_key) == other.key_id
    assert ring.is_trusted(other.key_id)


@pytest.mark.parametrize(
    "content",
    [b"not base64 at all!", base64.b64encode(b"x" * 31) + b"\n", b"", b"-----BEGIN PUBLIC KEY-----\nAAAA\n"],
)
def test_trusting_a_malformed_file_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.pub"
    bad.write_bytes(content)
    ring = KeyRing(tmp_path / "home")
    with pytest.raises(ConfigError, match=r"bad\.pub"):
        ring.trust(bad)
    assert not ring.trusted_dir.exists() or not list(ring.trusted_dir.iterdir())


def test_trusting_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent\.pub"):
        KeyRing(tmp_path).trust(tmp_path / "absent.pub")


def test_corrupt_installation_key_is_a_config_error(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path)
    ring.key_path.parent.mkdir(parents=True)
    ring.key_path.write_text("garbage")
    with pytest.raises(ConfigError, match=r"installation\.pem"):
        ring.signer()
