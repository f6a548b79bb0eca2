"""How a NatsBus proves who it is and keeps its traffic private: ``NatsOptions`` (credentials and TLS files), checked
when it is built (one way to authenticate, a client key beside its certificate) and read when it connects.

Secrets (the password and the token) never appear in a repr or an error. A file that is missing or unreadable is a
``ConfigError`` naming it, raised before any connection is attempted. This module holds no NATS client code.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from soulfra.errors import ConfigError

__all__ = ["TLS_SCHEME", "NatsOptions", "NkeyFile", "redact_url"]

TLS_SCHEME = "tls://"
CREDS_MARKER = "-----BEGIN NATS USER JWT-----"  # a .creds file (a JWT and its NKey seed); else an NKey seed file


@dataclass(frozen=True, slots=True)
class NkeyFile:
    """A ``--nats-creds`` file read: a decentralized-auth ``.creds`` file (user JWT and seed), or a bare NKey seed."""

    path: Path
    kind: Literal["creds", "seed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NatsOptions:
    """The credentials and TLS settings of one NATS connection; the defaults connect anonymously, in plaintext.

    At most one way to authenticate: ``user`` (with ``password``), ``token``, or ``creds`` (a ``.creds`` or NKey
    seed file). TLS is used when the URL is ``tls://`` or a CA (or a client certificate) is given; ``ca`` verifies
    the server (the system's trust store when it is None), ``cert`` and ``key`` are the client's own certificate.
    """

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    creds: Path | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if self.password is not None and self.user is None:
            raise ConfigError("a NATS password needs a user: --nats-user NAME (or SOULFRA_NATS_USER)")
        ways = [name for name, given in (("user", self.user), ("token", self.token), ("creds", self.creds)) if given]
        if len(ways) > 1:
            raise ConfigError(f"give one way to authenticate to NATS, not {' and '.join('--nats-' + w for w in ways)}")
        if (self.cert is None) != (self.key is None):
            raise ConfigError("a NATS client certificate needs its key: give both --nats-cert and --nats-key")

    @property
    def secured(self) -> bool:
        """Whether these options carry any credentials."""
        return self.user is not None or self.token is not None or self.creds is not None

    def uses_tls(self, url: str) -> bool:
        """A ``tls://`` URL, a CA or a client certificate means TLS."""
        return url.startswith(TLS_SCHEME) or self.ca is not None or self.cert is not None

    def tls_context(self, url: str) -> ssl.SSLContext | None:
        """The TLS context for ``url`` (None for plaintext): the server verified against ``ca`` alone (or the system's
        trust store), hostname checked, TLS 1.2 at least, the client certificate loaded. Reads files: call it off the
        loop."""
        if not self.uses_tls(url):
            return None
        if self.ca is None:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        else:  # the given CA alone: a certificate some public CA issued for the same name is not the server
            _readable(self.ca, "--nats-ca")
            try:
                context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
            except (ssl.SSLError, ValueError) as exc:
                raise ConfigError(f"NATS CA file {self.ca} holds no usable certificate: {_reason(exc)}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert is not None and self.key is not None:
            _readable(self.cert, "--nats-cert")
            _readable(self.key, "--nats-key")
            try:
                context.load_cert_chain(certfile=str(self.cert), keyfile=str(self.key))
            except (ssl.SSLError, ValueError) as exc:
                raise ConfigError(
                    f"NATS client certificate {self.cert} with key {self.key} cannot be loaded: {_reason(exc)}"
                ) from None
        return context

    def nkey_file(self) -> NkeyFile | None:
        """The ``creds`` file, checked readable and told apart (``.creds`` or bare seed). Reads it: call it off the
        loop."""
        if self.creds is None:
            return None
        text = _readable(self.creds, "--nats-creds")
        if CREDS_MARKER in text:
            return NkeyFile(self.creds, "creds")
        if text.strip().startswith("SU"):  # a user NKey seed: base32 of the seed prefix and the user type
            return NkeyFile(self.creds, "seed")
        raise ConfigError(f"NATS credentials file {self.creds} is neither a .creds file nor a user NKey seed (SU...)")


def redact_url(url: str) -> str:
    """``url`` fit for a log line or an error: credentials written into it (``nats://user:secret@host``) hidden."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def _readable(path: Path, flag: str) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise ConfigError(f"{flag}: no such file {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{flag}: {path} is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return str(exc) or type(exc).__name__
