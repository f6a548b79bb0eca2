"""KeyRing: the installation's Ed25519 key pair and the public keys it trusts to sign packages.

It owns ``<home>/keys/installation.pem`` (made on first use) and ``<home>/trusted_keys/*.pub``; public key files are
the raw 32-byte key in base64 on one line. Crypto is the ``cryptography`` library's; nothing here is hand-written.
Every bad key file is a ConfigError naming the file; a file that cannot be written is an OutputError.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from soulfra.errors import ConfigError, OutputError

__all__ = [
    "KEY_FILE",
    "PUBLIC_KEY_SIZE",
    "KeyRing",
    "Signer",
    "Verifier",
    "key_id",
    "public_key_text",
    "read_public_key",
    "verify",
]

KEY_FILE = "installation.pem"
PUBLIC_KEY_SIZE = 32
_PUB_SUFFIX = ".pub"


def key_id(public_key: bytes) -> str:
    """The short name of a raw public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def verify(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is the Ed25519 signature of ``data`` by ``public_key`` (a malformed key is False)."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def public_key_text(public_key: bytes) -> str:
    """The content of a ``.pub`` file: the raw key in base64 and a newline."""
    return base64.b64encode(public_key).decode("ascii") + "\n"


def read_public_key(path: Path) -> bytes:
    """The raw public key in a ``.pub`` file (a PEM Ed25519 public key is read too); ConfigError if it is not one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read public key file {path}: {exc.strerror or exc}") from exc
    if data.lstrip().startswith(b"-----BEGIN PUBLIC KEY-----"):
        try:
            loaded = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise ConfigError(f"{path} is not a valid PEM public key") from exc
        if not isinstance(loaded, Ed25519PublicKey):
            raise ConfigError(f"{path} holds a public key of another kind; Soulfra signs with Ed25519 keys")
        return loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"{path} is not a public key file (expected one line of base64)") from exc
    if len(raw) != PUBLIC_KEY_SIZE:
        raise ConfigError(f"{path} holds {len(raw)} bytes, not a {PUBLIC_KEY_SIZE}-byte Ed25519 public key")
    return raw


class Signer:
    """Signs bytes with one Ed25519 private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self._public = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @classmethod
    def generate(cls) -> Signer:
        """A signer with a fresh random key (kept in memory only)."""
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        return self._public

    @property
    def key_id(self) -> str:
        return key_id(self._public)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._private.sign(data)

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS8 PEM (what ``installation.pem`` holds)."""
        return self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


class Verifier(Protocol):
    """Which public keys may sign the packages this installation reads."""

    def trusted_key(self, key_id: str) -> bytes | None:
        """The trusted raw public key with this id, or None when no trusted key has it."""
        ...


class KeyRing:
    """The installation's key pair under ``home`` and the keys it trusts; satisfies ``Verifier``.

    The own public key is always trusted, as are the ``*.pub`` files in ``home/trusted_keys`` and ``extra_trusted``.
    Trusted files are read on every lookup, so a key trusted by another process counts at once.
    """

    def __init__(self, home: Path, *, extra_trusted: Iterable[bytes] = ()) -> None:
        self._home = Path(home)
        self._extra: dict[str, bytes] = {}
        for raw in extra_trusted:
            if len(raw) != PUBLIC_KEY_SIZE:
                raise ConfigError(f"an extra trusted key has {len(raw)} bytes, not {PUBLIC_KEY_SIZE}")
            self._extra[key_id(raw)] = bytes(raw)
        self._signer: Signer | None = None

    @property
    def home(self) -> Path:
        return self._home

    @property
    def key_path(self) -> Path:
        return self._home / "keys" / KEY_FILE

    @property
    def trusted_dir(self) -> Path:
        return self._home / "trusted_keys"

    def signer(self) -> Signer:
        """The installation's signer, creating its key pair on first use."""
        if self._signer is None:
            self._signer = self._load() if self.key_path.exists() else self._create()
        return self._signer

    def public_key(self) -> bytes:
        """The installation's raw public key (its key pair is created if missing)."""
        return self.signer().public_key

    def export_public(self, path: Path) -> Path:
        """Write the installation's public key to ``path`` as a ``.pub`` file and return the path."""
        _write_atomic(Path(path), public_key_text(self.public_key()).encode("ascii"), mode=0o644)
        return Path(path)

    def trust(self, key: Path | bytes) -> str:
        """Trust a public key (a ``.pub`` file or raw bytes) by copying it into ``trusted_keys``; returns its id."""
        if isinstance(key, bytes):
            if len(key) != PUBLIC_KEY_SIZE:
                raise ConfigError(f"a public key has {PUBLIC_KEY_SIZE} bytes, not {len(key)}")
            raw = key
        else:
            raw = read_public_key(Path(key))
        name = key_id(raw)
        _make_dir(self.trusted_dir, mode=0o755)
        _write_atomic(self.trusted_dir / f"{name}{_PUB_SUFFIX}", public_key_text(raw).encode("ascii"), mode=0o644)
        return name

    def trusted(self) -> dict[str, bytes]:
        """Every trusted public key by id: the trusted files, the extra keys and the installation's own key."""
        found: dict[str, bytes] = {}
        if self.trusted_dir.is_dir():
            for path in sorted(self.trusted_dir.glob(f"*{_PUB_SUFFIX}")):
                raw = read_public_key(path)
                found[key_id(raw)] = raw
        found.update(self._extra)
        own = self._own_public_key()
        if own is not None:
            found[key_id(own)] = own
        return found

    def trusted_key(self, key_id: str) -> bytes | None:
        """The trusted raw public key with this id, or None."""
        return self.trusted().get(key_id)

    def is_trusted(self, key_id: str) -> bool:
        return self.trusted_key(key_id) is not None

    def _own_public_key(self) -> bytes | None:
        # Reading never creates the key pair: nothing can have been signed by a key that does not exist yet.
        if self._signer is None and not self.key_path.exists():
            return None
        return self.signer().public_key

    def _load(self) -> Signer:
        path = self.key_path
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the installation key {path}: {exc.strerror or exc}") from exc
        try:
            loaded = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ConfigError(f"{path} is not an unencrypted PEM private key") from exc
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ConfigError(f"{path} holds a private key of another kind; Soulfra signs with Ed25519 keys")
        return Signer(loaded)

    def _create(self) -> Signer:
        path = self.key_path
        _make_dir(path.parent, mode=0o700)
        temp = _write_temp(path, Signer.generate().private_pem(), mode=0o600)
        try:
            # A hard link publishes the complete file only if no other process got there first; whoever loses
            # reads the winner's key, so racing processes end up signing with the same key.
            os.link(temp, path)
        except FileExistsError:
            pass
        except OSError:
            # A file system without hard links: replace, unless another process has created the key meanwhile.
            if not path.exists():
                try:
                    os.replace(temp, path)
                except OSError as exc:
                    raise OutputError(f"cannot write the installation key {path}: {exc.strerror or exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        return self._load()


def _make_dir(path: Path, *, mode: int) -> None:
    if path.is_dir():
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)  # mkdir's mode is masked by the umask
    except OSError as exc:
        raise OutputError(f"cannot create directory {path}: {exc.strerror or exc}") from exc


def _write_temp(path: Path, data: bytes, *, mode: int) -> Path:
    """Write ``data`` to a new file beside ``path`` created with ``mode`` (before the umask) and return it."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return temp


def _write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    temp = _write_temp(path, data, mode=mode)
    try:
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
